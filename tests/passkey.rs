//! The accuracy instruments: Quest's pass-key prompt builder (key placed at
//! the depth asked within one sentence, the prompt filling the budget
//! without exceeding it, exact key line and question tokens, text intact
//! through a real byte-level tokenizer, chat framing), answer parsing (first
//! integer), keys; and end to end on the tiny random Llama with a small
//! byte-level vocabulary: `eval passkey` (JSON, table, plot, chat format,
//! errors) and `eval ppl --compare-full` (a policy compared with itself has
//! KL 0 and full top-1 agreement); `eval passkey --compare` merging runs.

mod common;
use common::cli::{assert_one_line_error, wgkv};
#[path = "common/tiny.rs"]
mod tiny;

use serde_json::Value;
use wgkv::Result;
use wgkv::measure::passkey::{self, ANSWER_LEAD, FILLER, Frame, Prompt, QUESTION, TASK};
use wgkv::quant::WType;
use wgkv::template::ChatTemplate;
use wgkv::tokenizer::Tokenizer;

// ---------------------------------------------------------------- helpers

/// A word-level stand-in tokenizer: every word or number with its leading
/// space, and every punctuation mark, is one token (ids from a hash, so
/// equal pieces get equal ids).
fn words(text: &str) -> Result<Vec<u32>> {
    let id = |p: &str| p.bytes().fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % 50_000;
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        let extend = match cur.chars().last() {
            None => true,
            Some(' ') => cur.len() == 1 && c != ' ',
            Some(p) => p.is_alphanumeric() && c.is_alphanumeric(),
        };
        if !extend {
            out.push(id(&cur));
            cur.clear();
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(id(&cur));
    }
    Ok(out)
}

fn build_words(budget: usize, depth: f64, key: u32) -> Prompt {
    passkey::build(&mut words, &Frame::default(), budget, depth, key).unwrap()
}

// ---------------------------------------------------------------- prompt builder (no GPU)

#[test]
fn key_is_placed_at_the_depth_asked() {
    for depth in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let p = build_words(2000, depth, 12345);
        // One sentence of tolerance: the key goes between sentences.
        let tol = p.sentence_tokens_max as f64 / p.filler_tokens as f64;
        assert!((p.depth() - depth / 100.0).abs() <= tol, "depth {depth}: key at {:.4} (tolerance {tol:.4})", p.depth());
        // The key line tokens sit at key_start, exactly as tokenized alone.
        let key = words(&passkey::key_line(12345)).unwrap();
        assert_eq!(&p.context[p.key_start..p.key_start + p.key_len], &key[..]);
        // Filler before the key = key offset within the filler region.
        assert_eq!(p.key_start - p.filler_start, p.filler_before);
        assert_eq!(p.context.len(), p.filler_start + p.filler_tokens + p.key_len);
    }
    let p0 = build_words(2000, 0.0, 1);
    assert_eq!(p0.key_start, p0.filler_start, "0%: right after the task line");
    let p100 = build_words(2000, 100.0, 1);
    assert_eq!(p100.key_start + p100.key_len, p100.context.len(), "100%: right before the question");
    let p50 = build_words(2000, 50.0, 1);
    assert!(p50.sentences > 100, "a 2000-token prompt holds many sentences: {}", p50.sentences);
}

#[test]
fn prompt_fills_the_budget_without_exceeding_it() {
    for budget in [70, 100, 257, 1016, 4088] {
        for depth in [0.0, 50.0, 100.0] {
            let p = build_words(budget, depth, 99999);
            assert!(p.len() <= budget, "budget {budget}: {} tokens", p.len());
            assert!(budget - p.len() < p.sentence_tokens_max, "budget {budget}: {} tokens left unused", budget - p.len());
            assert_eq!(p.question, words(" What is the pass key? The pass key is").unwrap());
            assert_eq!(&p.context[..p.filler_start], &words(TASK).unwrap()[..]);
        }
    }
    let e = passkey::build(&mut words, &Frame::default(), 30, 50.0, 1).unwrap_err().to_string();
    assert!(e.contains("raise --ctx") && e.contains("only 30 fit"), "{e}");
    assert!(passkey::build(&mut words, &Frame::default(), 1000, 100.5, 1).is_err());
    // The head (BOS, chat header) comes first and counts against the budget.
    let frame = Frame { head: vec![7, 8, 9], tail: String::new() };
    let p = passkey::build(&mut words, &frame, 200, 50.0, 1).unwrap();
    assert_eq!(&p.context[..3], &[7, 8, 9]);
    assert!(p.len() <= 200);
}

