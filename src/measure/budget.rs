//! `wgkv eval ppl-plot`: perplexity, KL to `full` and top-1 agreement
//! against the KV budget, one line per policy family, from the lines that
//! `eval ppl --compare-full --json` prints (several runs' files together).

use super::plot::{Figure, Panel, Point, Scale, Series};
use crate::kv::{Budget, KvSpec};
use crate::{Error, Result};

/// One `eval ppl --compare-full --json` line, placed on the budget axis.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetPoint {
    /// The policy without its budget (`vatp:alloc=dynamic`).
    pub family: String,
    /// Tokens per layer as a share of the context, in percent (as written
    /// for a percentage budget).
    pub budget_pct: f64,
    pub ppl: f64,
    pub ppl_full: f64,
    /// Mean KL(full ‖ policy), nats.
    pub kl: f64,
    /// Top-1 agreement with `full`, 0..=1.
    pub top1: f64,
    pub ctx: usize,
    pub model: String,
    pub adapter: String,
}

impl BudgetPoint {
    /// From one JSON line; None for a policy without a `budget=` (full,
    /// quest or mustafar alone have no budget axis).
    pub fn from_json(v: &serde_json::Value) -> Result<Option<BudgetPoint>> {
        let text = |k: &str| v[k].as_str().ok_or_else(|| Error::msg(format!("no '{k}' text: not an `eval ppl --json` line")));
        let num = |k: &str| {
            v[k].as_f64().ok_or_else(|| match k {
                "kl_mean" | "top1_rate" | "ppl_full" => Error::msg(format!("no '{k}': run `eval ppl` with --compare-full")),
                _ => Error::msg(format!("no '{k}' number: not an `eval ppl --json` line")),
            })
        };
        let spec = KvSpec::parse(text("kv")?)?;
        let ctx = num("ctx")? as usize;
        let mut family = spec.clone();
        let mut budget = None;
        for (p, f) in spec.parts.iter().zip(family.parts.iter_mut()) {
            if let Some(b) = p.budget()? {
                budget = Some(match b {
                    Budget::Percent(pct) => pct as f64,
                    Budget::Tokens(n) => 100.0 * n as f64 / ctx.max(1) as f64,
                });
                f.options.retain(|(k, _)| k != "budget");
            }
        }
        let Some(budget_pct) = budget else { return Ok(None) };
        if ctx == 0 {
            return Err(Error::msg("'ctx' is 0"));
        }
        Ok(Some(BudgetPoint {
            family: family.to_string(),
            budget_pct,
            ppl: num("ppl")?,
            ppl_full: num("ppl_full")?,
            kl: num("kl_mean")?,
            top1: num("top1_rate")?,
            ctx,
            model: text("model")?.to_string(),
            adapter: text("adapter")?.to_string(),
        }))
    }
}

