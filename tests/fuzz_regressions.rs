//! The fuzz targets' code paths without cargo-fuzz: the seeds, the seed files
//! under fuzz/seeds/ and every input that crashed, hung or blew up a target
//! (tests/fuzz/<target>/) go through the same functions the targets call
//! (fuzz/src/lib.rs, included by path), which assert what must hold for any
//! input; then what each of those inputs gives now. See fuzz/README.md.

#[path = "../fuzz/src/lib.rs"]
mod entries;

use std::path::{Path, PathBuf};
use wgkv::gguf::{Gguf, GgufWriter, Value};
use wgkv::template::{ChatTemplate, Message};
use wgkv::tokenizer::{GgufVocab, Tokenizer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `data` through the target's function; `Ok` is whether the parser accepted it.
fn run(target: &str, data: &[u8]) -> Result<(), String> {
    let r = match target {
        "gguf" => entries::gguf(data),
        "safetensors" => entries::safetensors(data),
        "tokenizer" => entries::tokenizer(data),
        "template" => entries::template(data).map(drop),
        "kv_spec" => entries::kv_spec(data),
        other => panic!("no fuzz target '{other}'"),
    };
    r.map_err(|e| e.to_string())
}

/// Every file under `dir/<target>/`, as (target, path).
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let t = t.unwrap().path();
        for f in std::fs::read_dir(&t).unwrap() {
            out.push((t.file_name().unwrap().to_string_lossy().into_owned(), f.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn seeds_parse() {
    let seeds = entries::seeds();
    for t in ["gguf", "safetensors", "tokenizer", "template", "kv_spec"] {
        assert!(seeds.iter().any(|s| s.0 == t), "no seed for {t}");
    }
    for (target, name, data) in seeds {
        if let Err(e) = run(target, &data) {
            panic!("seed {target}/{name}: {e}");
        }
    }
    // The GGUF seed reaches the config and the tokenizer, not just the header.
    let g = wgkv::gguf::Gguf::from_bytes("seed", entries::seed_gguf()).unwrap();
    assert_eq!(wgkv::config::ModelConfig::from_gguf(&g).unwrap().head_dim, 16);
    let tok = wgkv::tokenizer::Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.encode("<|im_start|>hello world", true).unwrap().len(), 3);
}

/// fuzz/seeds/ holds `entries::seeds()`. To rewrite it after changing them:
/// `WGKV_WRITE_SEEDS=1 cargo test --test fuzz_regressions seed_files_are_current`.
#[test]
fn seed_files_are_current() {
    let write = std::env::var_os("WGKV_WRITE_SEEDS").is_some();
    for (target, name, data) in entries::seeds() {
        let dir = root().join("fuzz/seeds").join(target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), &data).unwrap();
        }
        let path = dir.join(name);
        let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (see WGKV_WRITE_SEEDS)", path.display()));
        assert!(file == data, "{} is stale (see WGKV_WRITE_SEEDS)", path.display());
    }
}

/// Every file under tests/fuzz/<target>/ and what it gives now: `None` Ok,
/// `Some(text)` an error containing it. Before the fix each one panicked,
/// ran past the 10 s timeout or asked for gigabytes.
const FOUND: &[(&str, &str, Option<&str>)] = &[
    // A getter's error quoted the key raw: a key with a newline made two lines.
    ("gguf", "getter_error_quotes_key_newline", None),
    // The --kv error quoted an option name holding a carriage return.
    ("kv_spec", "option_key_carriage_return", Some("control character '\\r'")),
    // streaming:sinks=2^64-1: `sinks + 1` overflowed in Streaming::new.
    ("kv_spec", "streaming_sinks_overflow", None),
    // 99999 x 99999 empty loop iterations: ran for minutes.
    ("template", "nested_range_loops", Some("ran out of fuel")),
    // s.replace('a', s) twice: a 16 MB string, then a 4 GB allocation.
    ("template", "replace_squared", Some("ran out of fuel")),
    // 200 MB strings built in a 99999-step loop.
    ("template", "concat_100mb_in_loop", Some("ran out of fuel")),
    // A tokenizer.json id past the token count: encode gave an id decode dropped.
    ("tokenizer", "hf_vocab_id_past_count", None),
];

#[test]
fn found_inputs_are_fixed() {
    let found = files(&root().join("tests/fuzz"));
    for (target, path) in &found {
        let name = path.file_name().unwrap().to_string_lossy();
        let Some((_, _, want)) = FOUND.iter().find(|f| f.0 == target && f.1 == name) else {
            panic!("{}: not listed in FOUND", path.display());
        };
        let got = run(target, &std::fs::read(path).unwrap());
        match (want, &got) {
            (None, Ok(())) => {}
            (Some(needle), Err(e)) if e.contains(needle) => {}
            _ => panic!("{target}/{name}: want {want:?}, got {got:?}"),
        }
    }
    assert_eq!(found.len(), FOUND.len(), "an entry of FOUND has no file");
}

/// Every file under fuzz/seeds/ goes through its target (and parses).
#[test]
fn seed_files_parse() {
    for (target, path) in files(&root().join("fuzz/seeds")) {
        if let Err(e) = run(&target, &std::fs::read(&path).unwrap()) {
            panic!("{}: {e}", path.display());
        }
    }
}

// ---------------------------------------------------------------- the fixes, one by one

#[test]
fn gguf_getter_errors_escape_the_key() {
    let key = "a\nb\r";
    let mut w = GgufWriter::new();
    w.add(key, Value::Array(vec![Value::Str("x".into())]));
    let g = Gguf::from_bytes("t", w.to_bytes().unwrap()).unwrap();
    let errors = [
        g.get_str(key).err(),
        g.get_u64(key).err(),
        g.get_f32(key).err(),
        g.get_bool(key).err(),
        g.get_i64_array(key).err(),
        g.get_f32_array(key).err(),
        g.get_str("missing\nkey").err(),
    ];
    for e in errors {
        let e = e.expect("an error").to_string();
        assert!(!e.contains(['\n', '\r']) && (e.contains("a\\nb\\r") || e.contains("missing\\nkey")), "{e}");
    }
}

#[test]
fn gguf_vocab_names_are_escaped() {
    let vocab =
        |model: &str, pre: &str| GgufVocab { model: model.into(), pre: pre.into(), tokens: vec!["a".into()], merges: vec!["a a".into()], ..Default::default() };
    for (v, needle) in [(vocab("x\ny", ""), "'x\\ny'"), (vocab("gpt2", "p\nq"), "'p\\nq'")] {
        let e = Tokenizer::from_gguf_vocab(v).err().unwrap().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{e}");
    }
}

/// The fuel grows with the conversation: a long chat still renders.
#[test]
fn template_fuel_allows_long_chats() {
    let chatml = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] | trim + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    let t = ChatTemplate::new(chatml, "", "").unwrap();
    let line = "word ".repeat(200);
    let msgs: Vec<Message> = (0..20_000).map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, line.as_str())).collect();
    let out = t.render(&msgs, true).unwrap();
    assert_eq!(out.matches("<|im_start|>").count(), msgs.len() + 1);
    // One huge message (16 MiB) too.
    let big = [Message::new("user", "x".repeat(16 << 20))];
    assert!(t.render(&big, true).unwrap().len() > 16 << 20);
    // The same work without messages to pay for it runs out.
    let e = ChatTemplate::new("{% for i in range(99999) %}{% for j in range(99) %}{% endfor %}{% endfor %}", "", "")
        .unwrap()
        .render(&[], true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ran out of fuel") && !e.contains('\n'), "{e}");
}