#[test]
fn prompt_text_survives_a_real_byte_level_tokenizer() {
    let tok = Tokenizer::from_gguf_vocab(tiny::tiny_vocab()).unwrap();
    let key = 40817;
    let p = passkey::build(&mut |s| tok.encode(s, true), &Frame::default(), 700, 50.0, key).unwrap();
    let text = tok.decode(&p.context);
    let filler: String = (0..p.sentences).map(|i| FILLER[i % FILLER.len()]).collect();
    let key_at = text.find(&passkey::key_line(key)).expect("key line in the text");
    assert_eq!(format!("{}{}", &text[..key_at], &text[key_at + passkey::key_line(key).len()..]), format!("{TASK}{filler}"));
    assert_eq!(tok.decode(&p.question), format!("{QUESTION} {ANSWER_LEAD}"));
    // Byte-level BPE splits at each piece's leading space: tokenizing the
    // whole text gives the same ids as the concatenated pieces.
    let whole = tok.encode(&(text.clone() + &tok.decode(&p.question)), true).unwrap();
    assert_eq!(whole, [p.context.clone(), p.question.clone()].concat());
    // Depth in characters agrees with depth in tokens to within a sentence.
    let chars = (key_at - TASK.len()) as f64 / filler.len() as f64;
    assert!((chars - 0.5).abs() < 0.05, "{chars}");
}

#[test]
fn chat_frame_wraps_the_prompt_in_one_user_turn() {
    let t = ChatTemplate::new(tiny::CHATML, "<|im_start|>", "<|im_end|>").unwrap();
    let (head, tail) = passkey::chat_parts(&t).unwrap();
    assert_eq!(head, "<|im_start|>user\n");
    assert_eq!(tail, "<|im_end|>\n<|im_start|>assistant\n");
    let frame = Frame { head: vec![1], tail };
    assert_eq!(frame.question_text(), " What is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is");
    assert_eq!(Frame::default().question_text(), " What is the pass key? The pass key is");
    let dropping = ChatTemplate::new("{{ 'no content here' }}", "", "").unwrap();
    assert!(passkey::chat_parts(&dropping).unwrap_err().to_string().contains("--format raw"));
}

#[test]
fn answers_are_scored_by_their_first_integer() {
    assert_eq!(passkey::first_integer(" 21518."), Some(21518));
    assert_eq!(passkey::first_integer("The key is 12a34"), Some(12));
    assert_eq!(passkey::first_integer("-5 or 6"), Some(5));
    assert_eq!(passkey::first_integer("no digits"), None);
    assert_eq!(passkey::first_integer(""), None);
    assert_eq!(passkey::first_integer("99999999999999999999999"), None, "does not fit u64");
    assert!(passkey::is_correct(" 40817. Remember", 40817));
    assert!(!passkey::is_correct(" 4081 7", 40817));
    assert!(!passkey::is_correct(" 408170", 40817));
}

#[test]
fn decoding_stops_once_a_whole_number_is_out() {
    assert!(!passkey::number_complete(" 6143"), "digits may go on");
    assert!(passkey::number_complete(" 61432."));
    assert!(passkey::number_complete(" 61432 "), "a space ends the number");
    assert!(passkey::number_complete("The key is 12a"));
    assert!(!passkey::number_complete("the pass key. The"), "no digits yet");
    assert!(!passkey::number_complete(""));
}

#[test]
fn keys_are_five_digits_and_fixed_by_the_seed() {
    let mut seen = std::collections::HashSet::new();
    for trial in 0..50 {
        for depth in 0..5 {
            let k = passkey::key_for(3, trial, depth);
            assert!((10_000..=99_999).contains(&k), "{k}");
            assert_eq!(k, passkey::key_for(3, trial, depth));
            seen.insert(k);
        }
    }
    assert!(seen.len() > 240, "keys should differ between trials and depths: {} distinct", seen.len());
    assert_ne!(passkey::key_for(3, 0, 0), passkey::key_for(4, 0, 0));
}

