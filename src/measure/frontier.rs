//! `wgkv eval ppl-frontier`: quality against KV bytes, the figure a user
//! picks a storage and a budget from. One point per `eval ppl
//! --compare-full --json` line: x the policy's mean resident KV bytes over
//! the scored steps as a share of `full`'s (`kv_resident_mean` /
//! `kv_resident_mean_full`), y its KL to `full` and its perplexity; one
//! line per eviction part (the spec without its storage part), `full`
//! itself at (100%, 0) on the storage-only line.

use super::plot::{Figure, Panel, Point, Scale, Series};
use crate::kv::KvSpec;
use crate::kv::spec::Kind;
use crate::{Error, Result};

/// One line placed on the bytes axis.
#[derive(Clone, Debug, PartialEq)]
pub struct BytesPoint {
    pub kv: String,
    /// The spec without its storage part ("storage only" when nothing is
    /// left), then the storage's name unless it is q8/q4, and its options
    /// but the bits (`, rot=0`, `, kivi`, `, kivi,residual=128`).
    pub line: String,
    /// Mean resident KV bytes as a share of full's, in percent.
    pub bytes_pct: f64,
    pub kl: f64,
    pub ppl: f64,
    pub ppl_full: f64,
    pub ctx: usize,
    pub model: String,
}

pub const STORAGE_ONLY: &str = "storage only";

impl BytesPoint {
    pub fn from_json(v: &serde_json::Value) -> Result<BytesPoint> {
        let text = |k: &str| v[k].as_str().ok_or_else(|| Error::msg(format!("no '{k}' text: not an `eval ppl --json` line")));
        let num = |k: &str| {
            v[k].as_f64().ok_or_else(|| match k {
                "kv_resident_mean" | "kv_resident_mean_full" | "kl_mean" | "ppl_full" => {
                    Error::msg(format!("no '{k}': run `eval ppl --compare-full --json` with a build that records KV bytes"))
                }
                _ => Error::msg(format!("no '{k}' number: not an `eval ppl --json` line")),
            })
        };
        let kv = text("kv")?.to_string();
        let mut spec = KvSpec::parse(&kv)?;
        // A storage other than the blocks (q8, q4 by their bits) names its
        // line, and its options other than the bits (rot=0, residual=128)
        // make a line of their own.
        let mut opts: Vec<String> = Vec::new();
        if let Some(p) = spec.part(Kind::Storage) {
            if !matches!(p.name.as_str(), "q8" | "q4") {
                opts.push(p.name.clone());
            }
            opts.extend(p.options.iter().filter(|(k, _)| k != "bits").map(|(k, v)| format!("{k}={v}")));
        }
        spec.parts.retain(|p| p.kind != Kind::Storage && p.kind != Kind::Full);
        let line = if spec.parts.is_empty() { STORAGE_ONLY.to_string() } else { spec.to_string() };
        let line = if opts.is_empty() { line } else { format!("{line}, {}", opts.join(",")) };
        let full = num("kv_resident_mean_full")?;
        if full <= 0.0 {
            return Err(Error::msg("'kv_resident_mean_full' is 0"));
        }
        Ok(BytesPoint {
            line,
            bytes_pct: 100.0 * num("kv_resident_mean")? / full,
            kl: num("kl_mean")?,
            ppl: num("ppl")?,
            ppl_full: num("ppl_full")?,
            ctx: num("ctx")? as usize,
            model: text("model")?.to_string(),
            kv,
        })
    }
}

