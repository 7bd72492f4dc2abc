//! The bodies of the fuzz targets, one function per target, and their seeds.
//!
//! `fuzz_targets/*.rs` call these; `tests/fuzz_regressions.rs` includes this
//! file by path and replays the seeds and every input a run found through the
//! same code, so CI covers them without cargo-fuzz or a nightly compiler.
//!
//! Each function returns what the parser it fuzzes returned (an `Err` is a
//! fine outcome) and asserts what must hold whatever the input: no panic, every
//! error one line, sizes that agree with the data, a GGUF file re-written by
//! `GgufWriter` parsing to the same thing, a spec printing to text that parses
//! back to it, streaming decode agreeing with decode.

use std::path::PathBuf;
use wgkv::config::ModelConfig;
use wgkv::gguf::{Gguf, GgufWriter, Value};
use wgkv::kv::{Budget, KvCache, KvSpec};
use wgkv::safetensors::SafeTensors;
use wgkv::template::{ChatTemplate, Message};
use wgkv::tokenizer::{GgufVocab, StreamDecoder, TOKEN_NORMAL, Tokenizer};

/// `r`, after checking that its error is one line.
fn one_line<T>(r: wgkv::Result<T>) -> wgkv::Result<T> {
    if let Err(e) = &r {
        let s = e.to_string();
        assert!(!s.contains(['\n', '\r']), "error is not one line: {s:?}");
    }
    r
}

/// `data` cut at NUL bytes.
fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SAMPLE: &str = "Hello, world! It's 2024: naïve café, 12345 apples.\n\n  <|im_start|>user\ntabs\there 日本語 🙂<|im_end|>";

/// `gguf`: the file's header and metadata, every getter on every key, every
/// tensor's data, the re-written file, and the model config, tokenizer and
/// chat template built from it.
pub fn gguf(data: &[u8]) -> wgkv::Result<()> {
    let g = one_line(Gguf::from_bytes("fuzz", data.to_vec()))?;
    for (key, _) in &g.metadata {
        let _ = one_line(g.get_str(key));
        let _ = one_line(g.get_u64(key));
        let _ = one_line(g.get_f32(key));
        let _ = one_line(g.get_bool(key));
        let _ = one_line(g.get_str_array(key));
        let _ = one_line(g.get_i64_array(key));
        let _ = one_line(g.get_f32_array(key));
    }
    for t in &g.tensors {
        assert_eq!(g.tensor_data(t).len() as u64, t.bytes, "tensor '{}'", t.name);
        assert_eq!(g.tensor(&t.name), Some(t));
    }

    // What the reader accepts, the writer writes back, and the reader reads the same.
    let mut w = GgufWriter::new();
    w.alignment(g.alignment);
    for (k, v) in &g.metadata {
        w.add(k, v.clone());
    }
    for t in &g.tensors {
        w.add_tensor(&t.name, &t.dims, t.wtype, g.tensor_data(t).to_vec());
    }
    let bytes = w.to_bytes().expect("a parsed file re-writes");
    let g2 = Gguf::from_bytes("rewritten", bytes).expect("a re-written file parses");
    assert_eq!(g2.metadata.len(), g.metadata.len());
    for ((k, v), (k2, v2)) in g.metadata.iter().zip(&g2.metadata) {
        assert_eq!(k, k2);
        assert!(same_value(v, v2), "metadata '{k}': {v:?} re-read as {v2:?}");
    }
    assert_eq!(g2.alignment, g.alignment);
    for (t, t2) in g.tensors.iter().zip(&g2.tensors) {
        assert_eq!((&t.name, &t.dims, t.wtype, t.bytes), (&t2.name, &t2.dims, t2.wtype, t2.bytes));
        assert_eq!(g.tensor_data(t), g2.tensor_data(t2));
    }

    if let Ok(cfg) = one_line(ModelConfig::from_gguf(&g)) {
        assert!(cfg.q_dim() > 0 && cfg.kv_dim() > 0);
    }
    if let Ok(tok) = one_line(Tokenizer::from_gguf(&g)) {
        exercise_tokenizer(&tok, SAMPLE, &[0, 1, 2, u32::MAX], false);
    }
    Ok(())
}

/// Equal, NaN payloads included.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b)),
        _ => a == b,
    }
}

