//! Issue 22: what a new user hits in the first hour, and the generation
//! controls llama-cli users reach for, on the tiny model through the
//! `wgkv` binary (and the sampler's full-vocabulary path in process).

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::cli::{assert_one_line_error, wgkv, wgkv_with_stdin};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

/// The tiny model with a vocabulary and a chat template (1024-token context),
/// or None (a visible skip) without an adapter.
fn tiny_model(tag: &str) -> Option<PathBuf> {
    common::contexts().into_iter().next()?;
    let p = tiny::scratch(tag).join("tiny.gguf");
    tiny::write_tiny_with_vocab(&p);
    Some(p)
}

fn ok(o: &Output) -> (String, String) {
    let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    assert!(o.status.success(), "{err}");
    (out, err)
}

fn json(o: &Output) -> Value {
    let (out, _) = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn generate_says_why_it_stopped_and_stamps_its_json() {
    let Some(model) = tiny_model("stop-reason") else { return };
    let m = model.to_str().unwrap();
    // One prompt token fills a one-token context: one token comes out of the prefill.
    let (_, err) = ok(&wgkv(&["--model", m, "generate", "-p", "h", "--ctx", "1", "-n", "5", "--temp", "0"]));
    assert!(err.contains("stopped: the context is full"), "{err}");
    let v = json(&wgkv(&["--model", m, "generate", "-p", "h", "--ctx", "1", "-n", "5", "--temp", "0", "--json"]));
    assert_eq!(v["stop"], "context_full", "{v}");
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["model"], "tiny.gguf", "{v}");
    for k in ["seed", "wgkv_version", "git_commit", "adapter", "backend"] {
        assert!(!v[k].is_null(), "no {k} in {v}");
    }
    let v = json(&wgkv(&["--model", m, "generate", "-p", "hello", "-n", "3", "--temp", "0", "--ignore-eos", "--json"]));
    assert_eq!((v["stop"].as_str(), v["tokens"].as_array().unwrap().len()), (Some("length"), 3), "{v}");
}

#[test]
fn minus_one_runs_until_the_context_is_full_and_bad_numbers_are_range_errors() {
    let Some(model) = tiny_model("minus-one") else { return };
    let m = model.to_str().unwrap();
    let v = json(&wgkv(&["--model", m, "generate", "-p", "h", "-n", "-1", "--ctx", "16", "--temp", "0", "--ignore-eos", "--json"]));
    // 16 slots: the prompt's token and every answer token but the last are cached.
    assert_eq!(v["stop"], "context_full", "{v}");
    assert_eq!(v["tokens"].as_array().unwrap().len(), 16, "{v}");
    assert_one_line_error(&wgkv(&["--model", m, "generate", "-p", "h", "--temp", "-1"]), "--temp must be 0 (greedy) or more, got -1");
    assert_one_line_error(&wgkv(&["--model", m, "generate", "-p", "h", "--top-p", "-0.5"]), "--top-p must be in (0, 1]");
    assert_one_line_error(&wgkv(&["--model", m, "generate", "-p", "h", "-n", "-2"]), "-n takes a token count or -1");
}

#[test]
fn prompt_from_a_file_or_stdin_equals_the_flag_and_a_random_seed_is_printed() {
    let Some(model) = tiny_model("prompt-sources") else { return };
    let m = model.to_str().unwrap();
    let text = "The pass key is 4242. Remember it.";
    let file = model.with_file_name("prompt.txt");
    std::fs::write(&file, text).unwrap();
    let run = |src: &[&str], stdin: Option<&str>| {
        json(&wgkv_with_stdin(&[&["--model", m, "generate", "-n", "8", "--temp", "0", "--json"], src].concat(), stdin))["tokens"].clone()
    };
    let by_flag = run(&["-p", text], None);
    assert_eq!(run(&["-f", file.to_str().unwrap()], None), by_flag);
    assert_eq!(run(&["-p", "-"], Some(text)), by_flag);
    assert_one_line_error(&wgkv(&["--model", m, "generate", "-f", "/nonexistent/prompt.txt"]), "/nonexistent/prompt.txt");
    // A drawn seed is printed, and repeats the run.
    let (out, err) = ok(&wgkv(&["--model", m, "generate", "-p", text, "-n", "12", "--temp", "1.5"]));
    let seed = err.split(", seed ").nth(1).and_then(|s| s.split(';').next()).unwrap_or_else(|| panic!("no seed in {err}"));
    let (again, _) = ok(&wgkv(&["--model", m, "generate", "-p", text, "-n", "12", "--temp", "1.5", "--seed", seed]));
    assert_eq!(again, out);
}