/// Every point of `lines` (JSON text, one record per line; blank lines
/// skipped), `name` naming the source in errors; the later of two records
/// of one policy at one budget wins.
pub fn parse_lines(name: &str, lines: &str, into: &mut Vec<BudgetPoint>) -> Result<()> {
    for (i, line) in lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |e: String| Error::msg(format!("{name} line {}: {e}", i + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON ({e})")))?;
        if let Some(p) = BudgetPoint::from_json(&v).map_err(|e| at(e.to_string()))? {
            into.retain(|q| !(q.family == p.family && q.budget_pct == p.budget_pct && q.ctx == p.ctx));
            into.push(p);
        }
    }
    Ok(())
}

/// Three panels against the budget: KL to `full`, perplexity, top-1
/// agreement; one series per family, in first-seen order.
pub fn budget_figure(points: &[BudgetPoint]) -> Figure {
    let mut families: Vec<&str> = Vec::new();
    for p in points {
        if !families.contains(&p.family.as_str()) {
            families.push(&p.family);
        }
    }
    let series = |y: &dyn Fn(&BudgetPoint) -> f64| -> Vec<Series> {
        families
            .iter()
            .map(|f| Series {
                name: f.to_string(),
                points: points.iter().filter(|p| p.family == *f).map(|p| Point { x: p.budget_pct, y: y(p), err: 0.0 }).collect(),
            })
            .collect()
    };
    let panel = |title: &str, y_label: &str, y_scale, s| Panel {
        title: title.into(),
        x_label: "budget, % of the context per layer".into(),
        y_label: y_label.into(),
        x_scale: Scale::Number,
        y_scale,
        series: s,
    };
    let uniq = |f: &dyn Fn(&BudgetPoint) -> String| super::plot::distinct(points, f);
    let full = uniq(&|p| format!("{:.2}", p.ppl_full));
    Figure {
        title: "Eviction against the KV budget: KL to full, perplexity, top-1 agreement".into(),
        subtitle: format!("{}, ctx {}, {}; full cache ppl {full}", uniq(&|p| p.model.clone()), uniq(&|p| p.ctx.to_string()), uniq(&|p| p.adapter.clone())),
        panels: vec![
            panel("mean KL(full ‖ policy)", "nats", Scale::Number, series(&|p| p.kl)),
            panel("perplexity", "ppl", Scale::Number, series(&|p| p.ppl)),
            panel("top-1 agreement with full", "agreement", Scale::Percent, series(&|p| 100.0 * p.top1)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kv: &str, ctx: usize, kl: f64) -> String {
        format!(r#"{{"kv":"{kv}","ctx":{ctx},"ppl":21.5,"ppl_full":20.2,"kl_mean":{kl},"top1_rate":0.875,"model":"m.gguf","adapter":"cpu"}}"#)
    }

    #[test]
    fn families_drop_the_budget_and_place_it_on_the_axis() {
        let mut pts = Vec::new();
        let text = [
            line("vatp:budget=10%,alloc=dynamic", 2048, 0.4),
            line("h2o:budget=205", 2048, 0.19),
            line("full", 2048, 0.0),
            String::new(),
            line("vatp:alloc=dynamic,budget=25%", 2048, 0.1),
            line("h2o:budget=205", 2048, 0.2),
        ]
        .join("\n");
        parse_lines("a.jsonl", &text, &mut pts).unwrap();
        let got: Vec<(&str, f64, f64)> = pts.iter().map(|p| (p.family.as_str(), p.budget_pct, p.kl)).collect();
        let h2o = 100.0 * 205.0 / 2048.0;
        assert_eq!(got, vec![("vatp:alloc=dynamic", 10.0, 0.4), ("vatp:alloc=dynamic", 25.0, 0.1), ("h2o", h2o, 0.2)]);
        let fig = budget_figure(&pts);
        assert_eq!(fig.panels.len(), 3);
        let kl: Vec<(String, Vec<f64>)> = fig.panels[0].series.iter().map(|s| (s.name.clone(), s.points.iter().map(|p| p.y).collect())).collect();
        assert_eq!(kl, vec![("vatp:alloc=dynamic".to_string(), vec![0.4, 0.1]), ("h2o".to_string(), vec![0.2])]);
        assert_eq!(fig.panels[2].series[1].points[0].y, 87.5);
        assert!(fig.subtitle.contains("m.gguf, ctx 2048, cpu; full cache ppl 20.20"), "{}", fig.subtitle);
        let svg = fig.to_svg();
        assert_eq!(svg.matches(r#"data-name="h2o""#).count(), 3, "one h2o series per panel");
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let mut pts = Vec::new();
        let e = parse_lines("x.jsonl", &format!("{}\nnot json", line("h2o:budget=5%", 2048, 0.1)), &mut pts).unwrap_err();
        assert!(e.to_string().starts_with("x.jsonl line 2: not JSON"), "{e}");
        let e = parse_lines("x.jsonl", r#"{"kv":"h2o:budget=5%","ctx":2048,"ppl":21.0,"model":"m","adapter":"a"}"#, &mut pts).unwrap_err();
        assert!(e.to_string().contains("line 1: no 'ppl_full': run `eval ppl` with --compare-full"), "{e}");
        let e = parse_lines("x.jsonl", &line("h2o:budget=lots", 2048, 0.1), &mut pts).unwrap_err();
        assert!(e.to_string().contains("is not a token count"), "{e}");
    }
}
