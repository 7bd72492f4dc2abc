//! Chat templates: real templates from llama.cpp's `models/templates`
//! (through `WGKV_LLAMACPP_MODELS`, as for tests/tokenizer_vectors.rs)
//! rendered to their models' documented prompt formats, and the `chat` /
//! `generate --chat` commands on the tiny model with a template file
//! (`--chat-template FILE`) and without any template (plain completion).

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::cli::{assert_one_line_error, wgkv_with_stdin};
use std::path::{Path, PathBuf};
use wgkv::gguf::Gguf;
use wgkv::template::{ChatTemplate, Message};
use wgkv::tokenizer::Tokenizer;

/// llama.cpp's `models/templates` folder, or None (a visible skip) when not required.
fn templates_dir() -> Option<PathBuf> {
    match std::env::var_os("WGKV_LLAMACPP_MODELS").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p).join("templates")),
        None => {
            if std::env::var_os("WGKV_REQUIRE_MODEL").is_some_and(|v| v != "0") {
                panic!("WGKV_REQUIRE_MODEL is set but WGKV_LLAMACPP_MODELS (llama.cpp's models/ folder) is not");
            }
            eprintln!("SKIP: WGKV_LLAMACPP_MODELS unset (llama.cpp's models/ folder, with templates/)");
            None
        }
    }
}