/// The Python methods charge for what they are about to build.
#[test]
fn template_methods_charge_before_allocating() {
    for src in [
        "{% set s = 'ab' * 3000 %}{% set t = s.replace('a', s) %}{{ t.replace('b', t) | length }}",
        "{% set s = 'ab' * 3000000 %}{% for i in range(99) %}{{ s.upper() | length }}{% endfor %}",
        "{% set s = ' ' * 2000000 %}{{ s.strip(s) | length }}",
        "{% set s = 'a,' * 2000000 %}{% for i in range(99) %}{{ s.split(',') | length }}{% endfor %}",
    ] {
        let e = ChatTemplate::new(src, "", "").unwrap().render(&[], false).unwrap_err().to_string();
        assert!(e.contains("ran out of fuel"), "{src}: {e}");
    }
}

#[test]
fn streaming_sinks_at_the_integer_limit_are_refused() {
    let spec = wgkv::kv::KvSpec::parse(&format!("streaming:sinks={}", usize::MAX)).unwrap();
    let e = wgkv::kv::KvCache::streaming_of(&spec, 2048).unwrap_err().to_string();
    assert!(e.contains("leaves no room beside"), "{e}");
}

#[test]
fn hf_tokenizer_ids_beyond_the_cap_are_refused() {
    let seed = entries::seeds().into_iter().find(|s| s.1 == "hf_byte_level").unwrap().2;
    let fields: Vec<&[u8]> = seed[1..].split(|&b| b == 0).collect();
    let mut json: serde_json::Value = serde_json::from_slice(fields[1]).unwrap();
    json["model"]["vocab"]["hello"] = serde_json::json!(1u64 << 30);
    let input = [&[1u8][..], b"hello", &[0], json.to_string().as_bytes()].concat();
    let e = run("tokenizer", &input).unwrap_err();
    assert!(e.contains("token id 1073741824 is beyond the largest vocabulary supported"), "{e}");
}