#[test]
fn stop_strings_end_the_text_before_them() {
    let Some(model) = tiny_model("stop-strings") else { return };
    let m = model.to_str().unwrap();
    let free = json(&wgkv(&["--model", m, "generate", "-p", "Once", "-n", "40", "--temp", "0", "--ignore-eos", "--json"]));
    let text = free["text"].as_str().unwrap().to_string();
    // A stop string from the middle of the free run's text (whole characters).
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 20, "{text:?}");
    let stop: String = chars[12..15].iter().collect();
    let v =
        json(&wgkv(&["--model", m, "generate", "-p", "Once", "-n", "40", "--temp", "0", "--ignore-eos", "--json", "--stop", &stop, "--stop", "never-there"]));
    let want = &text[..text.find(&stop).unwrap()];
    assert_eq!((v["text"].as_str().unwrap(), v["stop"].as_str().unwrap()), (want, "stop_string"), "stop {stop:?} in {text:?}");
    let (out, _) = ok(&wgkv(&["--model", m, "generate", "-p", "Once", "-n", "40", "--temp", "0", "--ignore-eos", "--stop", &stop]));
    assert_eq!(out, format!("{want}\n"));
}

#[test]
fn global_flags_a_command_ignores_are_refused() {
    let o = wgkv(&["--model", "/nonexistent", "devices"]);
    assert_one_line_error(&o, "--model does not apply to `wgkv devices`");
    assert_one_line_error(&wgkv(&["--adapter", "0", "fetch"]), "--adapter does not apply to `wgkv fetch`");
    assert_one_line_error(&wgkv(&["--backend", "vulkan", "tokenize", "hi"]), "--backend does not apply to `wgkv tokenize`");
    assert_one_line_error(&wgkv(&["--model", "x.gguf", "eval", "ppl-plot", "a.jsonl", "--out", "b.svg"]), "--model does not apply");
}