fn template(dir: &Path, name: &str, bos: &str, eos: &str) -> ChatTemplate {
    let path = dir.join(format!("{name}.jinja"));
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ChatTemplate::new(&src, bos, eos).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A system message, two user turns and an answer between them.
fn conversation() -> Vec<Message> {
    vec![Message::new("system", "Be brief."), Message::new("user", "Hi"), Message::new("assistant", "Hello!"), Message::new("user", "Bye")]
}

#[test]
fn llama_cpp_templates_render_their_formats() {
    let Some(dir) = templates_dir() else { return };
    let msgs = conversation();

    let qwen = template(&dir, "Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>");
    assert_eq!(
        qwen.render(&msgs, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n\
         <|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without a system message Qwen supplies its own.
    assert_eq!(
        qwen.render(&msgs[1..2], true).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );

    // Llama 3.1: the system turn carries the knowledge cutoff and the template's default date.
    let llama = template(&dir, "meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>");
    assert_eq!(
        llama.render(&msgs, true).unwrap(),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\
         Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );

    let phi = template(&dir, "microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>");
    assert_eq!(
        phi.render(&msgs, true).unwrap(),
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"
    );

    // Mistral Nemo puts the system message into the last user turn.
    let nemo = template(&dir, "mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>");
    assert_eq!(nemo.render(&msgs, true).unwrap(), "<s>[INST]Hi[/INST]Hello!</s>[INST]Be brief.\n\nBye[/INST]");

    // Gemma 2 has user and model turns, and refuses a system message in one line.
    let gemma = template(&dir, "google-gemma-2-2b-it", "<bos>", "<eos>");
    assert_eq!(
        gemma.render(&msgs[1..], true).unwrap(),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    let e = gemma.render(&msgs, true).unwrap_err().to_string();
    assert!(e.contains("System role not supported") && !e.contains('\n'), "{e}");

    // A turn added keeps the earlier rendering as a prefix: the chat keeps its cache.
    for t in [&qwen, &llama] {
        let suffix = t.render_suffix(&msgs[..3], &msgs, true).unwrap();
        assert!(suffix.contains("Bye") && !suffix.contains("Hello!"), "{suffix}");
    }
    // Phi 3.5 ends a conversation without a generation prompt with eos: the prompt is re-fed.
    let e = phi.render_suffix(&msgs[..3], &msgs, true).unwrap_err().to_string();
    assert!(e.contains("re-fed"), "{e}");
}

// ---------------------------------------------------------------- the commands

/// A tiny model file with `template` (none: a base model), or None (a visible skip) without an adapter.
fn tiny_model(tag: &str, template: Option<&str>) -> Option<PathBuf> {
    common::contexts().into_iter().next()?;
    let p = tiny::scratch(tag).join("tiny.gguf");
    tiny::tiny_writer_with_template(template).write(&p).unwrap();
    Some(p)
}

/// The prefill counts `/stats` reports, in order.
fn prefills(out: &str) -> Vec<usize> {
    out.lines().filter_map(|l| l.strip_prefix("last answer: prefill ")?.split(' ').next()?.parse().ok()).collect()
}

fn ok(o: &std::process::Output) -> (String, String) {
    let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    assert!(o.status.success(), "{err}");
    (out, err)
}

const BRACKETS: &str = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}";

#[test]
fn chat_without_a_template_continues_each_line_as_text() {
    let Some(model) = tiny_model("no-template", None) else { return };
    let m = model.to_str().unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    assert!(tok.chat_template().is_none());
    let script = "the key is\n/stats\nhe pass\n/stats\n";
    let (out, err) = ok(&wgkv_with_stdin(&["--model", m, "chat", "--temp", "0", "-n", "3", "--quiet"], Some(script)));
    let notice: Vec<&str> = err.lines().filter(|l| l.contains("chat template")).collect();
    assert_eq!(notice, ["wgkv: tiny.gguf has no chat template: each line is continued as plain text (give a template with --chat-template FILE)"]);
    // Each line is the whole prompt, as plain text: no markup around it.
    let want: Vec<usize> = ["the key is", "he pass"].iter().map(|l| tok.encode_prompt(l).unwrap().len()).collect();
    assert_eq!(prefills(&out), want, "{out}");

    // A system message has nowhere to go: refused in one line, or said so in the session.
    assert_one_line_error(&wgkv_with_stdin(&["--model", m, "chat", "--system", "Be brief."], None), "no chat template, so --system has nowhere to go");
    let (out, _) = ok(&wgkv_with_stdin(&["--model", m, "chat", "-n", "1"], Some("/system Be brief.\n")));
    assert!(out.contains("(no chat template: a system message has nowhere to go)"), "{out}");
    // generate --chat needs a template.
    assert_one_line_error(&wgkv_with_stdin(&["--model", m, "generate", "-p", "hi", "--chat"], None), "--chat-template FILE");
}

#[test]
fn chat_template_file_replaces_the_models() {
    let Some(model) = tiny_model("template-file", None) else { return };
    let m = model.to_str().unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let file = model.with_file_name("brackets.jinja");
    std::fs::write(&file, BRACKETS).unwrap();
    let f = file.to_str().unwrap();
    let rendered = |msgs: &[Message]| ChatTemplate::new(BRACKETS, "", "").unwrap().render(msgs, true).unwrap();

    // chat: no notice, and the first prompt is the file's rendering.
    let (out, err) = ok(&wgkv_with_stdin(&["--model", m, "chat", "--chat-template", f, "--temp", "0", "-n", "2", "--quiet"], Some("the key\n/stats\n")));
    assert!(!err.contains("no chat template"), "{err}");
    let want = tok.encode_prompt(&rendered(&[Message::new("user", "the key")])).unwrap().len();
    assert_eq!(prefills(&out), [want], "{out}");

    // generate --chat: the same rendering, counted in the JSON.
    let o = wgkv_with_stdin(&["--model", m, "generate", "-p", "the key", "--chat", "--chat-template", f, "-n", "1", "--json"], None);
    let (out, _) = ok(&o);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["prompt_tokens"], want, "{out}");

    // The file also wins over a model's own template (the tiny ChatML one renders longer).
    let with = tiny_model("template-file-over", Some(tiny::CHATML)).unwrap();
    let o = wgkv_with_stdin(&["--model", with.to_str().unwrap(), "generate", "-p", "the key", "--chat", "--chat-template", f, "-n", "1", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&ok(&o).0).unwrap();
    assert_eq!(v["prompt_tokens"], want);

    // Bad files are one line naming the file.
    let bad = model.with_file_name("bad.jinja");
    std::fs::write(&bad, "{% for m in %}").unwrap();
    assert_one_line_error(
        &wgkv_with_stdin(&["--model", m, "chat", "--chat-template", bad.to_str().unwrap()], None),
        "bad.jinja: chat template does not compile",
    );
    assert_one_line_error(&wgkv_with_stdin(&["--model", m, "chat", "--chat-template", "/nonexistent/t.jinja"], None), "--chat-template /nonexistent/t.jinja");
    std::fs::write(&bad, b"\xff\xfe not text").unwrap();
    assert_one_line_error(&wgkv_with_stdin(&["--model", m, "chat", "--chat-template", bad.to_str().unwrap()], None), "bad.jinja");
    // Without --chat, generate would ignore it: refused.
    assert_one_line_error(&wgkv_with_stdin(&["--model", m, "generate", "-p", "x", "--chat-template", f], None), "--chat-template applies with --chat");
}
