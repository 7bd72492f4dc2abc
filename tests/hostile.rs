//! The hostile-file corpus in `tests/hostile/`: model files that are
//! truncated at every section, lie about counts, lengths, offsets and
//! sizes, overlap, hold NaN/Inf weights, huge dimensions or non-UTF-8
//! strings. Each one, given to `wgkv generate`, must end with one clear
//! error line and a non-zero exit (no panic, no hang).
//!
//! The files are made here, from the tiny model with a tokenizer, by
//! editing a valid file at a named place. The test checks that the
//! committed files are exactly what this code makes (so each file's
//! defect is written down below) and that no file in the folder goes
//! untested. `WGKV_WRITE_CORPUS=1 cargo test --test hostile` rewrites them.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::cli::{assert_one_line_error, wgkv};
use std::path::{Path, PathBuf};
use wgkv::gguf::Gguf;

/// One corpus entry: a GGUF file, or an HF folder of named files.
enum Item {
    File(Vec<u8>),
    Folder(Vec<(&'static str, Vec<u8>)>),
}

struct Case {
    name: &'static str,
    item: Item,
    /// What the error line must say.
    needle: &'static str,
    /// The file parses; the error comes when the weights reach the GPU.
    gpu: bool,
}

fn gguf(name: &'static str, bytes: Vec<u8>, needle: &'static str) -> Case {
    Case { name, item: Item::File(bytes), needle, gpu: false }
}

// ---------------------------------------------------------------- editing a valid GGUF

fn base() -> Vec<u8> {
    tiny::tiny_writer_with_vocab().to_bytes().unwrap()
}

/// Byte position just past the (u64 length, bytes) string `s` in the header.
fn after_str(b: &[u8], s: &str) -> usize {
    let mut pat = (s.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(s.as_bytes());
    let i = b.windows(pat.len()).position(|w| w == pat).unwrap_or_else(|| panic!("'{s}' not in the file"));
    i + pat.len()
}

fn put_u32(b: &mut [u8], at: usize, x: u32) {
    b[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, x: u64) {
    b[at..at + 8].copy_from_slice(&x.to_le_bytes());
}

/// Byte position of metadata `key`'s value (past its u32 type).
fn value_of(b: &[u8], key: &str) -> usize {
    after_str(b, key) + 4
}

/// Positions in tensor `name`'s info: (n_dims, first dim, type, offset).
fn info(b: &[u8], name: &str) -> (usize, usize, usize, usize) {
    let at = after_str(b, name);
    let nd = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    (at, at + 4, at + 4 + 8 * nd, at + 8 + 8 * nd)
}

fn edited(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = base();
    f(&mut b);
    b
}

/// The absolute data range of tensor `name` in a valid file.
fn data_of(b: &[u8], name: &str) -> std::ops::Range<usize> {
    let g = Gguf::from_bytes("base", b.to_vec()).unwrap();
    let t = g.tensor(name).unwrap();
    t.offset as usize..(t.offset + t.bytes) as usize
}

fn gguf_cases() -> Vec<Case> {
    let b = base();
    let b0 = b.clone();
    let q_info = info(&b, "blk.0.attn_q.weight");
    let data_start = data_of(&b, "token_embd.weight").start;
    let mut v = vec![
        gguf("empty.gguf", Vec::new(), "not a GGUF file"),
        gguf("bad-magic.gguf", edited(|b| b[..4].copy_from_slice(b"GGML")), "not a GGUF file"),
        gguf("bad-version.gguf", edited(|b| put_u32(b, 4, 99)), "version 99"),
        // Truncated at every section: header, metadata, tensor infos, data.
        gguf("truncated-header.gguf", b[..14].to_vec(), "truncated"),
        gguf("truncated-metadata.gguf", b[..after_str(&b, "tokenizer.ggml.tokens") + 700].to_vec(), "truncated"),
        gguf("truncated-tensor-infos.gguf", b[..q_info.0 + 6].to_vec(), "truncated"),
        gguf("truncated-data.gguf", b[..b.len() - 1000].to_vec(), "extends beyond the end"),
        gguf("header-only.gguf", b[..data_start].to_vec(), "extends beyond the end"),
        // Lying counts and lengths.
        gguf("lying-tensor-count.gguf", edited(|b| put_u64(b, 8, 1 << 40)), "tensor count"),
        gguf("lying-metadata-count.gguf", edited(|b| put_u64(b, 16, 1 << 40)), "metadata count"),
        gguf("lying-string-length.gguf", edited(|b| put_u64(b, value_of(&b0, "general.architecture"), 1 << 60)), "string"),
        gguf(
            "lying-array-length.gguf",
            edited(|b| put_u64(b, value_of(&b0, "tokenizer.ggml.tokens") + 4, 1 << 50)), // past the element type
            "array",
        ),
        // Lying offsets, overlapping tensors.
        gguf("offset-past-end.gguf", edited(|b| put_u64(b, info(&b0, "output.weight").3, 1 << 40)), "extends beyond the end"),
        gguf("misaligned-offset.gguf", edited(|b| put_u64(b, q_info.3, 1)), "align"),
        gguf(
            "overlapping-tensors.gguf",
            edited(|b| {
                let first = u64::from_le_bytes(b[info(&b0, "blk.0.attn_k.weight").3..][..8].try_into().unwrap());
                put_u64(b, q_info.3, first)
            }),
            "overlap",
        ),
        gguf(
            "duplicate-tensor-name.gguf",
            edited(|b| {
                let at = after_str(&b0, "blk.0.attn_k.weight") - "attn_k.weight".len();
                b[at..at + 6].copy_from_slice(b"attn_q")
            }),
            "blk.0.attn_q.weight",
        ),
        // Wrong dtype and sizes.
        gguf("unknown-dtype.gguf", edited(|b| put_u32(b, q_info.2, 99)), "id 99"),
        gguf("wrong-dtype-size.gguf", edited(|b| put_u32(b, q_info.2, 0)), "blk.0.attn_q.weight"),
        gguf("partial-block.gguf", edited(|b| put_u64(b, q_info.1, 63)), "blk.0.attn_q.weight"),
        gguf("wrong-norm-shape.gguf", edited(|b| put_u64(b, info(&b0, "blk.1.ffn_norm.weight").1, 32)), "blk.1.ffn_norm.weight"),
        // Huge dimensions.
        gguf(
            "huge-dims.gguf",
            edited(|b| {
                put_u64(b, q_info.1, 1 << 40);
                put_u64(b, q_info.1 + 8, 1 << 40)
            }),
            "blk.0.attn_q.weight",
        ),
        gguf("huge-embedding-length.gguf", edited(|b| put_u32(b, value_of(&b0, "llama.embedding_length"), 1 << 31)), "embedding"),
        gguf("huge-block-count.gguf", edited(|b| put_u32(b, value_of(&b0, "llama.block_count"), 4_000_000_000)), "block"),
        gguf("huge-vocab.gguf", edited(|b| put_u32(b, value_of(&b0, "llama.vocab_size"), u32::MAX)), "vocab"),
        // Non-UTF-8 strings: a key, a token, the chat template.
        gguf("non-utf8-key.gguf", edited(|b| b[after_str(&b0, "general.name") - 2] = 0xff), "UTF-8"),
        gguf("non-utf8-token.gguf", edited(|b| b[after_str(&b0, "<unused299>") - 3] = 0xfe), "UTF-8"),
        gguf(
            "non-utf8-template.gguf",
            edited(|b| {
                let at = value_of(&b0, "tokenizer.chat_template") + 8 + 3; // past the string's length
                b[at] = 0xc3; // a lead byte followed by an ASCII byte
            }),
            "UTF-8",
        ),
    ];
    // NaN and Inf weights: the file parses, the upload refuses it.
    let mut nan = b.clone();
    let q = data_of(&b, "blk.0.attn_q.weight");
    nan[q.start + 34 * 5..][..2].copy_from_slice(&0x7e00u16.to_le_bytes()); // block 5's f16 scale: NaN
    let mut inf = b.clone();
    let norm = data_of(&b, "blk.1.ffn_norm.weight");
    inf[norm.start + 4 * 7..][..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    v.push(Case { name: "nan-weight.gguf", item: Item::File(nan), needle: "NaN or infinite", gpu: true });
    v.push(Case { name: "inf-norm.gguf", item: Item::File(inf), needle: "NaN or infinite", gpu: true });
    v
}

// ---------------------------------------------------------------- HF folders

/// A safetensors file from its JSON header text and `data_len` data bytes.
fn st(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend((0..data_len).map(|i| i as u8));
    v
}

fn hf(name: &'static str, config: String, model: Vec<u8>, needle: &'static str) -> Case {
    Case { name, item: Item::Folder(vec![("config.json", config.into_bytes()), ("model.safetensors", model)]), needle, gpu: false }
}

fn hf_cases() -> Vec<Case> {
    let cfg = tiny::hf_config_json(false);
    let one = r#"{"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}"#;
    let mut huge_len = st(one, 256);
    huge_len[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut bad_utf8 = st(r#"{"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},"x":"__"}"#, 256);
    let at = bad_utf8.len() - 256 - 4;
    bad_utf8[at] = 0xff;
    vec![
        hf("st-truncated-header", cfg.clone(), st(one, 256)[..40].to_vec(), "truncated"),
        hf("st-huge-header-length", cfg.clone(), huge_len, "header"),
        hf("st-not-json", cfg.clone(), st("{{{{ not json", 0), "JSON"),
        hf("st-non-utf8-header", cfg.clone(), bad_utf8, "header is not a JSON object"),
        hf(
            "st-offsets-past-end",
            cfg.clone(),
            st(r#"{"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,1099511627776]}}"#, 256),
            "model.norm.weight",
        ),
        hf(
            "st-overlapping",
            cfg.clone(),
            st(r#"{"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},"b":{"dtype":"F32","shape":[64],"data_offsets":[128,384]}}"#, 384),
            "overlap",
        ),
        hf("st-unknown-dtype", cfg.clone(), st(r#"{"a":{"dtype":"Q9","shape":[64],"data_offsets":[0,256]}}"#, 256), "Q9"),
        hf("st-size-mismatch", cfg.clone(), st(r#"{"a":{"dtype":"F32","shape":[64,64],"data_offsets":[0,256]}}"#, 256), "a"),
        hf("st-huge-shape", cfg.clone(), st(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,256]}}"#, 256), "a"),
        hf("hf-config-not-json", "{\"hidden_size\": ".into(), st(one, 256), "config.json"),
        hf("hf-config-huge-dims", cfg.replace("\"hidden_size\":64", "\"hidden_size\":1099511627776"), st(one, 256), "embedding size"),
    ]
}

// ---------------------------------------------------------------- the test

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn write(case: &Case, path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
    match &case.item {
        Item::File(b) => std::fs::write(path, b).unwrap(),
        Item::Folder(files) => {
            std::fs::create_dir_all(path).unwrap();
            for (n, b) in files {
                std::fs::write(path.join(n), b).unwrap();
            }
        }
    }
}

/// The committed entry equals what the code above makes.
fn check_committed(case: &Case, path: &Path) {
    let same = |p: &Path, want: &[u8]| std::fs::read(p).is_ok_and(|got| got == want);
    let ok = match &case.item {
        Item::File(b) => same(path, b),
        Item::Folder(files) => {
            let n = std::fs::read_dir(path).map_or(0, |d| d.count());
            n == files.len() && files.iter().all(|(n, b)| same(&path.join(n), b))
        }
    };
    assert!(ok, "{}: the committed corpus entry differs from its recipe (WGKV_WRITE_CORPUS=1 rewrites it)", path.display());
}

#[test]
fn every_hostile_file_is_one_error_line() {
    let dir = corpus_dir();
    let cases: Vec<Case> = gguf_cases().into_iter().chain(hf_cases()).collect();
    if std::env::var_os("WGKV_WRITE_CORPUS").is_some_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for c in &cases {
            write(c, &dir.join(c.name));
        }
    }
    // No entry goes untested.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut named: Vec<String> = cases.iter().map(|c| c.name.to_string()).collect();
    on_disk.sort();
    named.sort();
    assert_eq!(on_disk, named, "tests/hostile/ and the recipes in tests/hostile.rs differ");
    let gpu = common::contexts().into_iter().next().is_some();
    let mut failed = Vec::new();
    for c in &cases {
        let path = dir.join(c.name);
        check_committed(c, &path);
        if c.gpu && !gpu {
            eprintln!("SKIP {}: needs a GPU adapter", c.name);
            continue;
        }
        let o = wgkv(&["--model", path.to_str().unwrap(), "generate", "-p", "hi", "-n", "1"]);
        eprintln!("{}: {}", c.name, String::from_utf8_lossy(&o.stderr).trim());
        // Check every entry, then report every failure.
        if let Err(e) = std::panic::catch_unwind(|| assert_one_line_error(&o, c.needle)) {
            failed.push(format!("{}: {}", c.name, e.downcast_ref::<String>().cloned().unwrap_or_default()));
        }
    }
    assert!(failed.is_empty(), "{} of {} corpus entries failed:\n{}", failed.len(), cases.len(), failed.join("\n"));
}