/// `safetensors`: the header and every tensor's data.
pub fn safetensors(data: &[u8]) -> wgkv::Result<()> {
    let st = one_line(SafeTensors::from_bytes("fuzz", data.to_vec()))?;
    for t in &st.tensors {
        assert_eq!(st.tensor_data(t).len() as u64, t.bytes, "tensor '{}'", t.name);
        assert_eq!(st.tensor(&t.name), Some(t));
        assert_eq!(t.dims().len(), t.shape.len());
    }
    assert!(st.tensors.windows(2).all(|w| w[0].offset <= w[1].offset));
    Ok(())
}

/// Pre-tokenizer names the `tokenizer` target picks from (the last is unknown).
const PRES: [&str; 13] = ["smollm", "gpt-2", "", "default", "llama-bpe", "qwen2", "starcoder", "refact", "deepseek-llm", "falcon", "qwen35", "gemma4", "nope"];

/// The GPT-2 byte alphabet, one token per byte.
pub fn byte_alphabet() -> Vec<String> {
    let mut extra = 0;
    (0..=255u32)
        .map(|b| {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let c = if printable {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect()
}

/// `tokenizer`: a vocabulary from the input, then encode and decode.
///
/// Layout: `flags`, `pre` (index into `PRES`), then bos, eos, unk, pad
/// (0xFF: none, else the id), then NUL-separated fields: the text, tokens
/// (newline-separated, before the byte alphabet), merges (newline-separated), merge pairs (byte pairs
/// of token indices: "a b", with "ab" added to the tokens), token types (one
/// byte each), ids to decode (2 bytes each). Flags: bit 0 the tokenizer.json
/// route instead (see `hf_tokenizer`), bit 1 the 256-token byte alphabet
/// first, bit 2 model "llama", bits 3-4 add_bos (none, false, true), bit 5
/// token types given, bit 6 keep duplicate tokens, bit 7 token types not
/// padded to the vocabulary.
pub fn tokenizer(data: &[u8]) -> wgkv::Result<()> {
    let Some((&flags, rest)) = data.split_first() else { return Ok(()) };
    if flags & 1 != 0 {
        return hf_tokenizer(rest);
    }
    let mut head = [0xFFu8; 5];
    let n = rest.len().min(5);
    head[..n].copy_from_slice(&rest[..n]);
    let f = fields(&rest[n..]);
    let field = |i: usize| f.get(i).copied().unwrap_or(&[]);
    let id = |b: u8| (b != 0xFF).then_some(b as u32);

    let keep_dups = flags & 64 != 0;
    let mut tokens: Vec<String> = Vec::new();
    let alphabet = if flags & 2 != 0 { byte_alphabet() } else { Vec::new() };
    for t in text(field(1)).split('\n').map(String::from).filter(|t| keep_dups || !t.is_empty()).chain(alphabet) {
        if keep_dups || !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    let mut merges: Vec<String> = text(field(2)).split('\n').filter(|m| !m.is_empty()).map(String::from).collect();
    let pairs = if tokens.is_empty() { &[][..] } else { field(3) };
    for p in pairs.chunks_exact(2) {
        let (a, b) = (tokens[p[0] as usize % tokens.len()].clone(), tokens[p[1] as usize % tokens.len()].clone());
        let joined = format!("{a}{b}");
        if !tokens.contains(&joined) {
            tokens.push(joined);
        }
        merges.push(format!("{a} {b}"));
    }
    let mut token_types = Vec::new();
    if flags & 32 != 0 {
        token_types = field(4).iter().map(|&b| [1, 2, 3, 4, 5, 6, 0, -1][b as usize % 8]).collect();
        if flags & 128 == 0 {
            token_types.resize(tokens.len(), TOKEN_NORMAL);
        }
    }
    let all_normal = token_types.iter().all(|&t| t == TOKEN_NORMAL);
    let ids: Vec<u32> = field(5).chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).map(|i| if i == 0xFFFF { u32::MAX } else { i as u32 }).collect();
    let v = GgufVocab {
        model: if flags & 4 != 0 { "llama" } else { "gpt2" }.into(),
        pre: PRES[head[0] as usize % PRES.len()].into(),
        tokens,
        merges,
        token_types,
        bos: id(head[1]),
        eos: id(head[2]),
        unk: id(head[3]),
        pad: id(head[4]),
        add_bos: [None, Some(false), Some(true), None][(flags >> 3) as usize & 3],
        chat_template: None,
        ..Default::default()
    };
    let pre = v.pre.clone();
    let tok = one_line(Tokenizer::from_gguf_vocab(v))?;
    // With every byte a token and no special ones, byte-level BPE loses nothing
    // (SentencePiece adds a space and has no <0xXX> tokens here; "gemma4" has none either).
    let lossless = flags & 2 != 0 && flags & 4 == 0 && all_normal && pre != "gemma4";
    exercise_tokenizer(&tok, &text(field(0)), &ids, lossless);
    Ok(())
}

fn scratch_dir() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let dir = std::env::temp_dir().join(format!("wgkv-fuzz-{}-{thread}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The tokenizer.json route: NUL-separated text, tokenizer.json,
/// tokenizer_config.json and chat_template.jinja (the last two are left out
/// when their field is missing), written to a scratch folder.
pub fn hf_tokenizer(data: &[u8]) -> wgkv::Result<()> {
    let f = fields(data);
    let dir = scratch_dir();
    for (i, name) in [(1, "tokenizer.json"), (2, "tokenizer_config.json"), (3, "chat_template.jinja")] {
        let path = dir.join(name);
        match f.get(i) {
            Some(b) => std::fs::write(&path, b).expect("write scratch file"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let tok = Tokenizer::from_hf_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let tok = one_line(tok)?;
    exercise_tokenizer(&tok, &text(f[0]), &[0, 1, 2, 255, u32::MAX], false);
    if let Some(src) = tok.chat_template() {
        let msgs = [Message::new("system", "Be brief."), Message::new("user", SAMPLE)];
        if let Ok(t) = one_line(ChatTemplate::new(src, tok.bos_text(), tok.eos_text())) {
            let _ = one_line(t.render(&msgs, true));
        }
    }
    Ok(())
}

/// Encode `text` every way, decode the ids and `extra`, and stream them.
fn exercise_tokenizer(tok: &Tokenizer, text: &str, extra: &[u32], lossless: bool) {
    let n = tok.vocab_size();
    let mut all = Vec::new();
    for parse_special in [false, true] {
        if let Ok(ids) = one_line(tok.encode(text, parse_special)) {
            assert!(ids.iter().all(|&i| (i as usize) < n), "an id of {ids:?} is outside the vocabulary ({n})");
            if lossless && !parse_special {
                assert_eq!(tok.decode(&ids), text, "ids {ids:?}");
            }
            all.extend(ids);
        }
    }
    if let Ok(ids) = one_line(tok.encode_prompt(text))
        && tok.add_bos()
    {
        assert_eq!(ids.first().copied(), tok.bos());
    }
    all.extend_from_slice(extra);
    let whole = tok.decode(&all);
    let mut stream = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &all {
        streamed.push_str(&stream.push(tok, id));
        let _ = (tok.token_bytes(id), tok.id_to_piece(id), tok.token_text(id), tok.is_special(id));
    }
    streamed.push_str(&stream.finish());
    assert_eq!(streamed, whole, "streamed decode of {all:?}");
    for id in tok.eog_ids() {
        assert!((id as usize) < n);
    }
    let _ = (tok.bos_text(), tok.eos_text(), tok.chat_template());
}

/// `template`: a flags byte (bit 0: add_generation_prompt), then
/// NUL-separated source, bos, eos, and role / content pairs.
pub fn template(data: &[u8]) -> wgkv::Result<String> {
    let Some((&flags, rest)) = data.split_first() else { return Ok(String::new()) };
    let f: Vec<String> = fields(rest).into_iter().map(text).collect();
    let get = |i: usize| f.get(i).map_or("", String::as_str);
    let t = one_line(ChatTemplate::new(get(0), get(1), get(2)))?;
    let msgs: Vec<Message> = f.get(3..).unwrap_or(&[]).chunks(2).map(|c| Message::new(c[0].as_str(), c.get(1).map_or("", String::as_str))).collect();
    let gen_prompt = flags & 1 != 0;
    let out = one_line(t.render(&msgs, gen_prompt));
    if let Some((_, before)) = msgs.split_last() {
        let _ = one_line(t.render_suffix(before, &msgs, gen_prompt));
    }
    out
}

/// `kv_spec`: the `--kv` grammar, then every consumer of a parsed spec at a
/// few context lengths.
pub fn kv_spec(data: &[u8]) -> wgkv::Result<()> {
    let Ok(s) = std::str::from_utf8(data) else { return Ok(()) };
    let spec = one_line(KvSpec::parse(s))?;
    let printed = spec.to_string();
    let again = KvSpec::parse(&printed).unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, spec, "{s:?} prints as {printed:?}");
    let _ = spec.is_full();
    for ctx in [1, 2, 100, 2048, 1 << 20, usize::MAX] {
        for p in &spec.parts {
            if let Ok(Some(b)) = one_line(p.budget()) {
                let n = b.tokens(ctx);
                assert!(n >= 1);
                if let Budget::Percent(_) = b {
                    assert!(n <= ctx.max(1));
                }
            }
        }
        let _ = one_line(KvCache::streaming_of(&spec, ctx));
        let _ = one_line(KvCache::scored_of(&spec));
        let _ = one_line(KvCache::mustafar_of(&spec, ctx));
        let _ = one_line(KvCache::slots(&spec, ctx));
    }
    Ok(())
}

const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const METHODS: &str = "{% macro turn(role, text) %}[{{ role.upper() }}] {{ text.strip().replace('  ', ' ') }}{% endmacro %}{% set ns = namespace(sys='') %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = m.content %}{% elif m.content.startswith('/') %}{{ raise_exception('commands are not messages') }}{% else %}{{ turn(m.role, m.content) }}{% for w in m.content.split(' ', 2) %}<{{ w | length }}>{% endfor %}{% for k, v in m.items() %}{{ k }}={{ v | length }};{% endfor %}{% endif %}{% endfor %}{{ ns.sys.lower() }}{{ eos_token if not add_generation_prompt else '' }}";

/// A small valid GGUF: a llama config, a byte-level vocabulary with a few
/// merges and control tokens, a chat template, and one tensor of each type.
pub fn seed_gguf() -> Vec<u8> {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend(byte_alphabet());
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![3; 3];
    types.resize(tokens.len(), TOKEN_NORMAL);
    let strs = |v: &[String]| Value::Array(v.iter().map(|s| Value::Str(s.clone())).collect());
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::Str("llama".into()))
        .add("llama.embedding_length", Value::U32(64))
        .add("llama.feed_forward_length", Value::U32(96))
        .add("llama.block_count", Value::U32(2))
        .add("llama.attention.head_count", Value::U32(4))
        .add("llama.attention.head_count_kv", Value::U32(2))
        .add("llama.context_length", Value::U64(256))
        .add("llama.rope.freq_base", Value::F32(10000.0))
        .add("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .add("tokenizer.ggml.model", Value::Str("gpt2".into()))
        .add("tokenizer.ggml.pre", Value::Str("smollm".into()))
        .add("tokenizer.ggml.tokens", strs(&tokens))
        .add("tokenizer.ggml.merges", strs(&merges.map(String::from)))
        .add("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect()))
        .add("tokenizer.ggml.bos_token_id", Value::U32(1))
        .add("tokenizer.ggml.eos_token_id", Value::U32(2))
        .add("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .add("tokenizer.chat_template", Value::Str(CHATML.into()))
        .add("general.nested", Value::Array(vec![Value::Array(vec![Value::I8(-1), Value::I8(2)]), Value::Array(vec![])]))
        .add("general.misc", Value::Array(vec![Value::F64(0.5), Value::F64(-2.0)]));
    w.add_tensor("output_norm.weight", &[64], wgkv::quant::WType::F32, vec![0; 256])
        .add_tensor("blk.0.attn_q.weight", &[64, 2], wgkv::quant::WType::Q8_0, vec![0; 2 * 2 * 34])
        .add_tensor("blk.0.ffn_up.weight", &[256, 1], wgkv::quant::WType::Q4_K, vec![0; 144])
        .add_tensor("blk.0.attn_k.weight", &[32, 1], wgkv::quant::WType::BF16, vec![0; 64]);
    w.to_bytes().expect("seed gguf")
}

/// A small safetensors file: metadata and three tensors (one of them empty).
pub fn seed_safetensors() -> Vec<u8> {
    let mut w = wgkv::safetensors::SafeTensorsWriter::new();
    w.meta("format", "pt")
        .add("model.norm.weight", wgkv::quant::WType::F32, &[4], vec![0; 16])
        .add("model.embed_tokens.weight", wgkv::quant::WType::BF16, &[3, 2], vec![1; 12])
        .add("empty", wgkv::quant::WType::F16, &[0, 5], vec![]);
    w.to_bytes().expect("seed safetensors")
}

fn join(flags: u8, head: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(head);
    out.extend_from_slice(&fields.join(&0u8));
    out
}

/// A tokenizer.json with a byte-level BPE model (the vocabulary is the byte
/// alphabet and a few merges) and two special added tokens.
fn seed_tokenizer_json(byte_level: bool) -> String {
    let mut vocab = serde_json::Map::new();
    let added = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let (pieces, merges, pre, decoder): (Vec<String>, Vec<&str>, serde_json::Value, serde_json::Value) = if byte_level {
        let mut p = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
        p.extend(byte_alphabet());
        p.extend(["he", "ll", "hell", "hello"].map(String::from));
        let bl = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        (p, vec!["h e", "l l", "he ll", "hell o"], bl.clone(), bl)
    } else {
        // SentencePiece style: a metaspace, byte fallback tokens.
        let mut p = vec!["<s>".to_string(), "</s>".to_string(), "<unk>".to_string()];
        p.extend((0..=255).map(|b| format!("<0x{b:02X}>")));
        p.extend(["▁", "h", "i", "▁h", "▁hi"].map(String::from));
        let pre = serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false});
        let dec = serde_json::json!({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]});
        (p, vec!["▁ h", "▁h i"], pre, dec)
    };
    for (i, p) in pieces.iter().enumerate() {
        vocab.insert(p.clone(), i.into());
    }
    let specials = if byte_level { vec![added(0, "<|im_start|>"), added(1, "<|im_end|>")] } else { vec![added(0, "<s>"), added(1, "</s>"), added(2, "<unk>")] };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": specials,
        "normalizer": null, "pre_tokenizer": pre, "post_processor": null, "decoder": decoder,
        "model": {"type": "BPE", "dropout": null, "unk_token": if byte_level { serde_json::Value::Null } else { "<unk>".into() },
                  "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": !byte_level,
                  "byte_fallback": !byte_level, "vocab": vocab, "merges": merges}
    })
    .to_string()
}

/// Seeds per target: (target, file name, input). Each parses (`Ok`).
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let text = SAMPLE.as_bytes();
    let config = br#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": true}"#;
    let mut out = vec![
        ("gguf", "tiny", seed_gguf()),
        ("safetensors", "tiny", seed_safetensors()),
        // Byte alphabet, smollm, two merges from pairs ("h"+"e", "l"+"l").
        ("tokenizer", "bytes_smollm", join(2, &[0, 0xFF, 0xFF, 0xFF, 0xFF], &[text, b"", b"", b"hell", b"", &[0, 0, 1, 0, 0xFF, 0xFF]])),
        // Two control tokens and a user-defined one before the alphabet, llama-bpe (adds BOS).
        ("tokenizer", "specials_llama3", join(2 | 32, &[4, 0, 1, 0xFF, 0xFF], &[b"<s>hi</s> <x>", b"<s>\n</s>\n<x>", b"", &[107, 104], &[2, 2, 3], b""])),
        ("tokenizer", "hf_byte_level", join(1, &[], &[text, seed_tokenizer_json(true).as_bytes(), config, CHATML.as_bytes()])),
        ("tokenizer", "hf_metaspace", join(1, &[], &[b"hi hi \xc3\xa9", seed_tokenizer_json(false).as_bytes()])),
        ("template", "chatml", join(1, &[], &[CHATML.as_bytes(), b"<s>", b"</s>", b"user", b"Hi", b"assistant", b"Hello!", b"user", b"Bye"])),
        ("template", "llama3", join(0, &[], &[LLAMA3.as_bytes(), b"<|begin_of_text|>", b"<|eot_id|>", b"system", b"  Be brief. ", b"user", b"Hi"])),
        ("template", "methods", join(1, &[], &[METHODS.as_bytes(), b"", b"</s>", b"system", b"SYS", b"user", b"  one  two three four "])),
    ];
    for (name, spec) in [
        ("full", "full"),
        ("design", "vatp:budget=512,alloc=dynamic+mustafar:k=0.5,v=0.5+quest:budget=128"),
        ("streaming", "streaming:budget=10%,sinks=4"),
        ("streaming_mustafar", "streaming:budget=1024+mustafar:window=64"),
        ("snapkv", "snapkv:budget=256,window=8,kernel=7,pool=max"),
        ("quest", "quest:budget=64,page=16,dense_layers=2,group=head"),
    ] {
        out.push(("kv_spec", name, spec.as_bytes().to_vec()));
    }
    out
}
