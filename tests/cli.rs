//! The `wgkv` binary as a user runs it: bad input gives one clear error line
//! and a non-zero exit; with the real model, `generate --json`, `tokenize`
//! and a piped `chat` session work end to end.

mod common;

use common::cli::{assert_one_line_error, wgkv_with_stdin, wgkv_with_stdin_bytes};

#[test]
fn missing_model_file_is_one_line() {
    let o = wgkv_with_stdin(&["--model", "/nonexistent/model.gguf", "generate", "-p", "hi"], None);
    assert_one_line_error(&o, "model not found");
}

#[test]
fn a_file_that_is_not_a_model_is_one_line() {
    let dir = std::env::temp_dir().join(format!("wgkv-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("notes.gguf");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let o = wgkv_with_stdin(&["--model", p.to_str().unwrap(), "tokenize", "hi"], None);
    assert_one_line_error(&o, "notes.gguf");
}

#[test]
fn unknown_kv_part_is_one_line() {
    let o = wgkv_with_stdin(&["generate", "-p", "hi", "--kv", "lru:budget=5"], None);
    assert_one_line_error(&o, "unknown --kv part 'lru'");
}

#[test]
fn unusable_kv_options_are_one_line() {
    let Some(model) = common::real_model() else { return };
    let m = model.to_str().unwrap();
    let o = wgkv_with_stdin(&["--model", m, "generate", "-p", "hi", "--kv", "quest:budget=8"], None);
    assert_one_line_error(&o, "below one page");
    let o = wgkv_with_stdin(&["--model", m, "generate", "-p", "hi", "--kv", "quest:group=pairs"], None);
    assert_one_line_error(&o, "group=pairs");
}

#[test]
fn unknown_backend_is_one_line() {
    let o = wgkv_with_stdin(&["--backend", "glide", "devices"], None);
    assert_one_line_error(&o, "unknown backend 'glide'");
}

#[test]
fn bad_sampling_flag_is_one_line() {
    let o = wgkv_with_stdin(&["generate", "-p", "hi", "--top-p", "1.5"], None);
    assert_one_line_error(&o, "--top-p");
}

#[test]
fn bad_serve_flags_are_one_line() {
    assert_one_line_error(&wgkv_with_stdin(&["serve", "--parallel", "0"], None), "--parallel");
    assert_one_line_error(&wgkv_with_stdin(&["serve", "--kv-memory", "lots"], None), "--kv-memory");
}

#[test]
fn generate_json_and_tokenize_on_the_real_model() {
    let Some(model) = common::real_model() else { return };
    let m = model.to_str().unwrap();
    let o = wgkv_with_stdin(&["--model", m, "generate", "-p", "The capital of France is", "-n", "6", "--temp", "0", "--json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    for key in ["text", "tokens", "prompt_tokens", "prefill_tok_s", "decode_tok_s", "kv_bytes"] {
        assert!(v.get(key).is_some(), "missing '{key}' in {v}");
    }
    assert_eq!(v["prompt_tokens"], 5);
    // The exact model's greedy first token after this prompt is " Paris" (id 7042).
    assert_eq!(v["tokens"][0], 7042, "{v}");
    assert!(v["text"].as_str().unwrap().starts_with(" Paris"), "{v}");

    let o = wgkv_with_stdin(&["--model", m, "tokenize", "Hello world", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ids"], serde_json::json!([19556, 905]));

    let long = "word ".repeat(300);
    let o = wgkv_with_stdin(&["--model", m, "generate", "-p", &long, "--ctx", "64", "-n", "4"], None);
    assert_one_line_error(&o, "context full");
}

#[test]
fn piped_chat_answers_reuses_the_cache_and_exits_at_eof() {
    let Some(model) = common::real_model() else { return };
    let script = "What color is the sky on a clear day?\n/stats\nAnd at night?\n/stats\n/kv\n";
    let o = wgkv_with_stdin(&["--model", model.to_str().unwrap(), "chat", "--temp", "0", "-n", "24"], Some(script));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.to_lowercase().contains("blue"), "first answer should name the colour: {out}");
    // Prefill token counts: the second turn feeds only its new text, not the history.
    let prefills: Vec<usize> = out.lines().filter_map(|l| l.strip_prefix("last answer: prefill ")?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(prefills.len(), 2, "{out}");
    assert!(prefills[1] < prefills[0], "turn 2 re-read the history: {prefills:?}\n{out}");
    assert!(out.contains("kv full:"), "{out}");
}

#[test]
fn piped_chat_goes_on_past_the_context_under_streaming() {
    // A 96-token context, 64 slots of streaming: four turns asking for a
    // sentence each run past both; `full` would stop at the context's end.
    let Some(model) = common::real_model() else { return };
    let script =
        "Describe the sea in one sentence.\nDescribe a forest in one sentence.\nDescribe a city in one sentence.\nDescribe the sky in one sentence.\n/kv\n";
    let args = ["--model", model.to_str().unwrap(), "chat", "--temp", "0", "-n", "32", "--ctx", "96", "--kv", "streaming:budget=64"];
    let o = wgkv_with_stdin(&args, Some(script));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.contains("context is full"), "{out}");
    let line = out.lines().find(|l| l.starts_with("streaming: ")).unwrap_or_else(|| panic!("no /kv streaming line: {out}"));
    let nums: Vec<usize> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    // "streaming: 4 sinks + ... in 96 slots per layer; N tokens run, M evicted"
    let (run, evicted) = (nums[nums.len() - 2], nums[nums.len() - 1]);
    assert!(run > 96 && evicted > 0 && run - evicted <= 64, "{line}\n{out}");
}

#[test]
fn invalid_utf8_on_chat_stdin_is_one_line() {
    let Some(model) = common::real_model() else { return };
    let o = wgkv_with_stdin(&["--model", model.to_str().unwrap(), "chat", "-n", "4"], Some("Hi \u{fffd}"));
    assert!(o.status.success(), "valid text is answered: {}", String::from_utf8_lossy(&o.stderr));
    let o = wgkv_with_stdin_bytes(&["--model", model.to_str().unwrap(), "chat", "-n", "4"], b"Hi \xff\xfe there\n");
    assert_one_line_error(&o, "valid UTF-8");
}

#[test]
fn argument_errors_are_one_line() {
    let o = wgkv_with_stdin(&["generate"], None);
    assert_one_line_error(&o, "--prompt");
    let o = wgkv_with_stdin(&["generate", "-p", "hi", "--temp", "warm"], None);
    assert_one_line_error(&o, "'warm'");
    let o = wgkv_with_stdin(&["--max-binding", "lots", "devices"], None);
    assert_one_line_error(&o, "not a byte count");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgkv")).arg("generate").arg("-p").arg(bad).output().unwrap();
        assert_one_line_error(&o, "UTF-8");
    }
}

#[test]
fn empty_prompts_are_one_line() {
    let Some(model) = common::real_model() else { return };
    let m = model.to_str().unwrap();
    let o = wgkv_with_stdin(&["--model", m, "generate", "-p", ""], None);
    assert_one_line_error(&o, "empty");
    // In chat an empty line is skipped, and an empty stdin is a session with no turns.
    let o = wgkv_with_stdin(&["--model", m, "chat", "-n", "4"], Some("\n\n   \n"));
    assert!(o.status.success() && o.stdout.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A reader that closes its end of stdout after `keep` bytes.
fn run_with_closed_stdout(args: &[&str], stdin: &str, keep: usize) -> std::process::ExitStatus {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgkv"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; keep];
    let _ = out.read_exact(&mut buf);
    drop(out);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.lines().all(|l| !l.contains("Broken pipe")), "{args:?}: {err}");
    status
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let Some(model) = common::real_model() else { return };
    let m = model.to_str().unwrap();
    // Far more output than a pipe buffers, so the writes hit the closed pipe.
    let text = "word ".repeat(20000);
    let status = run_with_closed_stdout(&["--model", m, "tokenize", &text], "", 16);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(status.success() || status.signal() == Some(libc::SIGPIPE), "{status:?}");
    }
    let status = run_with_closed_stdout(&["--model", m, "chat", "-n", "48", "--temp", "0"], "Tell me a story.\nAnother one.\n", 4);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(status.success() || status.signal() == Some(libc::SIGPIPE), "{status:?}");
    }
}

/// Ctrl-C while a long prompt is prefilled stops that turn (between prefill
/// chunks on a slow adapter, or in the answer on a fast one) and the chat
/// goes on to its next line; the process exits 0 at the end of stdin.
#[cfg(unix)]
#[test]
fn ctrl_c_during_a_long_prompt_stops_the_turn_and_chat_goes_on() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let Some(model) = common::real_model() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgkv"))
        .args(["--model", model.to_str().unwrap(), "chat", "--temp", "0", "-n", "8", "--ctx", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // A first short turn: once it is answered the model is loaded and the
    // Ctrl-C handler installed.
    writeln!(input, "Say hi.").unwrap();
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    writeln!(input, "{}", "Count the words in this text: word ".repeat(300)).unwrap();
    input.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    writeln!(input, "Say bye.").unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{:?}: {err}", o.status);
    assert!(err.contains("(stopped"), "the long turn was not stopped: {err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    eprintln!("ctrl-c: {}", err.lines().find(|l| l.contains("(stopped")).unwrap());
}

#[test]
fn a_model_too_big_for_the_stated_gpu_memory_is_refused_before_loading() {
    let Some(model) = common::real_model() else { return };
    let m = model.to_str().unwrap();
    let o = wgkv_with_stdin(&["--model", m, "--gpu-memory", "64M", "generate", "-p", "hi", "-n", "1"], None);
    assert_one_line_error(&o, "even a 256-token context does not fit");
    // 200 MiB: the weights fit, an 8192-token KV cache does not; the context
    // the message suggests then loads.
    let o = wgkv_with_stdin(&["--model", m, "--gpu-memory", "200M", "generate", "-p", "hi", "-n", "1", "--ctx", "8192"], None);
    assert_one_line_error(&o, "lower --ctx to at most ");
    let err = String::from_utf8_lossy(&o.stderr);
    let fit: usize = err.split("at most ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!((1024..8192).contains(&fit), "{err}");
    let ctx = fit.to_string();
    let o = wgkv_with_stdin(&["--model", m, "--gpu-memory", "200M", "generate", "-p", "hi", "-n", "1", "--ctx", &ctx], None);
    assert!(o.status.success(), "--ctx {ctx}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn ppl_plot_draws_the_budget_axis_and_refuses_bad_files_in_one_line() {
    let dir = std::env::temp_dir().join(format!("wgkv-cli-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = |kv: &str, kl: f64| format!(r#"{{"kv":"{kv}","ctx":2048,"ppl":21.0,"ppl_full":20.2,"kl_mean":{kl},"top1_rate":0.9,"model":"m","adapter":"a"}}"#);
    let (a, b, svg) = (dir.join("a.jsonl"), dir.join("b.jsonl"), dir.join("p.svg"));
    std::fs::write(&a, [rec("h2o:budget=5%", 0.4), rec("full", 0.0), rec("snapkv:budget=5%", 0.06)].join("\n")).unwrap();
    std::fs::write(&b, [rec("h2o:budget=25%", 0.06), rec("vatp:budget=10%,alloc=dynamic", 0.39)].join("\n")).unwrap();
    let (a, b, svg) = (a.to_str().unwrap(), b.to_str().unwrap(), svg.to_str().unwrap());
    let o = wgkv_with_stdin(&["eval", "ppl-plot", a, b, "--out", svg], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("{svg}: 4 points of 3 policies"));
    let text = std::fs::read_to_string(svg).unwrap();
    for name in ["h2o", "snapkv", "vatp:alloc=dynamic"] {
        assert_eq!(text.matches(&format!(r#"data-name="{name}""#)).count(), 3, "{name}: a series in each panel");
    }
    let o = wgkv_with_stdin(&["eval", "ppl-plot", a, b, "--out", svg, "--skip", "vatp:alloc=dynamic"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("{svg}: 3 points of 2 policies"));
    assert!(!std::fs::read_to_string(svg).unwrap().contains("vatp"));
    let o = wgkv_with_stdin(&["eval", "ppl-plot", a, b, "--out", svg, "--skip", "knorm"], None);
    assert_one_line_error(&o, "--skip knorm: no such policy");
    let o = wgkv_with_stdin(&["eval", "ppl-plot", "/nonexistent/x.jsonl", "--out", svg], None);
    assert_one_line_error(&o, "/nonexistent/x.jsonl");
    std::fs::write(dir.join("c.jsonl"), rec("full", 0.0)).unwrap();
    let o = wgkv_with_stdin(&["eval", "ppl-plot", dir.join("c.jsonl").to_str().unwrap(), "--out", svg], None);
    assert_one_line_error(&o, "no record with a budget= policy");
    let _ = std::fs::remove_dir_all(&dir);
}
