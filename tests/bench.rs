//! `wgkv bench` and its instruments: the JSON record schema (every field,
//! its type, reading back, refusing bad files), the markdown table's shape,
//! the SVG plot's well-formedness (balanced tags, xmlns, one polyline per
//! policy per panel), the test plan (names, context), and end to end on the
//! tiny random Llama: `bench --json -` rows for pp / tg / tg@d with exact KV
//! byte counts, `--plot`, and a `--compare` round trip of two "devices".

mod common;
use common::cli::{assert_one_line_error, wgkv};
#[path = "common/tiny.rs"]
mod tiny;

use serde_json::Value;
use wgkv::measure::plot::{self, Figure, Panel, Point, Scale, Series};
use wgkv::measure::record::{self, Device, Record};
use wgkv::measure::runner::{Case, Plan};
use wgkv::measure::{fmt_bytes, parse_list, parse_specs, table};
use wgkv::quant::WType;

// ---------------------------------------------------------------- helpers

fn device(adapter: &str) -> Device {
    Device { adapter: adapter.into(), backend: "Vulkan".into(), device_type: "DiscreteGpu".into(), f16: true, tuning: "matvec (test)".into() }
}

/// A plausible record; `n_gen == 0` makes it a prefill row.
fn rec(kv: &str, n_prompt: usize, n_gen: usize, depth: usize, adapter: &str) -> Record {
    let tps = vec![100.0 + depth as f64 / 100.0, 104.0, 96.0];
    let (mean, std) = record::mean_std(&tps);
    let tokens = if n_gen == 0 { n_prompt } else { depth.max(1) + n_gen };
    Record {
        schema: record::SCHEMA,
        wgkv_version: "0.1.0".into(),
        git_commit: "abc1234".into(),
        unix_time: 1_700_000_000,
        device: device(adapter),
        model: "m.gguf".into(),
        weight_type: "Q4_1×210".into(),
        kv: kv.into(),
        ctx: 4096,
        test: record::test_name(n_prompt, n_gen, depth),
        n_prompt,
        n_gen,
        depth,
        reps: 3,
        tokens_per_s: tps,
        mean,
        std,
        kv_bytes_resident: tokens as u64 * 46080,
        kv_bytes_read_per_step: tokens as u64 * 46080,
        kv_bytes_allocated: 4096 * 46080,
        kv_tokens_per_layer: vec![tokens; 30],
        source: String::new(),
    }
}

/// Rows of one bench run: pp512, tg128 at depths 0/1024/2048, per policy.
fn run_rows(kvs: &[&str], adapter: &str) -> Vec<Record> {
    let mut v = Vec::new();
    for kv in kvs {
        v.push(rec(kv, 512, 0, 0, adapter));
        for d in [0, 1024, 2048] {
            v.push(rec(kv, 0, 128, d, adapter));
        }
    }
    v
}

/// Every field of the schema and its JSON type.
const FIELDS: &[(&str, &str)] = &[
    ("schema", "u64"),
    ("wgkv_version", "str"),
    ("git_commit", "str"),
    ("unix_time", "u64"),
    ("adapter", "str"),
    ("backend", "str"),
    ("device_type", "str"),
    ("f16", "bool"),
    ("tuning", "str"),
    ("model", "str"),
    ("weight_type", "str"),
    ("kv", "str"),
    ("ctx", "u64"),
    ("test", "str"),
    ("n_prompt", "u64"),
    ("n_gen", "u64"),
    ("depth", "u64"),
    ("reps", "u64"),
    ("tokens_per_s", "[f64]"),
    ("mean", "f64"),
    ("std", "f64"),
    ("kv_bytes_resident", "u64"),
    ("kv_bytes_read_per_step", "u64"),
    ("kv_bytes_allocated", "u64"),
    ("kv_tokens_per_layer", "[u64]"),
];