// ---------------------------------------------------------------- end to end on the tiny model

fn have_gpu() -> bool {
    common::contexts().into_iter().next().is_some()
}

#[test]
fn passkey_cli_on_the_tiny_model() {
    if !have_gpu() {
        return;
    }
    let dir = tiny::scratch("passkey-cli");
    let model = dir.join("tiny.gguf");
    tiny::write_tiny_with_vocab(&model);
    let m = model.to_str().unwrap();
    let svg = dir.join("p.svg");
    let o = wgkv(&["--model", m, "eval", "passkey", "--ctx", "320", "--depths", "0,50,100", "--trials", "2", "--json", "--plot", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    for k in [
        "schema",
        "wgkv_version",
        "git_commit",
        "model",
        "adapter",
        "backend",
        "device_type",
        "ctx",
        "prompt_tokens",
        "trials",
        "seed",
        "format",
        "question",
        "answer_tokens",
    ] {
        assert!(v.get(k).is_some(), "missing '{k}' in {v}");
    }
    assert_eq!(v["format"], "raw");
    assert_eq!(v["question"], "decode");
    assert_eq!(v["ctx"], 320);
    let prompt_tokens = v["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens <= 320 - 8 && prompt_tokens > 250, "{prompt_tokens}");
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "one row per policy and depth");
    for (row, depth) in rows.iter().zip([0, 50, 100]) {
        assert_eq!(row["kv"], "full");
        assert_eq!(row["depth"], depth);
        assert_eq!(row["trials"], 2);
        let detail = row["detail"].as_array().unwrap();
        assert_eq!(detail.len(), 2);
        let correct = detail.iter().filter(|d| d["correct"] == true).count();
        assert_eq!(row["correct"], correct);
        assert_eq!(row["accuracy"].as_f64().unwrap(), correct as f64 / 2.0);
        for d in detail {
            let key = d["key"].as_u64().unwrap();
            assert!((10_000..=99_999).contains(&key));
            assert!(d["answer"].is_string());
            assert_eq!(d["correct"], d["parsed"].as_u64() == Some(key));
            assert!((d["key_depth"].as_f64().unwrap() - depth as f64 / 100.0).abs() < 0.1, "{d}");
        }
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
    assert_eq!(svg.matches(r#"<g class="series" data-name="full">"#).count(), 1);
    assert!(svg.ends_with("</svg>\n"));

    // Text mode: a header line, then the accuracy table (duplicate specs run once).
    let o = wgkv(&["--model", m, "eval", "passkey", "--ctx", "256", "--depths", "25,75", "--trials", "1", "--kv", "full;full"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("pass key: ctx 256") && lines[0].contains("format raw"), "{out}");
    let head: Vec<&str> = lines[1].trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(head, ["kv", "25%", "75%", "all"]);
    assert!(lines[3].starts_with("| full ") && lines[3].contains("/1)") && lines[3].contains("/2)"), "{out}");

    // The chat format runs through the model's template.
    let o = wgkv(&["--model", m, "eval", "passkey", "--ctx", "300", "--depths", "50", "--trials", "1", "--format", "chat", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "chat");

    // The question prefilled with the context: the same prompts and keys.
    let keys = |v: &Value| v["results"][0]["detail"].as_array().unwrap().iter().map(|t| t["key"].clone()).collect::<Vec<_>>();
    let args = ["--model", m, "eval", "passkey", "--ctx", "300", "--depths", "50", "--trials", "2", "--kv", "snapkv:budget=64", "--json"];
    let o = wgkv(&args);
    let o2 = wgkv(&[&args[..], &["--question", "prefill"]].concat());
    assert!(o.status.success() && o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
    let (v, v2): (Value, Value) = (serde_json::from_slice(&o.stdout).unwrap(), serde_json::from_slice(&o2.stdout).unwrap());
    assert_eq!((&v["question"], &v2["question"]), (&Value::from("decode"), &Value::from("prefill")));
    assert_eq!(v["prompt_tokens"], v2["prompt_tokens"]);
    assert_eq!(keys(&v), keys(&v2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn passkey_cli_errors_are_one_line() {
    let dir = tiny::scratch("passkey-errors");
    let model = dir.join("tiny.gguf");
    tiny::write_tiny_with_vocab(&model);
    let m = model.to_str().unwrap();
    assert_one_line_error(&wgkv(&["--model", m, "eval", "passkey", "--ctx", "4096"]), "exceeds the model's context length 1024");
    assert_one_line_error(&wgkv(&["--model", m, "eval", "passkey", "--depths", "50,150"]), "150 is not a percentage");
    assert_one_line_error(&wgkv(&["--model", m, "eval", "passkey", "--ctx", "40"]), "raise --ctx");
    assert_one_line_error(&wgkv(&["--model", m, "eval", "passkey", "--trials", "0"]), "--trials");
    // The plain tiny model has no tokenizer.
    let bare = dir.join("bare.gguf");
    tiny::write_tiny_gguf(&bare, 1, WType::Q8_0);
    assert_one_line_error(&wgkv(&["--model", bare.to_str().unwrap(), "eval", "passkey", "--ctx", "128"]), "tokenizer");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ppl_compare_full_of_full_is_exact() {
    if !have_gpu() {
        return;
    }
    let dir = tiny::scratch("ppl-compare");
    let model = dir.join("tiny.gguf");
    tiny::write_tiny_with_vocab(&model);
    let text = dir.join("text.txt");
    std::fs::write(&text, "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ".repeat(8)).unwrap();
    let (m, f) = (model.to_str().unwrap(), text.to_str().unwrap());
    let o = wgkv(&["--model", m, "eval", "ppl", "--file", f, "--ctx", "48", "--chunks", "2", "--compare-full", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["scored"], 2 * (48 - 1 - 24));
    // The same policy on the same GPU computes the same logits (deterministic kernels).
    assert!(v["kl_mean"].as_f64().unwrap() < 1e-9, "{v}");
    assert_eq!(v["top1_agree"], v["scored"]);
    assert_eq!(v["top1_rate"].as_f64().unwrap(), 1.0);
    let (p, pf) = (v["ppl"].as_f64().unwrap(), v["ppl_full"].as_f64().unwrap());
    assert!((p - pf).abs() <= 1e-9 * p, "{v}");
    // Without the flag the fields are absent; the text form names the comparison.
    let o = wgkv(&["--model", m, "eval", "ppl", "--file", f, "--ctx", "48", "--chunks", "1", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.get("kl_mean").is_none());
    let o = wgkv(&["--model", m, "eval", "ppl", "--file", f, "--ctx", "48", "--chunks", "1", "--compare-full"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("vs full cache: mean KL(full || full) 0.000000 nats, top-1 agreement 23/23 (100.00%)"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- --compare

/// An `eval passkey --json` output with one trial per (policy, depth) cell:
/// `(kv, depth, key, answer, correct)`. Every row's summary says 99 correct,
/// so a merge that copied summaries instead of counting trials shows.
fn passkey_json(ctx: usize, question: &str, commit: &str, cells: &[(&str, usize, u32, &str, bool)]) -> Value {
    let results: Vec<Value> = cells
        .iter()
        .map(|&(kv, depth, key, answer, correct)| {
            serde_json::json!({
                "kv": kv, "depth": depth, "trials": 1, "correct": 99, "accuracy": 99.0,
                "detail": [{ "trial": 0, "key": key, "answer": answer, "parsed": null, "correct": correct,
                             "prompt_tokens": ctx - 9, "key_depth": depth as f64 / 100.0 }],
            })
        })
        .collect();
    serde_json::json!({
        "schema": 1, "wgkv_version": "0.1.0", "git_commit": commit, "model": "m.gguf",
        "adapter": "some adapter", "backend": "Vulkan", "device_type": "Cpu", "f16": true,
        "ctx": ctx, "prompt_tokens": ctx - 9, "trials": 1, "seed": 1, "format": "raw",
        "question": question, "answer_tokens": 8, "results": results,
    })
}

#[test]
fn passkey_compare_merges_runs_and_refuses_mismatches() {
    let dir = tiny::scratch("passkey-compare");
    let write = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let a = write(
        "a.json",
        &passkey_json(
            4096,
            "prefill",
            "aaa",
            &[
                ("full", 0, 21518, " 21518.", true),
                ("full", 50, 61432, " 61432.", true),
                ("quest:budget=256", 0, 21518, " 2111.", false),
                ("quest:budget=256", 50, 61432, " 61432.", true),
            ],
        ),
    );
    let b = write(
        "b.json",
        &passkey_json(4096, "prefill", "bbb", &[("quest:budget=512", 0, 21518, " 21518.", true), ("quest:budget=512", 50, 61432, " 6141.", false)]),
    );
    let svg = dir.join("m.svg");
    let o = wgkv(&["eval", "passkey", "--compare", &a, &b, "--json", "--plot", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!((v["ctx"].as_u64(), v["question"].as_str(), v["adapter"].as_str()), (Some(4096), Some("prefill"), Some("some adapter")));
    let rows = v["results"].as_array().unwrap();
    let got: Vec<(&str, u64, u64)> = rows.iter().map(|r| (r["kv"].as_str().unwrap(), r["depth"].as_u64().unwrap(), r["correct"].as_u64().unwrap())).collect();
    assert_eq!(
        got,
        [("full", 0, 1), ("full", 50, 1), ("quest:budget=256", 0, 0), ("quest:budget=256", 50, 1), ("quest:budget=512", 0, 1), ("quest:budget=512", 50, 0)]
    );
    assert_eq!(rows[2]["detail"][0]["answer"], " 2111.");
    assert_eq!(rows[2]["detail"][0]["parsed"], 2111);
    let sources: Vec<&str> = v["sources"].as_array().unwrap().iter().map(|s| s["git_commit"].as_str().unwrap()).collect();
    assert_eq!(sources, ["aaa", "bbb"]);
    let svg = std::fs::read_to_string(&svg).unwrap();
    for kv in ["full", "quest:budget=256", "quest:budget=512"] {
        assert_eq!(svg.matches(&format!(r#"<g class="series" data-name="{kv}">"#)).count(), 1, "{kv}");
    }

    // Text mode: the header line and one table row per policy.
    let o = wgkv(&["eval", "passkey", "--compare", &a, &b]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("pass key: ctx 4096"), "{out}");
    let row = out.lines().find(|l| l.starts_with("| quest:budget=256 ")).expect(&out);
    let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(cells, ["quest:budget=256", "0% (0/1)", "100% (1/1)", "50% (1/2)"]);

    // --kv picks policies of the files, in its order.
    let o = wgkv(&["eval", "passkey", "--compare", &a, &b, "--kv", "quest:budget=512;full", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let kvs: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["kv"].as_str().unwrap()).collect();
    assert_eq!(kvs, ["quest:budget=512", "quest:budget=512", "full", "full"]);
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", &a, "--kv", "quest:budget=512"]), "no file holds policy quest:budget=512");

    // Runs that cannot be read together.
    let other_ctx = write("c.json", &passkey_json(2048, "prefill", "ccc", &[("snapkv", 0, 1, " 1.", true), ("snapkv", 50, 2, " 2.", true)]));
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", &a, &other_ctx]), "ctx 2048");
    let other_q = write("d.json", &passkey_json(4096, "decode", "ddd", &[("snapkv", 0, 1, " 1.", true), ("snapkv", 50, 2, " 2.", true)]));
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", &a, &other_q]), "format/question raw/decode");
    let other_depths = write("e.json", &passkey_json(4096, "prefill", "eee", &[("snapkv", 25, 1, " 1.", true)]));
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", &a, &other_depths]), "depths [25]");
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", &a, &a]), "policy full appears again");
    let garbage = write("f.json", &serde_json::json!({ "results": [{ "kv": "full" }] }));
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", &garbage]), "not an `eval passkey --json` output");
    std::fs::write(dir.join("g.json"), "{ trunc").unwrap();
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", dir.join("g.json").to_str().unwrap()]), "not an `eval passkey --json` output");
    assert_one_line_error(&wgkv(&["eval", "passkey", "--compare", dir.join("missing.json").to_str().unwrap()]), "missing.json");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every measurement file committed in docs/ reads back through the reader
/// of the command that made it: `bench-*.json` through `bench --compare`,
/// `passkey-*.json` through `eval passkey --compare`, `*.jsonl` through
/// `eval ppl-plot` (the storage runs, `*-quant*` and `*-kivi*`, through
/// `eval ppl-frontier`). Runs from before `--question` existed carry no
/// `question`: they decoded it, and read back saying so.
#[test]
fn every_json_file_in_docs_reads_back() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let dir = tiny::scratch("docs-read-back");
    let mut files: Vec<_> = std::fs::read_dir(&docs).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut bench, mut passkey, mut ppl) = (0, 0, 0);
    let mut failed = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let p = path.to_str().unwrap();
        let o = if name.ends_with(".jsonl") && (name.contains("-quant") || name.contains("-kivi")) {
            // The storage runs: KV bytes against quality, not budgets.
            ppl += 1;
            wgkv(&["eval", "ppl-frontier", p, "--out", dir.join("frontier.svg").to_str().unwrap()])
        } else if name.ends_with(".jsonl") {
            ppl += 1;
            wgkv(&["eval", "ppl-plot", p, "--out", dir.join("ppl.svg").to_str().unwrap()])
        } else if !name.ends_with(".json") {
            continue;
        } else if name.starts_with("bench-") {
            bench += 1;
            wgkv(&["bench", "--compare", p])
        } else if name.starts_with("passkey-") {
            passkey += 1;
            wgkv(&["eval", "passkey", "--compare", p, "--json"])
        } else {
            panic!("{name}: no reader known for this JSON file in docs/");
        };
        if !o.status.success() || o.stdout.is_empty() {
            failed.push(format!("{name}: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
    }
    assert!(failed.is_empty(), "docs/ files that do not read back:\n{}", failed.join("\n"));
    assert!(bench >= 4 && passkey >= 10 && ppl >= 4, "bench {bench}, passkey {passkey}, ppl {ppl} files found");
    let before_question =
        ["passkey-lavapipe-2048.json", "passkey-lavapipe-2048-evict-10pct.json", "passkey-lavapipe-4096-quest.json", "passkey-lavapipe-4096-mustafar.json"];
    for name in before_question {
        let o = wgkv(&["eval", "passkey", "--compare", docs.join(name).to_str().unwrap(), "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(v["question"], "decode", "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval passkey --plot` of the 25 policies of docs/passkey-lavapipe-4096-evict.json:
/// small multiples of at most 8 lines each, every policy of the file drawn,
/// `full` and `streaming` in every panel, each panel's legend naming its lines.
#[test]
fn passkey_plot_of_many_policies_has_readable_panels() {
    let json = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/passkey-lavapipe-4096-evict.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut policies: Vec<String> = Vec::new();
    for r in v["results"].as_array().unwrap() {
        let kv = r["kv"].as_str().unwrap().to_string();
        if !policies.contains(&kv) {
            policies.push(kv);
        }
    }
    assert_eq!(policies.len(), 25);
    let dir = tiny::scratch("passkey-plot-many");
    let svg_path = dir.join("evict.svg");
    let o = wgkv(&["eval", "passkey", "--compare", json.to_str().unwrap(), "--plot", svg_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let panels: Vec<&str> = svg.split(r#"<g class="panel">"#).skip(1).collect();
    assert!(panels.len() > 1, "one panel for 25 lines");
    let mut drawn: Vec<String> = Vec::new();
    for p in &panels {
        let names: Vec<String> = p.split(r#"<g class="series" data-name=""#).skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect();
        assert!(names.len() <= 8, "{} lines in a panel: {names:?}", names.len());
        for r in ["full", "streaming:budget=5%", "streaming:budget=10%", "streaming:budget=25%"] {
            assert!(names.iter().any(|n| n == r), "{r} missing from a panel: {names:?}");
        }
        let legend = &p[p.find(r#"<g class="legend">"#).expect("a legend per panel")..];
        let legend = &legend[..legend.find("</g>").unwrap()];
        let entries: Vec<String> = legend.split("</text>").filter_map(|t| t.rfind('>').map(|i| t[i + 1..].to_string())).filter(|t| !t.is_empty()).collect();
        assert_eq!(entries, names);
        drawn.extend(names);
    }
    drawn.sort();
    drawn.dedup();
    policies.sort();
    assert_eq!(drawn, policies, "every policy of the file is drawn");
    let _ = std::fs::remove_dir_all(&dir);
}
