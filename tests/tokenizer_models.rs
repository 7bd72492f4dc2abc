//! The tokenizers of the other named models, built from their GGUF metadata
//! alone, against llama.cpp's ids for them (tests/reference/qwen2.5-coder-0.5b
//! and tests/reference/gemma-3-270m): Qwen 2.5 Coder's byte-level BPE and
//! Gemma 3's SentencePiece (no space prefix, BOS first), and the Qwen file's
//! own ChatML template. The files come from `WGKV_QWEN_MODEL` and
//! `WGKV_GEMMA_MODEL` (`wgkv fetch qwen2.5-coder-0.5b` / `gemma-3-270m`).

mod common;

use common::{named_model, reference_path};
use wgkv::gguf::Gguf;
use wgkv::template::{ChatTemplate, Message};
use wgkv::tokenizer::{StreamDecoder, Tokenizer};

fn json(rel: &str) -> serde_json::Value {
    let path = reference_path(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn qwen() -> Option<Tokenizer> {
    let p = named_model("WGKV_QWEN_MODEL", "path of qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")?;
    Some(Tokenizer::from_gguf(&Gguf::open_metadata(&p).unwrap()).unwrap())
}

fn gemma() -> Option<Tokenizer> {
    let p = named_model("WGKV_GEMMA_MODEL", "path of gemma-3-270m-q4_k_m.gguf")?;
    Some(Tokenizer::from_gguf(&Gguf::open_metadata(&p).unwrap()).unwrap())
}

/// Every string of `dir/tokenize.json` and every compare prompt: llama.cpp's
/// ids exactly (special tokens parsed, BOS where the model adds one), and the
/// ids decode back to the text (BOS shows as its text), also when streamed.
fn matches_llama_cpp(tok: &Tokenizer, dir: &str) -> usize {
    let bos = if tok.add_bos() { tok.bos_text().to_string() } else { String::new() };
    let mut checked = 0;
    let mut cases: Vec<(String, Vec<u32>)> =
        json(&format!("{dir}/tokenize.json")).as_array().unwrap().iter().map(|e| (e["text"].as_str().unwrap().to_string(), ids_of(&e["ids"]))).collect();
    for i in 1..=3 {
        let c = json(&format!("{dir}/compare_{i}.json"));
        cases.push((c["prompt"].as_str().unwrap().to_string(), ids_of(&c["prompt_ids"])));
        // llama.cpp's continuation decodes to its text.
        let generated = ids_of(&c["generated_ids"]);
        assert_eq!(tok.decode(&generated), c["generated_text"].as_str().unwrap(), "{dir}/compare_{i}.json generated_text");
    }
    for (text, want) in cases {
        assert_eq!(tok.encode_prompt(&text).unwrap(), want, "{dir}: ids of {text:?}");
        assert_eq!(tok.decode(&want), format!("{bos}{text}"), "{dir}: decode of {text:?}");
        let mut dec = StreamDecoder::new();
        let streamed: String = want.iter().map(|&id| dec.push(tok, id)).collect::<String>() + &dec.finish();
        assert_eq!(streamed, format!("{bos}{text}"));
        checked += 1;
    }
    checked
}

#[test]
fn qwen_ids_match_llama_cpp() {
    let Some(tok) = qwen() else { return };
    assert!(matches_llama_cpp(&tok, "qwen2.5-coder-0.5b") >= 16);
    assert_eq!(tok.vocab_size(), 151936);
    assert!(!tok.add_bos());
    assert_eq!(tok.eos_text(), "<|im_end|>");
    // <|endoftext|>, <|im_end|> and the fill-in-the-middle separators end generation, and (as
    // llama.cpp has it, by its text) the byte-level token "</s>".
    let eog: Vec<&str> = tok.eog_ids().iter().map(|&id| tok.token_text(id).unwrap()).collect();
    assert_eq!(eog, ["</s>", "<|endoftext|>", "<|im_end|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]);
}

#[test]
fn gemma_ids_match_llama_cpp() {
    let Some(tok) = gemma() else { return };
    assert!(matches_llama_cpp(&tok, "gemma-3-270m") >= 15);
    assert_eq!(tok.vocab_size(), 262144);
    // SentencePiece with BOS and no space prefix.
    assert!(tok.add_bos() && !tok.add_space_prefix());
    assert_eq!((tok.bos_text(), tok.eos_text()), ("<bos>", "<eos>"));
    assert_eq!(tok.encode("Hello", false).unwrap(), tok.encode("Hello", true).unwrap());
    // Control tokens only when parsing specials; bytes with no token of their own go through <0xXX>.
    assert_eq!(tok.encode("<start_of_turn>", true).unwrap(), vec![105]);
    assert!(tok.encode("<start_of_turn>", false).unwrap().len() > 1);
    let eog: Vec<&str> = tok.eog_ids().iter().map(|&id| tok.token_text(id).unwrap()).collect();
    assert_eq!(eog, ["<eos>", "<end_of_turn>", "</s>"]);
    let text = "\u{1F9FF}\u{10FFFF} \u{0}x";
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(&ids), text);
}

/// Qwen's own template (ChatML with a default system message), rendered and
/// tokenized with its markers as single ids.
#[test]
fn qwen_chatml_template() {
    let Some(tok) = qwen() else { return };
    let t = ChatTemplate::new(tok.chat_template().expect("the Qwen GGUF has a template"), tok.bos_text(), tok.eos_text()).unwrap();
    let got = t.render(&[Message::new("user", "Write a loop.")], true).unwrap();
    let want = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
                <|im_start|>user\nWrite a loop.<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(got, want);
    let msgs = [Message::new("system", "Be terse."), Message::new("user", "Hi"), Message::new("assistant", "Hello.")];
    assert_eq!(
        t.render(&msgs, false).unwrap(),
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
    );
    let ids = tok.encode_prompt(&got).unwrap();
    let start = tok.token_id("<|im_start|>").unwrap();
    assert_eq!(ids[0], start);
    assert_eq!(ids.iter().filter(|&&i| i == start).count(), 3);
    assert_eq!(tok.decode(&ids), got);
}
