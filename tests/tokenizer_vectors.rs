//! llama.cpp's tokenizer test vectors: for every vocabulary-only GGUF in
//! llama.cpp's `models/` folder that has `.inp` / `.out` files, every input
//! must give exactly llama.cpp's ids (tokenized as its test-tokenizer-0 does:
//! no BOS, special tokens not parsed) and decode back to the input; the
//! vocabularies wgkv does not support must be refused with one line naming
//! their model.
//!
//! The vocabularies are not in this repository: `WGKV_LLAMACPP_MODELS` names
//! the folder (`.ci/run` fetches llama.cpp's sources and sets it). Unset, the
//! tests print a skip, unless `WGKV_REQUIRE_MODEL=1`, which makes that a failure.

use std::path::PathBuf;
use wgkv::gguf::Gguf;
use wgkv::tokenizer::Tokenizer;

/// llama.cpp's `models/` folder, or None (a visible skip) when not required.
fn models_dir() -> Option<PathBuf> {
    match std::env::var_os("WGKV_LLAMACPP_MODELS").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.join("ggml-vocab-gpt-2.gguf").is_file(), "WGKV_LLAMACPP_MODELS={} holds no ggml-vocab-*.gguf files", p.display());
            Some(p)
        }
        None => {
            if std::env::var_os("WGKV_REQUIRE_MODEL").is_some_and(|v| v != "0") {
                panic!("WGKV_REQUIRE_MODEL is set but WGKV_LLAMACPP_MODELS (llama.cpp's models/ folder) is not");
            }
            eprintln!("SKIP: WGKV_LLAMACPP_MODELS unset (llama.cpp's models/ folder with the ggml-vocab-*.gguf test vocabularies)");
            None
        }
    }
}

/// The `(input, ids)` pairs of a vocabulary, parsed as llama.cpp's
/// tests/test-tokenizer-0.cpp does: inputs separated by a marker line, one
/// line of space-separated ids per input.
fn vectors(dir: &std::path::Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let read = |ext: &str| {
        let p = dir.join(format!("ggml-vocab-{name}.gguf.{ext}"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let (inp, out) = (read("inp"), read("out"));
    let mut inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    // The file ends with the marker: the piece after it is not an input.
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: inputs and outputs differ in number");
    assert!(inputs.len() >= 40, "{name}: only {} vectors", inputs.len());
    inputs.into_iter().map(String::from).zip(outputs).collect()
}

fn tokenizer(dir: &std::path::Path, name: &str) -> Result<Tokenizer, String> {
    let g = Gguf::open(&dir.join(format!("ggml-vocab-{name}.gguf"))).map_err(|e| e.to_string())?;
    Tokenizer::from_gguf(&g).map_err(|e| e.to_string())
}

/// Every vector of `name`: ids exact, and the ids decode back to the input.
fn check(name: &str) {
    let Some(dir) = models_dir() else { return };
    let tok = tokenizer(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut failures = Vec::new();
    let cases = vectors(&dir, name);
    for (text, want) in &cases {
        let got = tok.encode(text, false).unwrap();
        if &got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n    got {got:?}"));
            continue;
        }
        let prefix = if tok.add_space_prefix() && !text.is_empty() { " " } else { "" };
        assert_eq!(tok.decode(&got), format!("{prefix}{text}"), "{name}: decode of {text:?}");
    }
    assert!(failures.is_empty(), "{name}: {} of {} vectors differ from llama.cpp's:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

macro_rules! vocab_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { check($name); })*
    };
}

vocab_tests! {
    llama_spm => "llama-spm",
    llama_bpe => "llama-bpe",
    phi_3 => "phi-3",
    qwen2 => "qwen2",
    qwen35 => "qwen35",
    gpt_2 => "gpt-2",
    starcoder => "starcoder",
    refact => "refact",
    command_r => "command-r",
    deepseek_llm => "deepseek-llm",
    deepseek_coder => "deepseek-coder",
    falcon => "falcon",
    mpt => "mpt",
    gemma_4 => "gemma-4",
}

/// The vocabularies with test vectors that wgkv does not tokenize, and the
/// vocabulary-only files without vectors: each is refused with one line
/// naming its model, or loads and tokenizes.
#[test]
fn unsupported_vocabularies_are_refused_by_name() {
    let Some(dir) = models_dir() else { return };
    for (name, model) in [("bert-bge", "'bert' (WordPiece)"), ("nomic-bert-moe", "'t5' (Unigram)")] {
        let e = tokenizer(&dir, name).err().unwrap_or_else(|| panic!("{name} must be refused"));
        assert!(e.contains(model) && e.contains("not supported") && !e.contains('\n'), "{name}: {e}");
    }
    // No vectors, but a model wgkv supports: they load and round-trip.
    for name in ["aquila", "baichuan", "gpt-neox"] {
        let tok = tokenizer(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = "Hello, world! 123 héllo";
        let ids = tok.encode(text, false).unwrap();
        let prefix = if tok.add_space_prefix() { " " } else { "" };
        assert_eq!(tok.decode(&ids), format!("{prefix}{text}"), "{name}");
    }
}

/// Every vocabulary file with vectors is covered above (a new one upstream fails here).
#[test]
fn every_vector_file_is_covered() {
    let Some(dir) = models_dir() else { return };
    let covered = [
        "llama-spm",
        "llama-bpe",
        "phi-3",
        "qwen2",
        "qwen35",
        "gpt-2",
        "starcoder",
        "refact",
        "command-r",
        "deepseek-llm",
        "deepseek-coder",
        "falcon",
        "mpt",
        "gemma-4",
        "bert-bge",
    ];
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("ggml-vocab-")?.strip_suffix(".gguf.inp").map(String::from))
        .collect();
    found.sort();
    for name in &found {
        assert!(covered.contains(&name.as_str()), "ggml-vocab-{name}.gguf has test vectors but no test here");
    }
    assert!(found.len() >= covered.len(), "expected the vectors of {covered:?}, found {found:?}");
}