/// No line the user did not cause: a headless machine without
/// XDG_RUNTIME_DIR gets no libwayland complaint at start-up.
#[test]
fn a_headless_start_prints_nothing_on_stderr() {
    if common::contexts().into_iter().next().is_none() {
        return;
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgkv")).arg("devices").env_remove("XDG_RUNTIME_DIR").env_remove("WAYLAND_DISPLAY").output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert!(String::from_utf8_lossy(&o.stdout).contains("[0] "));
}

#[test]
fn chat_says_why_an_answer_stopped_and_how_fast_it_was() {
    let Some(model) = tiny_model("chat-stops") else { return };
    let m = model.to_str().unwrap();
    let args = ["--model", m, "chat", "--temp", "0", "-n", "400", "--ctx", "64", "--ignore-eos"];
    let (out, err) = ok(&wgkv_with_stdin(&args, Some("Tell me a story.\n/system\n/system Be brief.\n")));
    assert!(err.contains("(stopped: the 64-token context is full"), "{err}");
    assert!(out.contains("(system message cleared; conversation reset)"), "{out}");
    assert!(out.contains("(system message set; conversation reset)"), "{out}");
    assert!(err.contains(" t/s; prompt "), "no speed line: {err}");
    let (_, err) = ok(&wgkv_with_stdin(&[&args[..], &["--quiet"]].concat(), Some("Tell me a story.\n")));
    assert!(!err.contains(" t/s"), "--quiet printed a speed line: {err}");
    let (_, err) = ok(&wgkv_with_stdin(&["--model", m, "chat", "--temp", "0", "-n", "5", "--ignore-eos"], Some("Hi.\n")));
    assert!(err.contains("stopped at the -n limit"), "{err}");
}

/// The bytes `/kv` says the cache holds.
fn resident_bytes(out: &str) -> u64 {
    let line = out.lines().rev().find(|l| l.starts_with("kv ")).unwrap_or_else(|| panic!("no /kv line: {out}"));
    line.rsplit("; ").next().and_then(|s| s.strip_suffix(" bytes resident")).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// A saved conversation's JSON header length and cache bytes.
fn saved_parts(path: &std::path::Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"WGKVCHAT");
    let json = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    (json, bytes.len() as u64 - 20 - json)
}

/// Saves a long conversation under `kv` after its first turn, asks the next
/// question in the same chat and in a new one that loads the file: both
/// answer alike, the second prefills only the question, and the file holds
/// the resident KV bytes, the messages and a small header.
fn save_and_resume(model: &str, kv: &str, ctx: &str, long: &str, answer: &str) {
    let file = std::env::temp_dir().join(format!("wgkv-chat-{}-{}.wgkv", std::process::id(), kv.replace([':', '=', '%', '+', ','], "-")));
    let f = file.to_str().unwrap();
    let args = ["--model", model, "chat", "--temp", "0", "-n", answer, "--ctx", ctx, "--kv", kv, "--quiet"];
    let next = "What was the first word I wrote?";
    let (before, _) = ok(&wgkv_with_stdin(&args, Some(&format!("{long}\n/kv\n/save {f}\n{next}\n"))));
    let (after, _) = ok(&wgkv_with_stdin(&args, Some(&format!("/load {f}\n{next}\n/stats\n"))));
    let answer_of = |out: &str, after_line: &str| out.lines().skip_while(|l| !l.starts_with(after_line)).nth(1).unwrap_or("").to_string();
    let (a, b) = (answer_of(&before, "(saved "), answer_of(&after, "(loaded "));
    assert!(!a.is_empty(), "{kv}: no answer after the save: {before}");
    assert_eq!(a, b, "{kv}: the loaded chat answers differently\nbefore: {before}\nafter: {after}");
    let prefill: usize = after.lines().find_map(|l| l.strip_prefix("last answer: prefill ")?.split(' ').next()?.parse().ok()).unwrap();
    assert!(prefill < 100, "{kv}: the loaded chat prefilled {prefill} tokens: {after}");
    let (json, cache) = saved_parts(&file);
    assert_eq!(cache, resident_bytes(&before), "{kv}: cache bytes in the file against /kv's resident bytes");
    // The header: the messages and at most a KiB more (names, checksum, per-layer counts).
    let head: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()[20..20 + json as usize]).unwrap();
    let text: usize = head["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().len()).sum();
    assert!(text >= long.len() && json <= text as u64 + 1024, "{kv}: {json}-byte header for {text} bytes of messages");
    let _ = std::fs::remove_file(&file);
}

/// A message of about `n` tokens of the tiny byte-level vocabulary.
fn long_message(n: usize) -> String {
    let words = ["apple", "river", "stone", "cloud", "ember", "maple", "north", "quill"];
    let mut s = String::from("Remember this list:");
    let mut i = 0;
    while s.len() < n {
        s.push(' ');
        s.push_str(words[i * 7 % words.len()]);
        i += 1;
    }
    s
}

#[test]
fn a_saved_4k_conversation_resumes_where_it_stopped() {
    let Some(model) = tiny_model("save-load") else { return };
    let mut file = tiny::tiny_writer_with_vocab();
    file.add("llama.context_length", wgkv::gguf::Value::U32(4096)).write(&model).unwrap();
    let m = model.to_str().unwrap();
    let long = long_message(3800);
    save_and_resume(m, "snapkv:budget=10%", "4096", &long, "16");
    save_and_resume(m, "full", "4096", &long, "16");
    // Refusals keep the chat going, one line each.
    let f = model.with_file_name("c.wgkv");
    let fs = f.to_str().unwrap();
    let base = ["--model", m, "chat", "--temp", "0", "-n", "4", "--ctx", "512", "--kv", "snapkv:budget=64"];
    ok(&wgkv_with_stdin(&base, Some(&format!("Hello there.\n/save {fs}\n"))));
    let other_kv = ["--model", m, "chat", "--temp", "0", "-n", "4", "--ctx", "512"];
    let (out, _) = ok(&wgkv_with_stdin(&other_kv, Some(&format!("/load {fs}\nHi.\n"))));
    assert!(out.contains("(not loaded: ") && out.contains("saved under --kv snapkv:budget=64 --ctx 512"), "{out}");
    let other = model.with_file_name("other.gguf");
    let mut w = tiny::tiny_writer_with_vocab();
    w.add("general.name", wgkv::gguf::Value::Str("another tiny".into())).write(&other).unwrap();
    let (out, _) = ok(&wgkv_with_stdin(&[&["--model", other.to_str().unwrap()], &base[2..]].concat(), Some(&format!("/load {fs}\n"))));
    assert!(out.contains("was saved with another model"), "{out}");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 10]).unwrap();
    let (out, _) = ok(&wgkv_with_stdin(&base, Some(&format!("/load {fs}\n/load /nonexistent/c.wgkv\n/save\n"))));
    assert!(out.contains("(not loaded: ") && out.contains("bytes of cache where its header counts"), "{out}");
    assert!(out.contains("/nonexistent/c.wgkv") && out.contains("usage: /save FILE"), "{out}");
}