/// Every record of `lines` (one JSON object per line, blanks skipped);
/// the later of two records of one spec, model and context wins.
pub fn parse_lines(name: &str, lines: &str, into: &mut Vec<BytesPoint>) -> Result<()> {
    for (i, line) in lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |e: String| Error::msg(format!("{name} line {}: {e}", i + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON ({e})")))?;
        let p = BytesPoint::from_json(&v).map_err(|e| at(e.to_string()))?;
        into.retain(|q| !(q.kv == p.kv && q.model == p.model && q.ctx == p.ctx));
        into.push(p);
    }
    Ok(())
}

/// Two panels against KV bytes (% of full's): KL to full and perplexity;
/// per model, one series per eviction part, points in order of bytes; the
/// storage-only series starts at `full` (100%, KL 0).
pub fn frontier_figure(points: &[BytesPoint]) -> Figure {
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in points {
        let k = (p.model.clone(), p.line.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let models = keys.iter().map(|k| &k.0).collect::<std::collections::BTreeSet<_>>().len();
    let series = |y: &dyn Fn(&BytesPoint) -> f64, full: &dyn Fn(&BytesPoint) -> f64| -> Vec<Series> {
        keys.iter()
            .map(|(model, line)| {
                let mut pts: Vec<&BytesPoint> = points.iter().filter(|p| &p.model == model && &p.line == line).collect();
                pts.sort_by(|a, b| b.bytes_pct.total_cmp(&a.bytes_pct));
                let mut out: Vec<Point> = Vec::new();
                if line.starts_with(STORAGE_ONLY) {
                    out.push(Point { x: 100.0, y: full(pts[0]), err: 0.0 });
                }
                out.extend(pts.iter().map(|p| Point { x: p.bytes_pct, y: y(p), err: 0.0 }));
                Series { name: if models > 1 { format!("{model}: {line}") } else { line.clone() }, points: out }
            })
            .collect()
    };
    let panel = |title: &str, y_label: &str, s| Panel {
        title: title.into(),
        x_label: "KV bytes resident, % of full's (mean over the scored steps)".into(),
        y_label: y_label.into(),
        x_scale: Scale::Percent,
        y_scale: Scale::Number,
        series: s,
    };
    let uniq = |f: &dyn Fn(&BytesPoint) -> String| super::plot::distinct(points, f);
    Figure {
        title: "Quality against KV bytes: KL to full and perplexity".into(),
        subtitle: format!("{}, ctx {}; full cache ppl {}", uniq(&|p| p.model.clone()), uniq(&|p| p.ctx.to_string()), uniq(&|p| format!("{:.2}", p.ppl_full))),
        panels: vec![panel("mean KL(full ‖ policy)", "nats", series(&|p| p.kl, &|_| 0.0)), panel("perplexity", "ppl", series(&|p| p.ppl, &|p| p.ppl_full))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kv: &str, bytes: f64, kl: f64) -> String {
        format!(
            r#"{{"kv":"{kv}","ctx":2048,"ppl":21.5,"ppl_full":20.2,"kl_mean":{kl},"top1_rate":0.9,"kv_resident_mean":{bytes},"kv_resident_mean_full":1000.0,"model":"m.gguf","adapter":"cpu"}}"#
        )
    }

    #[test]
    fn points_sit_at_their_share_of_full_bytes_on_their_eviction_line() {
        let mut pts = Vec::new();
        let text = [
            line("q8", 531.0, 0.001),
            line("streaming:budget=25%+q4", 70.0, 0.09),
            line("q4", 281.0, 0.2),
            line("streaming:budget=25%", 250.0, 0.07),
            line("q4:rot=0", 281.0, 0.3),
        ]
        .join("\n");
        parse_lines("a.jsonl", &text, &mut pts).unwrap();
        let got: Vec<(&str, f64)> = pts.iter().map(|p| (p.line.as_str(), p.bytes_pct)).collect();
        let unrotated = format!("{STORAGE_ONLY}, rot=0");
        assert_eq!(
            got,
            vec![(STORAGE_ONLY, 53.1), ("streaming:budget=25%", 7.0), (STORAGE_ONLY, 28.1), ("streaming:budget=25%", 25.0), (unrotated.as_str(), 28.1)]
        );
        // KIVI's bits share a line of its own; its other options one more.
        let mut kivi = Vec::new();
        let text =
            [line("kivi", 204.0, 0.3), line("kivi:bits=4", 327.0, 0.006), line("kivi:residual=128", 221.0, 0.3), line("snapkv:budget=25%+kivi", 142.0, 0.4)]
                .join("\n");
        parse_lines("b.jsonl", &text, &mut kivi).unwrap();
        let lines: Vec<&str> = kivi.iter().map(|p| p.line.as_str()).collect();
        assert_eq!(lines, ["storage only, kivi", "storage only, kivi", "storage only, kivi,residual=128", "snapkv:budget=25%, kivi"]);
        let fig = frontier_figure(&pts);
        let kl: Vec<(String, Vec<(f64, f64)>)> = fig.panels[0].series.iter().map(|s| (s.name.clone(), s.points.iter().map(|p| (p.x, p.y)).collect())).collect();
        assert_eq!(
            kl,
            vec![
                (STORAGE_ONLY.to_string(), vec![(100.0, 0.0), (53.1, 0.001), (28.1, 0.2)]),
                ("streaming:budget=25%".to_string(), vec![(25.0, 0.07), (7.0, 0.09)]),
                (unrotated.clone(), vec![(100.0, 0.0), (28.1, 0.3)])
            ]
        );
        assert_eq!(fig.panels[1].series[0].points[0].y, 20.2, "full's perplexity starts the storage line");
    }

    #[test]
    fn lines_without_bytes_say_how_to_get_them() {
        let mut pts = Vec::new();
        let old = r#"{"kv":"q8","ctx":2048,"ppl":21.0,"ppl_full":20.2,"kl_mean":0.1,"model":"m","adapter":"a"}"#;
        let e = parse_lines("x.jsonl", old, &mut pts).unwrap_err().to_string();
        assert!(e.starts_with("x.jsonl line 1: no 'kv_resident_mean_full'") && e.contains("records KV bytes"), "{e}");
    }
}