#[track_caller]
fn check_schema(v: &Value) {
    let o = v.as_object().unwrap_or_else(|| panic!("record is not an object: {v}"));
    for (k, ty) in FIELDS {
        let f = o.get(*k).unwrap_or_else(|| panic!("missing '{k}' in {v}"));
        let ok = match *ty {
            "u64" => f.is_u64(),
            "str" => f.is_string(),
            "bool" => f.is_boolean(),
            "f64" => f.is_number(),
            "[f64]" => f.as_array().is_some_and(|a| a.iter().all(Value::is_number)),
            "[u64]" => f.as_array().is_some_and(|a| a.iter().all(Value::is_u64)),
            _ => unreachable!(),
        };
        assert!(ok, "'{k}' should be {ty}: {f}");
    }
    assert_eq!(o.len(), FIELDS.len(), "unexpected extra fields: {v}");
    assert_eq!(o["schema"], record::SCHEMA);
    assert_eq!(o["tokens_per_s"].as_array().unwrap().len() as u64, o["reps"].as_u64().unwrap());
}

/// A minimal XML check: every tag closed in order, attributes quoted, no
/// stray `<` or unknown entity in text. Returns the element names in order.
fn xml_elements(s: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = s.trim();
    assert!(rest.starts_with("<svg"), "document must start with <svg: {}", &rest[..40.min(rest.len())]);
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let gt = rest[lt..].find('>').expect("unterminated tag") + lt;
        let tag = &rest[lt + 1..gt];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("closing </{name}> with nothing open"));
            assert_eq!(open, name.trim(), "mismatched closing tag");
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().expect("empty tag").to_string();
            check_attributes(&body[name.len()..]);
            names.push(name.clone());
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[gt + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    names
}

fn check_text(t: &str) {
    let mut r = t;
    while let Some(i) = r.find('&') {
        let ent = &r[i..];
        assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)), "bad entity in {t:?}");
        r = &r[i + 1..];
    }
}

/// ` a="1" b="x y"`: names followed by ="..." only.
fn check_attributes(mut a: &str) {
    loop {
        a = a.trim_start();
        if a.is_empty() {
            return;
        }
        let eq = a.find('=').unwrap_or_else(|| panic!("attribute without value: {a}"));
        let name = &a[..eq];
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':' || c == '_'), "bad attribute name {name:?}");
        assert!(a[eq + 1..].starts_with('"'), "unquoted attribute {name}");
        let close = a[eq + 2..].find('"').expect("unterminated attribute") + eq + 2;
        check_text(&a[eq + 2..close]);
        a = &a[close + 1..];
    }
}

/// The `<g class="panel">` blocks of an SVG.
fn panels(svg: &str) -> Vec<&str> {
    svg.split(r#"<g class="panel">"#).skip(1).collect()
}

// ---------------------------------------------------------------- schema, table, plot (no GPU)

/// Records with rates rounded to 9 significant digits: serde_json's default
/// float parser may be one ulp off the written value.
fn rounded(v: &[Record]) -> Vec<Record> {
    let r = |x: f64| format!("{x:.9e}").parse::<f64>().unwrap();
    v.iter().map(|x| Record { mean: r(x.mean), std: r(x.std), tokens_per_s: x.tokens_per_s.iter().map(|&t| r(t)).collect(), ..x.clone() }).collect()
}

#[test]
fn records_serialise_every_field_and_read_back() {
    let rows = run_rows(&["full", "quest:budget=128"], "NVIDIA H100");
    let text = record::to_json(&rows);
    let v: Value = serde_json::from_str(&text).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), rows.len());
    for r in arr {
        check_schema(r);
    }
    // One record per line.
    assert_eq!(text.lines().count(), rows.len() + 2);
    assert_eq!(rounded(&record::from_json("x.json", &text).unwrap()), rounded(&rows));
    // A single object is read as one record.
    let one = serde_json::to_string(&rows[0]).unwrap();
    assert_eq!(rounded(&record::from_json("x.json", &one).unwrap()), rounded(&rows[..1]));
}