/// The case on the real model: a 4k-token conversation under
/// `snapkv:budget=10%` resumes with the same answer.
#[test]
fn the_real_model_resumes_a_saved_4k_conversation() {
    let Some(model) = common::real_model() else { return };
    let text = "The history of the lighthouse keepers on the northern coast is long and full of small, careful habits. ".repeat(190);
    save_and_resume(model.to_str().unwrap(), "snapkv:budget=10%", "4608", &text, "12");
}

/// Every command that prints results has `--json` with the same stamp.
#[test]
fn every_json_output_carries_the_stamp() {
    let Some(model) = tiny_model("stamps") else { return };
    let m = model.to_str().unwrap();
    let text = model.with_file_name("text.txt");
    std::fs::write(&text, "The pass key is 1234. The grass is green and the sky is blue. ".repeat(20)).unwrap();
    let stamped = |v: &Value, what: &str, device: bool| {
        for k in ["wgkv_version", "git_commit", "model"] {
            assert!(v[k].is_string(), "{what}: no {k} in {v}");
        }
        assert_eq!(v["adapter"].is_string(), device, "{what}: device fields in {v}");
        assert_eq!(v["tuning"].as_str().is_some_and(|t| t.starts_with("matvec ")), device, "{what}: the kernel tuning in {v}");
    };
    let v = json(&wgkv(&["--model", m, "tokenize", "hello", "--json"]));
    stamped(&v, "tokenize", false);
    assert_eq!(v["model"], "tiny.gguf");
    let t = text.to_str().unwrap();
    let (out, _) = ok(&wgkv(&["--model", m, "eval", "ppl", "--file", t, "--ctx", "64", "--chunks", "2", "--json"]));
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    stamped(&v, "eval ppl", true);
    assert!(v["ppl"].as_f64().unwrap() > 1.0, "{v}");
    let (out, _) = ok(&wgkv(&["devices", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["git_commit"].is_string() && v["adapters"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    // Each adapter's kernel tuning, the lanes kernels on CPU adapters.
    for a in v["adapters"].as_array().unwrap() {
        let lanes = a["device_type"] == "Cpu";
        assert_eq!(a["tuning"]["attention"], if lanes { "lanes" } else { "shared" }, "{a}");
        assert_eq!(a["tuning"]["matmul"]["kernel"], if lanes { "matmul_lanes" } else { "matmul" }, "{a}");
    }
    let v = json(&wgkv(&["--model", m, "eval", "soak", "--turns", "3", "--every", "1", "-n", "4", "--ctx", "256", "--json"]));
    stamped(&v, "eval soak", true);
}

/// Under a storage whose cache is not saved (mustafar), `/save` keeps the
/// messages and says so, and `/load` prefills them on the next turn.
#[test]
fn a_conversation_under_mustafar_is_saved_without_its_cache() {
    let Some(model) = tiny_model("save-mustafar") else { return };
    let m = model.to_str().unwrap();
    let f = model.with_file_name("m.wgkv");
    let fs = f.to_str().unwrap();
    let args = ["--model", m, "chat", "--temp", "0", "-n", "6", "--ctx", "512", "--kv", "mustafar", "--quiet"];
    let (out, _) = ok(&wgkv_with_stdin(&args, Some(&format!("{}\n/save {fs}\n", long_message(300)))));
    assert!(out.contains("without the cache") && out.contains("/load prefills the messages again"), "{out}");
    let (_, cache) = saved_parts(&f);
    assert_eq!(cache, 0);
    let (out, _) = ok(&wgkv_with_stdin(&args, Some(&format!("/load {fs}\nAnd then?\n/stats\n"))));
    assert!(out.contains("(loaded 2 messages (the next turn prefills them)"), "{out}");
    let prefill: usize = out.lines().find_map(|l| l.strip_prefix("last answer: prefill ")?.split(' ').next()?.parse().ok()).unwrap();
    assert!(prefill > 300, "the history was not prefilled again: {out}");
}