#[test]
fn bad_record_files_are_one_line_errors() {
    let err = |text: &str| record::from_json("old.json", text).unwrap_err().to_string();
    assert!(err("{not json").starts_with("old.json: not JSON"));
    assert!(err("42").contains("expected a JSON array"));
    assert!(err(r#"[{"test": "pp512"}]"#).contains("no 'schema' field"));
    let mut v: Value = serde_json::to_value(vec![rec("full", 512, 0, 0, "a")]).unwrap();
    v[0]["schema"] = (record::SCHEMA + 1).into();
    assert!(err(&v.to_string()).contains("upgrade wgkv"));
    v[0]["schema"] = record::SCHEMA.into();
    v[0].as_object_mut().unwrap().remove("mean");
    let e = err(&v.to_string());
    assert!(e.contains("record 0") && e.contains("mean"), "{e}");
    for e in [err("{not json"), e] {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

#[test]
fn names_stats_and_flag_lists() {
    assert_eq!(record::test_name(512, 0, 0), "pp512");
    assert_eq!(record::test_name(0, 128, 0), "tg128");
    assert_eq!(record::test_name(0, 128, 2048), "tg128@d2048");
    let (m, s) = record::mean_std(&[2.0, 4.0, 6.0]);
    assert_eq!((m, s), (4.0, 2.0));
    assert_eq!(record::mean_std(&[5.0]), (5.0, 0.0));
    assert_eq!(parse_list("--depth", "0, 2048,0").unwrap(), vec![0, 2048]);
    assert!(parse_list("--depth", "0,x").unwrap_err().to_string().contains("'x'"));
    assert_eq!(parse_specs("full; full ;").unwrap().len(), 1);
    assert!(parse_specs("full;lru").is_err());
    assert_eq!(fmt_bytes(512), "512 B");
    assert_eq!(fmt_bytes(1536), "1.50 KiB");
    assert_eq!(fmt_bytes(47_185_920), "45.00 MiB");
}

#[test]
fn plan_cases_and_context() {
    let plan = Plan { n_prompt: 512, n_gen: 128, depths: vec![0, 2048], reps: 3, seed: 1 };
    let names: Vec<String> = plan.cases().iter().map(Case::name).collect();
    assert_eq!(names, ["pp512", "tg128", "tg128@d2048"]);
    assert_eq!(plan.ctx_needed(), 2048 + 128 + 1);
    assert_eq!(plan.runs(), 3 * 4);
    let pp_only = Plan { n_gen: 0, ..plan.clone() };
    assert_eq!(pp_only.cases().len(), 1);
    assert_eq!(pp_only.ctx_needed(), 512);
    assert!(Plan { n_prompt: 0, n_gen: 0, ..plan.clone() }.validate().is_err());
    assert!(Plan { reps: 0, ..plan }.validate().is_err());
}

#[test]
fn markdown_table_shape() {
    let rows = run_rows(&["full", "quest:budget=128"], "GPU A");
    let text = table::bench_table(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + rows.len());
    let cols = |l: &str| l.matches(" | ").count() + 1;
    for l in &lines {
        assert!(l.starts_with("| ") && l.ends_with(" |"), "{l}");
        assert_eq!(cols(l), 10, "{l}");
        assert_eq!(l.chars().count(), lines[0].chars().count(), "columns are padded to one width");
    }
    let head: Vec<&str> = lines[0].trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(head, ["model", "weights", "adapter", "backend", "kv", "test", "t/s", "KV resident", "KV read/step", "depth"]);
    let sep: Vec<&str> = lines[1].trim_matches('|').split('|').map(str::trim).collect();
    assert!(sep[0].chars().all(|c| c == '-'), "text columns left-aligned");
    assert!(sep[6].ends_with(':') && sep[9].ends_with(':'), "numbers right-aligned");
    assert!(lines[3].contains("| tg128 ") && lines[3].contains("100.0 ± 4.0"), "{}", lines[3]);
    let resident = fmt_bytes((2048 + 128) * 46080);
    assert!(lines[5].contains("tg128@d2048") && lines[5].contains(&resident) && lines[5].ends_with(" 2048 |"), "{}", lines[5]);
    assert!(lines[6].contains("quest:budget=128"));
}

#[test]
fn compare_groups_rows_by_device() {
    let mut rows = run_rows(&["full"], "GPU A");
    rows.extend(run_rows(&["full"], "GPU B"));
    rows.push(rec("quest:budget=128", 512, 0, 0, "GPU A"));
    let order: Vec<String> = table::grouped_by_device(&rows).iter().map(|r| r.device.adapter.clone()).collect();
    assert_eq!(order, ["GPU A"; 5].into_iter().chain(["GPU B"; 4]).collect::<Vec<_>>());
    // With two devices the plot names each line by policy and device.
    let svg = plot::bench_figure(&rows).to_svg();
    assert!(svg.contains("full — GPU A (Vulkan)") && svg.contains("full — GPU B (Vulkan)"), "{svg}");
}

#[test]
fn bench_svg_is_well_formed_with_a_line_per_policy() {
    let policies = ["full", "quest:budget=128", "streaming:budget=256"];
    let rows = run_rows(&policies, "llvmpipe <LLVM & co>");
    let svg = plot::bench_figure(&rows).to_svg();
    let names = xml_elements(&svg);
    assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#), "{}", &svg[..80]);
    assert!(names.iter().filter(|n| *n == "text").count() > 20, "ticks and labels");
    assert!(svg.contains("llvmpipe &lt;LLVM &amp; co&gt;"), "title names the adapter, escaped");
    assert!(svg.contains("m.gguf"), "title names the model");
    let p = panels(&svg);
    assert_eq!(p.len(), 2, "speed and bytes panels");
    assert!(p[0].contains("Decode speed") && p[1].contains("KV cache resident"));
    for panel in &p {
        for kv in policies {
            let start = panel.find(&format!(r#"<g class="series" data-name="{kv}">"#)).unwrap_or_else(|| panic!("no series for {kv}"));
            let series = &panel[start..panel[start..].find("</g>").unwrap() + start];
            assert_eq!(series.matches("<polyline").count(), 1);
            assert_eq!(series.matches("<title>").count(), 3, "one marker per depth");
        }
    }
    // Byte ticks carry units; a legend entry per policy.
    assert!(p[1].contains(" MiB</text>"));
    for kv in policies {
        assert!(svg.contains(&format!(">{kv}</text>")), "legend entry for {kv}");
    }
}

#[test]
fn svg_handles_empty_and_single_point_panels() {
    let fig = Figure {
        title: "t".into(),
        subtitle: "s".into(),
        panels: vec![
            Panel { title: "a".into(), x_label: "x".into(), y_label: "y".into(), x_scale: Scale::Number, y_scale: Scale::Number, series: vec![] },
            Panel {
                title: "b".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                x_scale: Scale::Percent,
                y_scale: Scale::Percent,
                series: vec![Series { name: "one".into(), points: vec![Point { x: 50.0, y: 0.0, err: 0.0 }] }],
            },
        ],
    };
    let svg = fig.to_svg();
    xml_elements(&svg);
    assert!(svg.contains("no data"));
    assert!(svg.contains(">100%</text>"));
    // Prefill-only records: the decode panels are empty but the file is valid.
    let svg = plot::bench_figure(&[rec("full", 512, 0, 0, "a")]).to_svg();
    xml_elements(&svg);
}

/// The `<g class="series">` groups of a panel: (data-name, the group's text).
fn series_of(panel: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let mut rest = panel;
    while let Some(i) = rest.find(r#"<g class="series" data-name=""#) {
        let body = &rest[i..];
        let end = body.find("</g>").expect("series group closed");
        let name = body.split('"').nth(3).unwrap().to_string();
        out.push((name, &body[..end]));
        rest = &body[end..];
    }
    out
}

#[test]
fn compare_keeps_runs_of_different_files_apart() {
    // Two runs of one policy on one device, from different commits: tg16
    // at depth 0 in one file, tg128 at depths 0 and 1024 in the other.
    let dir = tiny::scratch("bench-compare-files");
    let file = |name: &str, commit: &str, rows: Vec<Record>| {
        let rows: Vec<Record> = rows.into_iter().map(|r| Record { git_commit: commit.into(), ..r }).collect();
        let p = dir.join(name);
        std::fs::write(&p, record::to_json(&rows)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let a = file("a.json", "aaa1111", vec![rec("full", 0, 16, 0, "GPU A")]);
    let b = file("b.json", "bbb2222", vec![rec("full", 0, 128, 0, "GPU A"), rec("full", 0, 128, 1024, "GPU A")]);
    let svg_path = dir.join("cmp.svg");
    let o = wgkv(&["bench", "--compare", &a, &b, "--plot", svg_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let cells = |l: &str| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2 + 3, "{out}");
    assert_eq!(cells(lines[0])[0], "source", "{out}");
    assert_eq!(cells(lines[0]).len(), 11, "{out}");
    let sources: Vec<String> = lines[2..].iter().map(|l| cells(l)[0].clone()).collect();
    assert_eq!(sources, [format!("{a} (aaa1111)"), format!("{b} (bbb2222)"), format!("{b} (bbb2222)")]);
    let tests: Vec<String> = lines[2..].iter().map(|l| cells(l)[6].clone()).collect();
    assert_eq!(tests, ["tg16", "tg128", "tg128@d1024"]);

    // One line per file in each panel: one point from a.json, two from b.json.
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    xml_elements(&svg);
    let p = panels(&svg);
    assert_eq!(p.len(), 2);
    for panel in &p {
        let got: Vec<(String, usize)> = series_of(panel).into_iter().map(|(n, body)| (n, body.matches("<title>").count())).collect();
        assert_eq!(got, [(format!("full — {a} (aaa1111)"), 1), (format!("full — {b} (bbb2222)"), 2)], "{panel}");
    }
    let subtitle = svg.lines().nth(3).unwrap();
    assert!(subtitle.contains(&format!("{a} (aaa1111)")) && subtitle.contains(&format!("{b} (bbb2222)")), "{subtitle}");

    // The merged JSON names each record's file; merging it again keeps them apart.
    let o = wgkv(&["bench", "--compare", &a, &b, "--json", "-"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(got, [a.as_str(), &b, &b]);
    let merged = dir.join("merged.json");
    std::fs::write(&merged, &o.stdout).unwrap();
    let o = wgkv(&["bench", "--compare", merged.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(cells(out.lines().nth(3).unwrap())[0], format!("{b} (bbb2222)"), "{out}");

    // One file: the table and plot of a single run, as `bench` prints them.
    let one_svg = dir.join("one.svg");
    let o = wgkv(&["bench", "--compare", &b, "--plot", one_svg.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, table::bench_table(&[rec("full", 0, 128, 0, "GPU A"), rec("full", 0, 128, 1024, "GPU A")]));
    assert_eq!(cells(out.lines().next().unwrap())[0], "model");
    let svg = std::fs::read_to_string(&one_svg).unwrap();
    assert!(svg.lines().nth(3).unwrap().contains("; wgkv 0.1.0 (bbb2222)</text>"), "{svg}");
    assert_eq!(series_of(panels(&svg)[0]).into_iter().map(|(n, _)| n).collect::<Vec<_>>(), ["full"]);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- end to end on the tiny model

/// A GPU adapter exists (or the test is skipped; a failure under WGKV_REQUIRE_GPU).
fn have_gpu() -> bool {
    common::contexts().into_iter().next().is_some()
}

#[test]
fn bench_cli_on_the_tiny_model() {
    if !have_gpu() {
        return;
    }
    let dir = tiny::scratch("bench-cli");
    let model = dir.join("tiny.gguf");
    tiny::write_tiny_gguf(&model, 7, WType::Q4_1);
    let m = model.to_str().unwrap();
    let svg = dir.join("b.svg");
    let o = wgkv(&["--model", m, "bench", "-p", "16", "-n", "4", "--depth", "0,8", "-r", "2", "--kv", "full", "--json", "-", "--plot", svg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON array");
    let rows = v.as_array().unwrap();
    let tests: Vec<&str> = rows.iter().map(|r| r["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["pp16", "tg4", "tg4@d8"]);
    // With `--json -` the table goes to stderr.
    assert!(err.contains("| tg4@d8 "), "{err}");
    for r in rows {
        check_schema(r);
        assert_eq!(r["model"], "tiny.gguf");
        assert_eq!(r["kv"], "full");
        assert_eq!(r["ctx"], 16, "max(p, max depth + n + 1)");
        assert_eq!(r["reps"], 2);
        assert!(r["tokens_per_s"].as_array().unwrap().iter().all(|t| t.as_f64().unwrap() > 0.0));
        assert!(r["mean"].as_f64().unwrap() > 0.0 && r["std"].as_f64().unwrap() >= 0.0);
        assert!(!r["git_commit"].as_str().unwrap().is_empty());
        // Dense cache: 2 (K, V) x 2 layers x 2 KV heads x 16 dims per token.
        let elem = if r["f16"].as_bool().unwrap() { 2 } else { 4 };
        let per_token = 2 * tiny::LAYERS * tiny::KV_HEADS * tiny::HEAD_DIM * elem;
        let tokens = match r["test"].as_str().unwrap() {
            "pp16" => 16,
            "tg4" => 1 + 4,
            _ => 8 + 4,
        };
        assert_eq!(r["kv_bytes_resident"], tokens * per_token, "{r}");
        assert_eq!(r["kv_bytes_read_per_step"], tokens * per_token, "full reads every cached token");
        // The 16 slots and the scratch beside them, the same in every row.
        assert!(r["kv_bytes_allocated"].as_u64().unwrap() > (16 * per_token) as u64, "{r}");
        assert_eq!(r["kv_bytes_allocated"], rows[0]["kv_bytes_allocated"]);
        assert_eq!(r["kv_tokens_per_layer"], serde_json::json!(vec![tokens; tiny::LAYERS]));
    }
    let (pp, tg, tgd) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!((pp["n_prompt"].as_u64(), pp["n_gen"].as_u64(), pp["depth"].as_u64()), (Some(16), Some(0), Some(0)));
    assert_eq!((tg["n_prompt"].as_u64(), tg["n_gen"].as_u64(), tg["depth"].as_u64()), (Some(0), Some(4), Some(0)));
    assert_eq!(tgd["depth"], 8);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    xml_elements(&svg_text);
    assert_eq!(svg_text.matches("<polyline points=").count() - 2, 2, "one series line per panel besides the two axes");

    // --compare: the same rows as if measured on a second GPU, merged.
    let a = dir.join("a.json");
    std::fs::write(&a, &o.stdout).unwrap();
    let mut other = v.clone();
    for r in other.as_array_mut().unwrap() {
        r["adapter"] = "Other GPU".into();
        r["backend"] = "Metal".into();
    }
    let b = dir.join("b.json");
    std::fs::write(&b, other.to_string()).unwrap();
    let merged_svg = dir.join("m.svg");
    let o = wgkv(&["bench", "--compare", a.to_str().unwrap(), b.to_str().unwrap(), "--json", "-", "--plot", merged_svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sourced = |rows: &Value, file: &std::path::Path| -> Vec<Value> {
        let mut rows = rows.as_array().unwrap().clone();
        for r in &mut rows {
            r["source"] = file.to_str().unwrap().into();
        }
        rows
    };
    let want: Vec<Value> = sourced(&v, &a).into_iter().chain(sourced(&other, &b)).collect();
    assert_eq!(merged, Value::Array(want), "--compare passes records through, each naming its file");
    let svg_text = std::fs::read_to_string(&merged_svg).unwrap();
    xml_elements(&svg_text);
    assert!(svg_text.contains("Other GPU (Metal)"));
    // Without --json the merged table is on stdout, both devices in it.
    let o = wgkv(&["bench", "--compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 2 + 6, "{out}");
    assert!(out.contains("| Other GPU ") && out.contains("| Metal "), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_cli_errors_are_one_line() {
    let o = wgkv(&["bench", "--compare", "/nonexistent/a.json"]);
    assert_one_line_error(&o, "/nonexistent/a.json");
    let dir = tiny::scratch("bench-errors");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "[{\"schema\": 1}]").unwrap();
    assert_one_line_error(&wgkv(&["bench", "--compare", bad.to_str().unwrap()]), "record 0");
    let model = dir.join("tiny.gguf");
    tiny::write_tiny_gguf(&model, 7, WType::Q8_0);
    let m = model.to_str().unwrap();
    assert_one_line_error(&wgkv(&["--model", m, "bench", "--depth", "0,x"]), "--depth");
    assert_one_line_error(&wgkv(&["--model", m, "bench", "-p", "0", "-n", "0"]), "nothing to measure");
    assert_one_line_error(&wgkv(&["--model", m, "bench", "--kv", "full;lru"]), "unknown --kv part 'lru'");
    // The default depth 2048 does not fit the tiny model's 256-token context.
    assert_one_line_error(&wgkv(&["--model", m, "bench"]), "lower -p, -n or --depth");
    assert_one_line_error(&wgkv(&["--model", m, "bench", "-p", "64", "--ctx", "32", "--depth", "0"]), "below the 129 tokens");
    let _ = std::fs::remove_dir_all(&dir);
}
