//! Model file loading: GGUF and safetensors readers (round trips, every
//! malformed input gives one clear error line, never a panic or a huge
//! allocation), ModelConfig from both formats for every recipe, and the tiny
//! random model of every recipe loaded through both formats giving the same
//! config and tensors.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tiny::*;
use wgkv::config::{ModelConfig, RopeStyle};
use wgkv::gguf::{self, Gguf, GgufWriter, Value};
use wgkv::quant::{WType, dequantize, quantize};
use wgkv::safetensors::{SafeTensors, SafeTensorsWriter};
use wgkv::weights::Weights;

// ---------------------------------------------------------------- allocation watch

/// Tracks the largest single allocation made by the current thread, so a
/// parser that trusts a claimed count (`Vec::with_capacity(2^40)`) is caught
/// even where the OS would lazily grant the memory.
struct Watch;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static WATCH: Watch = Watch;

/// Run `f`, failing if any single allocation in it exceeded `limit` bytes.
#[track_caller]
fn bounded<T>(what: &str, limit: usize, f: impl FnOnce() -> T) -> T {
    LARGEST.with(|m| m.set(0));
    let out = f();
    let largest = LARGEST.with(|m| m.get());
    assert!(largest <= limit, "{what}: allocated {largest} bytes at once (limit {limit})");
    out
}

#[test]
fn allocation_watch_catches_a_big_allocation() {
    let r = std::panic::catch_unwind(|| bounded("big", 1 << 20, || vec![1u8; 8 << 20].len()));
    assert!(r.is_err(), "an 8 MiB allocation passed a 1 MiB bound");
    assert_eq!(bounded("small", 1 << 20, || vec![1u8; 1000].len()), 1000);
}

/// A parser may allocate in proportion to the file (a u8 array becomes 32-byte
/// values), never in proportion to a count the file merely claims.
fn alloc_limit(file_len: usize) -> usize {
    (1 << 20) + 64 * file_len
}

/// Parse `bytes` as GGUF expecting an error; check it is one line naming the
/// file and contains every one of `want`; return it.
#[track_caller]
fn gguf_err(bytes: Vec<u8>, want: &[&str]) -> String {
    let limit = alloc_limit(bytes.len());
    let r = bounded("gguf parse", limit, || Gguf::from_bytes("bad.gguf", bytes));
    let msg = match r {
        Ok(g) => panic!("expected an error containing {want:?}, parsed {g:?}"),
        Err(e) => e.to_string(),
    };
    check_msg(&msg, "bad.gguf", want);
    msg
}

#[track_caller]
fn check_msg(msg: &str, path: &str, want: &[&str]) {
    assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
    assert!(msg.starts_with(path), "error does not name the file {path}: {msg}");
    for w in want {
        assert!(msg.contains(w), "error {msg:?} does not contain {w:?}");
    }
}

#[track_caller]
fn st_err(bytes: Vec<u8>, want: &[&str]) -> String {
    let limit = alloc_limit(bytes.len());
    let r = bounded("safetensors parse", limit, || SafeTensors::from_bytes("bad.safetensors", bytes));
    let msg = match r {
        Ok(s) => panic!("expected an error containing {want:?}, parsed {} tensors", s.tensors.len()),
        Err(e) => e.to_string(),
    };
    check_msg(&msg, "bad.safetensors", want);
    msg
}

// ---------------------------------------------------------------- raw GGUF bytes

/// Builds GGUF headers field by field, so tests can write what the writer never would.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kvs: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kvs);
        r
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A tensor info: name, dims, ggml type id, relative offset.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pad to 32 and append `n` data bytes.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let mut v = self.0.clone();
        v.resize(v.len().div_ceil(32) * 32, 0);
        v.extend((0..n).map(|i| i as u8));
        v
    }
}

/// A small valid GGUF with every metadata type, nesting, and a few tensors.
fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::Str("llama".into()))
        .add("t.u8", Value::U8(200))
        .add("t.i8", Value::I8(-100))
        .add("t.u16", Value::U16(60000))
        .add("t.i16", Value::I16(-30000))
        .add("t.u32", Value::U32(4_000_000_000))
        .add("t.i32", Value::I32(-2_000_000_000))
        .add("t.f32", Value::F32(1.5e-5))
        .add("t.bool", Value::Bool(true))
        .add("t.str", Value::Str("héllo\u{1F600}".into()))
        .add("t.u64", Value::U64(u64::MAX))
        .add("t.i64", Value::I64(i64::MIN))
        .add("t.f64", Value::F64(-2.5e300))
        .add("t.strs", Value::Array(vec![Value::Str("a".into()), Value::Str("".into()), Value::Str("ccc".into())]))
        .add("t.ints", Value::Array(vec![Value::I32(-1), Value::I32(7)]))
        .add("t.floats", Value::Array(vec![Value::F32(0.5), Value::F32(-2.0)]))
        .add("t.empty", Value::Array(vec![]))
        .add("t.nested", Value::Array(vec![Value::Array(vec![Value::U8(1), Value::U8(2)]), Value::Array(vec![Value::U8(3)])]));
    let vals: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 17.0).collect();
    w.add_tensor("a", &[32, 2], WType::Q8_0, quantize(WType::Q8_0, &vals)).add_tensor("b", &[3], WType::F32, quantize(WType::F32, &vals[..3])).add_tensor(
        "c",
        &[2, 2, 2, 2],
        WType::F16,
        quantize(WType::F16, &vals[..16]),
    );
    w
}

fn small_gguf() -> Vec<u8> {
    small_writer().to_bytes().unwrap()
}

// ---------------------------------------------------------------- GGUF: valid files

#[test]
fn gguf_round_trips_every_value_type_and_tensor_type() {
    let w = small_writer();
    let g = Gguf::from_bytes("small.gguf", w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 32);
    assert_eq!(g.get("t.u8"), Some(&Value::U8(200)));
    assert_eq!(g.get("t.i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(g.get("t.f64"), Some(&Value::F64(-2.5e300)));
    assert_eq!(g.get("t.str"), Some(&Value::Str("héllo\u{1F600}".into())));
    assert_eq!(g.get("t.nested"), Some(&Value::Array(vec![Value::Array(vec![Value::U8(1), Value::U8(2)]), Value::Array(vec![Value::U8(3)])])));
    assert_eq!(g.get("t.empty"), Some(&Value::Array(vec![])));
    assert_eq!(g.metadata.len(), 18);

    // Tensors of every type the engine reads, with shapes that suit each.
    let mut w = GgufWriter::new();
    let mut want = Vec::new();
    for (i, &wt) in WType::ALL.iter().enumerate() {
        let cols = wt.block_elems() as u64 * 2;
        let dims = [cols, 3];
        let vals: Vec<f32> = (0..cols * 3).map(|k| ((k * 7 + i as u64) % 23) as f32 / 11.0 - 1.0).collect();
        let bytes = quantize(wt, &vals);
        w.add_tensor(&format!("w.{}", wt.name()), &dims, wt, bytes.clone());
        want.push((format!("w.{}", wt.name()), dims.to_vec(), wt, bytes));
    }
    let g = Gguf::from_bytes("types.gguf", w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.tensors.len(), WType::ALL.len());
    for (name, dims, wt, bytes) in want {
        let t = g.tensor(&name).unwrap();
        assert_eq!((&t.dims, t.wtype, t.bytes), (&dims, wt, bytes.len() as u64), "{name}");
        assert_eq!(t.offset % 32, 0, "{name} offset {} not aligned", t.offset);
        assert_eq!(g.tensor_data(t), &bytes[..], "{name} data");
    }
    assert!(g.tensor("nope").is_none());
}

#[test]
fn gguf_typed_getters() {
    let g = Gguf::from_bytes("small.gguf", small_gguf()).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("t.u8").unwrap(), 200);
    assert_eq!(g.get_u64("t.u16").unwrap(), 60000);
    assert_eq!(g.get_u64("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(g.get_f32("t.f32").unwrap(), 1.5e-5);
    assert_eq!(g.get_f32("t.f64").unwrap(), f32::NEG_INFINITY); // -2.5e300 does not fit an f32
    assert!(g.get_bool("t.bool").unwrap());
    assert_eq!(g.get_str_array("t.strs").unwrap(), vec!["a", "", "ccc"]);
    assert_eq!(g.get_i64_array("t.ints").unwrap(), vec![-1, 7]);
    assert_eq!(g.get_f32_array("t.floats").unwrap(), vec![0.5, -2.0]);
    assert!(g.get_str_array("t.empty").unwrap().is_empty());

    let e = |r: wgkv::Result<_>| -> String { r.map(|_: ()| ()).unwrap_err().to_string() };
    let m = e(g.get_str("llama.block_count").map(|_| ()));
    check_msg(&m, "small.gguf", &["missing metadata key 'llama.block_count'"]);
    let m = e(g.get_u64("t.i8").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.i8'", "negative", "-100"]);
    let m = e(g.get_u64("t.str").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.str'", "string", "expected an integer"]);
    let m = e(g.get_f32("t.u32").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.u32'", "u32", "expected a float"]);
    let m = e(g.get_str("t.u8").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.u8'", "expected a string"]);
    let m = e(g.get_str_array("t.ints").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.ints'", "i32", "strings"]);
    let m = e(g.get_i64_array("t.strs").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.strs'", "integers"]);
    let m = e(g.get_i64_array("t.u8").map(|_| ()));
    check_msg(&m, "small.gguf", &["'t.u8'", "expected an array"]);
}

#[test]
fn gguf_alignment_and_version_2() {
    let mut w = small_writer();
    w.alignment(64);
    let g = Gguf::from_bytes("a64.gguf", w.to_bytes().unwrap()).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.get_u64("general.alignment").unwrap(), 64);
    assert_eq!(g.data_offset % 64, 0);
    assert!(g.tensors.iter().all(|t| (t.offset - g.data_offset).is_multiple_of(64)));

    // v2 has the same layout as v3.
    let mut b = small_gguf();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(Gguf::from_bytes("v2.gguf", b).unwrap().version, 2);
}

#[test]
fn gguf_writer_refuses_inconsistent_input() {
    let mut w = GgufWriter::new();
    w.add_tensor("x", &[32, 2], WType::Q8_0, vec![0; 10]);
    assert!(w.to_bytes().unwrap_err().to_string().contains("needs 68"));
    let mut w = GgufWriter::new();
    w.add("mixed", Value::Array(vec![Value::U8(1), Value::I8(1)]));
    assert!(w.to_bytes().unwrap_err().to_string().contains("different types"));
}

// ---------------------------------------------------------------- GGUF: malformed files

const TRUNCATED: &str = "truncated";

#[test]
fn gguf_every_prefix_of_a_small_file_is_an_error() {
    let full = small_gguf();
    let g = Gguf::from_bytes("full", full.clone()).unwrap();
    let data_end = g.tensors.iter().map(|t| t.offset + t.bytes).max().unwrap() as usize;
    for len in 0..full.len() {
        let r = bounded("prefix", alloc_limit(len), || Gguf::from_bytes("bad.gguf", full[..len].to_vec()));
        if len >= data_end {
            // Only trailing padding is cut: still a complete file.
            r.unwrap();
            continue;
        }
        let msg = r.map(|_| ()).unwrap_err().to_string();
        check_msg(&msg, "bad.gguf", &[]);
        assert!(msg.contains(TRUNCATED) || msg.contains("beyond the end of the file"), "prefix {len}: {msg}");
    }
}

#[test]
fn gguf_sampled_prefixes_of_the_tiny_model_are_errors() {
    let dir = scratch("prefix");
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, 3, WType::Q8_0);
    let full = std::fs::read(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    let data = g.data_offset as usize;
    // The writer pads after the last tensor; cuts in that padding leave a complete file.
    let end = g.tensors.iter().map(|t| t.offset + t.bytes).max().unwrap() as usize;
    // Every cut inside the header, then a spread of cuts through the data.
    let mut cuts: Vec<usize> = (0..data + 64).collect();
    cuts.extend((1..200).map(|i| data + (end - data) * i / 200));
    cuts.push(end - 1);
    for len in cuts {
        let msg = gguf_err(full[..len].to_vec(), &[]);
        assert!(msg.contains(TRUNCATED) || msg.contains("beyond the end of the file"), "prefix {len}: {msg}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gguf_bad_magic_and_versions() {
    let mut b = small_gguf();
    b[..4].copy_from_slice(b"GGML");
    gguf_err(b, &["not a GGUF file"]);
    gguf_err(b"PK\x03\x04 a zip file".to_vec(), &["not a GGUF file"]);
    for (v, hint) in [(1, "version 1"), (4, "version 4"), (3 << 24, "big-endian")] {
        let mut b = small_gguf();
        b[4..8].copy_from_slice(&(v as u32).to_le_bytes());
        gguf_err(b, &["unsupported GGUF version", hint]);
    }
}

#[test]
fn gguf_absurd_counts() {
    gguf_err(Raw::header(3, 1 << 60, 0).data(0), &["tensor count 1152921504606846976 exceeds the limit"]);
    gguf_err(Raw::header(3, 0, 1 << 60).data(0), &["metadata count 1152921504606846976 exceeds the limit"]);
    gguf_err(Raw::header(3, u64::MAX, 0).data(0), &["tensor count", "exceeds the limit"]);
    gguf_err(Raw::header(3, gguf::MAX_TENSORS + 1, 0).data(0), &["exceeds the limit 65536"]);
    // Within the caps but more than the file could hold.
    gguf_err(Raw::header(3, 60000, 0).data(0), &[TRUNCATED, "tensor count 60000"]);
    gguf_err(Raw::header(3, 0, 60000).data(0), &[TRUNCATED, "metadata count 60000"]);
}

#[test]
fn gguf_absurd_strings_and_arrays() {
    // Key length 2^60.
    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 60);
    gguf_err(r.data(64), &["metadata key #0", "string length 1152921504606846976 exceeds the limit"]);
    // A string value longer than the file.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(1000).bytes(b"abc");
    gguf_err(r.0.clone(), &["metadata 'k'", TRUNCATED, "1000"]);
    // Array lengths: absurd, and within the cap but beyond the file, for a few element types.
    for ety in [0u32, 4, 8, 9, 12] {
        let mut r = Raw::header(3, 0, 1);
        r.str("arr").u32(9).u32(ety).u64(1 << 60);
        gguf_err(r.data(64), &["'arr'", "array length 1152921504606846976 exceeds the limit"]);
        let mut r = Raw::header(3, 0, 1);
        r.str("arr").u32(9).u32(ety).u64(gguf::MAX_ARRAY_LEN);
        gguf_err(r.data(64), &["'arr'", TRUNCATED, "16777216 array elements"]);
    }
    // Nested arrays past the depth limit, each level claiming one element.
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..gguf::MAX_NESTING + 1 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(1).bytes(&[1]);
    gguf_err(r.data(0), &["'deep'", "nested deeper than 4"]);
}

#[test]
fn gguf_bad_metadata_values() {
    let one = |ty: u32, payload: &[u8]| {
        let mut r = Raw::header(3, 0, 1);
        r.str("key").u32(ty).bytes(payload);
        r.data(0)
    };
    gguf_err(one(13, &[0; 8]), &["'key'", "unknown metadata value type 13"]);
    gguf_err(one(7, &[2]), &["'key'", "invalid bool byte 2"]);
    gguf_err(one(8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]), &["'key'", "not valid UTF-8"]);
    gguf_err(one(9, &[77, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), &["'key'", "unknown array element type 77"]);
    // A key with a newline is escaped: the error stays one line.
    let mut r = Raw::header(3, 0, 1);
    r.str("bad\nkey").u32(200);
    gguf_err(r.data(0), &["'bad\\nkey'", "unknown metadata value type 200"]);
    // Duplicate keys.
    let mut r = Raw::header(3, 0, 2);
    r.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    gguf_err(r.data(0), &["duplicate metadata 'k'"]);
    // Alignment that is not a power of two, or not an integer.
    for (ty, payload, want) in [
        (4u32, 0u32.to_le_bytes().to_vec(), "alignment 0"),
        (4, 48u32.to_le_bytes().to_vec(), "alignment 48"),
        (6, 32f32.to_le_bytes().to_vec(), "expected an integer"),
    ] {
        let mut r = Raw::header(3, 0, 1);
        r.str("general.alignment").u32(ty).bytes(&payload);
        gguf_err(r.data(0), &["general.alignment", want]);
    }
}

/// A one-tensor file: `dims`, type id, relative offset, `n` data bytes.
fn one_tensor(dims: &[u64], ty: u32, offset: u64, n: usize) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", dims, ty, offset);
    r.data(n)
}

#[test]
fn gguf_bad_tensor_infos() {
    // The reference shape: a valid file.
    Gguf::from_bytes("ok", one_tensor(&[32, 2], 8, 0, 68)).unwrap();
    gguf_err(one_tensor(&[1, 1, 1, 1, 1], 0, 0, 4), &["'w'", "5 dimensions"]);
    gguf_err(one_tensor(&[], 0, 0, 4), &["'w'", "0 dimensions"]);
    gguf_err(one_tensor(&[4, 0], 0, 0, 16), &["'w'", "zero dimension"]);
    gguf_err(one_tensor(&[32, 2], 9, 0, 68), &["'w'", "unsupported ggml type Q8_1 (id 9)"]);
    gguf_err(one_tensor(&[32, 2], 16, 0, 68), &["'w'", "unsupported ggml type IQ2_XXS (id 16)"]);
    gguf_err(one_tensor(&[32, 2], 99, 0, 68), &["'w'", "unsupported ggml type unknown (id 99)"]);
    gguf_err(one_tensor(&[1 << 40, 1 << 40], 0, 0, 4), &["'w'", "overflows"]);
    gguf_err(one_tensor(&[1 << 32, 1 << 32, 1 << 32], 1, 0, 4), &["'w'", "overflows"]);
    gguf_err(one_tensor(&[u64::MAX, 1], 0, 0, 4), &["'w'", "overflows"]);
    gguf_err(one_tensor(&[48, 2], 8, 0, 200), &["'w'", "rows of 48 elements are not a multiple of the Q8_0 block size 32"]);
    // Rows of partial blocks, for every block type (576: the model's width, not whole 256-blocks).
    for &wt in WType::ALL.iter().filter(|w| w.block_elems() > 1) {
        let cols = if wt.block_elems() == 32 { 48 } else { 576 };
        let want = format!("rows of {cols} elements are not a multiple of the {} block size {}", wt.name(), wt.block_elems());
        gguf_err(one_tensor(&[cols, 2], wt.ggml_id(), 0, 4096), &["'w'", &want]);
    }
    gguf_err(one_tensor(&[32, 4], 8, 0, 68), &["'w'", "136 bytes", "beyond the end of the file"]);
    gguf_err(one_tensor(&[32, 2], 8, 1 << 20, 68), &["'w'", "data offset 1048576", "beyond the end of the file"]);
    gguf_err(one_tensor(&[32, 2], 8, u64::MAX - 31, 68), &["'w'", "beyond the end of the file"]);
    gguf_err(one_tensor(&[32, 2], 8, 16, 100), &["'w'", "data offset 16 is not aligned to 32"]);
    // A tensor name with a control character stays on one line.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w\r\n", &[4], 0, 0);
    gguf_err(r.data(0), &["'w\\r\\n'", "beyond the end of the file"]);
}

#[test]
fn gguf_overlapping_and_duplicate_tensors() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("first", &[32, 2], 0, 0).tensor("second", &[32], 0, 128);
    gguf_err(r.data(512), &["tensor 'second' overlaps tensor 'first'"]);
    let mut r = Raw::header(3, 2, 0);
    r.tensor("x", &[8], 0, 0).tensor("x", &[8], 0, 32);
    gguf_err(r.data(64), &["'x'", "duplicate tensor name"]);
    // Adjacent (touching) tensors are fine, in any order in the header.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("b", &[8], 0, 32).tensor("a", &[8], 0, 0);
    Gguf::from_bytes("ok", r.data(64)).unwrap();
}

#[test]
fn gguf_random_corruption_never_panics() {
    let clean = small_gguf();
    let mut rng = common::Rng::new(11);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut b = clean.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len() as u32) as usize;
            b[i] = match rng.below(3) {
                0 => rng.next_u32() as u8,
                1 => b[i] ^ (1 << rng.below(8)),
                _ => 0xff,
            };
        }
        let limit = alloc_limit(b.len());
        if let Err(e) = bounded("corrupt", limit, || Gguf::from_bytes("bad.gguf", b)) {
            check_msg(&e.to_string(), "bad.gguf", &[]);
            errors += 1;
        }
    }
    // Flips in tensor data and metadata payloads parse fine; flips in the structure must not.
    assert!(errors > 300, "only {errors} of 3000 corruptions were detected");
}

// ---------------------------------------------------------------- safetensors

fn small_st() -> Vec<u8> {
    let mut w = SafeTensorsWriter::new();
    w.add("x", WType::F32, &[2, 3], quantize(WType::F32, &[1., 2., 3., 4., 5., 6.]))
        .add("h", WType::F16, &[4], quantize(WType::F16, &[0.5, -1., 2., 3.]))
        .add("b", WType::BF16, &[1, 2], quantize(WType::BF16, &[7., -8.]))
        .add("scalar", WType::F32, &[], 9f32.to_le_bytes().to_vec())
        .meta("format", "pt");
    w.to_bytes().unwrap()
}

/// A safetensors file with the given JSON header and `n` data bytes.
fn st_bytes(header: &str, n: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend((0..n).map(|i| i as u8));
    v
}

#[test]
fn safetensors_round_trip() {
    let st = SafeTensors::from_bytes("small", small_st()).unwrap();
    assert_eq!(st.metadata, vec![("format".to_string(), "pt".to_string())]);
    assert_eq!(st.tensors.len(), 4);
    let x = st.tensor("x").unwrap();
    assert_eq!((x.wtype, x.shape.clone(), x.dims(), x.bytes), (WType::F32, vec![2, 3], vec![3, 2], 24));
    assert_eq!(dequantize(WType::F32, st.tensor_data(x), 6).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    let h = st.tensor("h").unwrap();
    assert_eq!(dequantize(WType::F16, st.tensor_data(h), 4).unwrap(), vec![0.5, -1., 2., 3.]);
    let b = st.tensor("b").unwrap();
    assert_eq!((b.wtype, dequantize(WType::BF16, st.tensor_data(b), 2).unwrap()), (WType::BF16, vec![7., -8.]));
    assert_eq!(st.tensor("scalar").unwrap().shape, Vec::<u64>::new());
    // The data section starts 8-byte aligned (the header is padded with spaces).
    assert_eq!(st.tensors[0].offset % 8, 0);
}

#[test]
fn safetensors_every_prefix_is_an_error() {
    let full = small_st();
    for len in 0..full.len() {
        let msg = st_err(full[..len].to_vec(), &[]);
        assert!(msg.contains(TRUNCATED) || msg.contains("outside the data section") || msg.contains("JSON"), "prefix {len}: {msg}");
    }
}

#[test]
fn safetensors_malformed_headers() {
    let t = r#"{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}"#;
    SafeTensors::from_bytes("ok", st_bytes(t, 16)).unwrap();
    let mut b = st_bytes(t, 16);
    b[..8].copy_from_slice(&1000u64.to_le_bytes());
    st_err(b, &[TRUNCATED, "header length 1000 extends beyond the end of the file"]);
    let mut b = st_bytes(t, 16);
    b[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    st_err(b, &["header length 1152921504606846976 exceeds the limit"]);
    st_err(vec![1, 2, 3], &[TRUNCATED, "8-byte header length"]);
    st_err(st_bytes(r#"{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]"#, 16), &["header is not a JSON object", "EOF"]);
    st_err(st_bytes("[1, 2]", 0), &["header is not a JSON object"]);
    st_err(st_bytes("\u{1}garbage", 0), &["header is not a JSON object"]);
    // Deep nesting hits serde_json's recursion limit, not the stack.
    let deep = format!("{{\"w\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    st_err(st_bytes(&deep, 0), &["header is not a JSON object", "recursion limit"]);
    st_err(st_bytes(r#"{"w": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}"#, 16), &["tensor 'w'", "dtype I64 is not supported"]);
    st_err(st_bytes(r#"{"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}"#, 2), &["dtype F8_E4M3 is not supported"]);
    st_err(st_bytes(r#"{"w": {"shape": [2], "data_offsets": [0, 8]}}"#, 8), &["tensor 'w'", "missing field `dtype`"]);
    st_err(st_bytes(r#"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, 8), &["tensor 'w'", "bad header entry"]);
    st_err(
        st_bytes(r#"{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 32]}}"#, 16),
        &["tensor 'w'", "data_offsets [0, 32] are outside the data section (16 bytes)"],
    );
    st_err(st_bytes(r#"{"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}"#, 16), &["data_offsets [8, 4] are outside"]);
    st_err(st_bytes(r#"{"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 16]}}"#, 16), &["tensor 'w'", "overflows"]);
    st_err(st_bytes(r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}"#, 16), &["tensor 'w'", "shape [3] of F32 needs 12 bytes", "hold 16"]);
    st_err(st_bytes(r#"{"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}}"#, 4), &["9 dimensions"]);
    st_err(
        st_bytes(r#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#, 16),
        &["tensor 'b' overlaps tensor 'a'"],
    );
    st_err(st_bytes(r#"{"__metadata__": {"k": 1}}"#, 0), &["__metadata__ value 'k' is not a string"]);
}

// ---------------------------------------------------------------- ModelConfig

/// The tiny model's GGUF metadata with `edit` applied, tensors included.
fn tiny_gguf_with(edit: impl FnOnce(&mut GgufWriter)) -> Gguf {
    let mut w = tiny_gguf_writer(&TinyOpts::new(1));
    edit(&mut w);
    Gguf::from_bytes("tiny.gguf", w.to_bytes().unwrap()).unwrap()
}

#[track_caller]
fn cfg_err(g: &Gguf, want: &[&str]) {
    let msg = ModelConfig::from_gguf(g).unwrap_err().to_string();
    check_msg(&msg, "tiny.gguf", want);
}

#[test]
fn config_from_gguf() {
    for arch in TinyArch::ALL {
        for tied in [false, true] {
            let o = TinyOpts { tied, ..TinyOpts::of(arch, 1) };
            let g = Gguf::from_bytes("t", tiny_gguf_writer(&o).to_bytes().unwrap()).unwrap();
            assert_eq!(ModelConfig::from_gguf(&g).unwrap(), tiny_config_of(&o, true), "{arch:?} tied {tied}");
        }
    }
    let g = tiny_gguf_with(|_| {});
    assert_eq!(ModelConfig::from_gguf(&g).unwrap(), tiny_config(RopeStyle::Interleaved, false));
    // Defaults: KV heads = heads, RoPE base 10000, rope.dimension_count = head_dim.
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        if !matches!(k.as_str(), "llama.attention.head_count_kv" | "llama.rope.freq_base" | "llama.rope.dimension_count") {
            w.add(k, v.clone());
        }
    }
    let g2 = Gguf::from_bytes("d", w.to_bytes().unwrap()).unwrap();
    let c = ModelConfig::from_gguf(&g2).unwrap();
    assert_eq!((c.n_kv_heads, c.rope_theta, c.head_dim, c.tied_embeddings), (HEADS, 10000.0, HEAD_DIM, true));
    // Vocab from the token list, then from token_embd, when vocab_size is absent.
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata.iter().filter(|(k, _)| k != "llama.vocab_size") {
        w.add(k, v.clone());
    }
    w.add("tokenizer.ggml.tokens", Value::Array((0..123).map(|i| Value::Str(format!("t{i}"))).collect()));
    assert_eq!(ModelConfig::from_gguf(&Gguf::from_bytes("v", w.to_bytes().unwrap()).unwrap()).unwrap().vocab_size, 123);
    let c = ModelConfig::from_gguf(&tiny_gguf_with(|w| {
        let g = Gguf::from_bytes("t", w.to_bytes().unwrap()).unwrap();
        *w = GgufWriter::new();
        for (k, v) in g.metadata.iter().filter(|(k, _)| k != "llama.vocab_size") {
            w.add(k, v.clone());
        }
        for t in &g.tensors {
            w.add_tensor(&t.name, &t.dims, t.wtype, g.tensor_data(t).to_vec());
        }
    }))
    .unwrap();
    assert_eq!(c.vocab_size, VOCAB);
}

/// A change to a GGUF being written.
type Edit<'a> = &'a dyn Fn(&mut GgufWriter);

/// Gemma 3's window metadata read as llama.cpp reads it (pattern period or
/// per-layer array, local RoPE base defaulting to 10000, no window: all
/// global), and what this build lacks refused in one line.
#[test]
fn config_from_gguf_gemma3() {
    let o = TinyOpts { tied: true, ..TinyOpts::of(TinyArch::Gemma3, 1) };
    let with = |edit: &dyn Fn(&mut GgufWriter)| {
        let mut w = tiny_gguf_writer(&o);
        edit(&mut w);
        Gguf::from_bytes("tiny.gguf", w.to_bytes().unwrap()).unwrap()
    };
    let c = ModelConfig::from_gguf(&with(&|_| {})).unwrap();
    assert_eq!(c, tiny_config_of(&o, true));
    assert_eq!((c.embed_scale, c.layer_window(0), c.layer_window(1)), (Some(8.0), Some(48), None));
    assert_eq!((c.layer_rope_theta(0), c.layer_rope_theta(1)), (10000.0, 1e6));
    let c = ModelConfig::from_gguf(&with(&|w| {
        w.add("gemma3.attention.sliding_window_pattern", Value::Array(vec![Value::Bool(false), Value::Bool(true)]));
    }))
    .unwrap();
    assert_eq!(c.window.unwrap().local, [false, true]);
    // Period 6 (llama.cpp's default) over 2 layers: both local.
    let c = ModelConfig::from_gguf(&with(&|w| {
        w.add("gemma3.attention.sliding_window_pattern", Value::U32(6));
    }))
    .unwrap();
    assert_eq!(c.window.unwrap().local, [true, true]);
    let c = ModelConfig::from_gguf(&with(&|w| {
        w.add("gemma3.attention.sliding_window", Value::U32(0));
    }))
    .unwrap();
    assert_eq!(c.window, None);
    let bad: [(Edit, &str); 3] = [
        (
            &|w| {
                w.add("gemma3.final_logit_softcapping", Value::F32(30.0));
            },
            "final-logit soft-capping (final_logit_softcapping) is not supported on Gemma 3",
        ),
        (
            &|w| {
                w.add("gemma3.attention.sliding_window_pattern", Value::Array(vec![Value::Bool(true)]));
            },
            "has 1 entries for 2 layers",
        ),
        (
            &|w| {
                w.add("gemma3.rope.freq_base_swa", Value::F32(-1.0));
            },
            "local RoPE base -1 is not a positive number",
        ),
    ];
    for (edit, want) in bad {
        cfg_err(&with(edit), &[want]);
    }
}

/// Gemma 2's metadata read as llama.cpp reads it: the softcaps (defaults
/// 50 and 30), the window (default 4096) on every even layer whatever a
/// pattern key says, one RoPE base; a softcap that is not positive and the
/// 27B's attention scale refused.
#[test]
fn config_from_gguf_gemma2() {
    let o = TinyOpts { tied: true, ..TinyOpts::of(TinyArch::Gemma2, 1) };
    let with = |edit: &dyn Fn(&mut GgufWriter)| {
        let mut w = tiny_gguf_writer(&o);
        edit(&mut w);
        Gguf::from_bytes("tiny.gguf", w.to_bytes().unwrap()).unwrap()
    };
    let c = ModelConfig::from_gguf(&with(&|_| {})).unwrap();
    assert_eq!(c, tiny_config_of(&o, true));
    assert_eq!((c.attn_softcap, c.final_softcap, c.qk_norm), (Some(0.5), Some(2.0), false));
    assert_eq!((c.layer_window(0), c.layer_window(1), c.layer_rope_theta(0)), (Some(48), None, c.rope_theta));
    let c = ModelConfig::from_gguf(&with(&|w| {
        w.remove("gemma2.attn_logit_softcapping").remove("gemma2.final_logit_softcapping").remove("gemma2.attention.sliding_window");
        w.add("gemma2.attention.sliding_window_pattern", Value::U32(6));
    }))
    .unwrap();
    assert_eq!((c.attn_softcap, c.final_softcap), (Some(50.0), Some(30.0)));
    let w = c.window.unwrap();
    assert_eq!((w.size, w.local), (4096, vec![true, false]));
    let bad: [(Edit, &str); 2] = [
        (
            &|w| {
                w.add("gemma2.attn_logit_softcapping", Value::F32(0.0));
            },
            "'gemma2.attn_logit_softcapping' = 0 is not a positive number",
        ),
        (
            &|w| {
                w.add("gemma2.block_count", Value::U32(46));
            },
            "Gemma 2's 27B attention scale 1/sqrt(dim / n_heads) is not supported",
        ),
    ];
    for (edit, want) in bad {
        cfg_err(&with(edit), &[want]);
    }
}

#[test]
fn config_from_gguf_refusals() {
    let s = |x: &str| Value::Str(x.into());
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("general.architecture", s("phi2"));
        }),
        &["architecture 'phi2' is not supported yet (needs: LayerNorm, GELU FFN, parallel attention, partial RoPE)"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add_tensor("rope_factors_long.weight", &[8], WType::F32, vec![0; 32]);
        }),
        &["LongRoPE scaling (rope_factors_long / rope_factors_short) is not supported"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("general.architecture", s("bloom"));
        }),
        &["architecture 'bloom' is not supported (this build runs 'llama', 'qwen2', 'qwen3', 'gemma2', 'gemma3', 'phi3')"],
    );
    for ty in ["yarn", "linear", "longrope"] {
        cfg_err(
            &tiny_gguf_with(|w| {
                w.add("llama.rope.scaling.type", s(ty));
            }),
            &[&format!("RoPE scaling '{ty}' is not supported")],
        );
    }
    // The qwen2 file's own keys are read, under its own prefix.
    let qwen = |edit: &dyn Fn(&mut GgufWriter)| {
        let mut w = tiny_gguf_writer(&TinyOpts::of(TinyArch::Qwen2, 1));
        edit(&mut w);
        Gguf::from_bytes("tiny.gguf", w.to_bytes().unwrap()).unwrap()
    };
    cfg_err(
        &qwen(&|w| {
            w.add("qwen2.rope.scaling.type", s("yarn"));
        }),
        &["RoPE scaling 'yarn' is not supported"],
    );
    cfg_err(
        &qwen(&|w| {
            w.add("qwen2.attention.layer_norm_rms_epsilon", Value::F32(0.0));
        }),
        &["RMS norm epsilon 0"],
    );
    ModelConfig::from_gguf(&tiny_gguf_with(|w| {
        w.add("llama.rope.scaling.type", s("none"));
    }))
    .unwrap();
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.rope.scale_linear", Value::F32(4.0));
        }),
        &["rope.scale_linear"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.rope.dimension_count", Value::U32(8));
        }),
        &["rope.dimension_count 8 != head_dim 16"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.attention.head_count_kv", Value::U32(3));
        }),
        &["4 heads are not a multiple of 3 KV heads"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.attention.head_count", Value::U32(5));
        }),
        &["embedding size 64 is not a multiple of 5 heads"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.block_count", Value::U64(1 << 40));
        }),
        &["layer count 1099511627776 is outside 1..=1024"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.embedding_length", Value::U32(0));
        }),
        &["embedding size 0"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.block_count", Value::I32(-2));
        }),
        &["'llama.block_count' is negative"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.attention.layer_norm_rms_epsilon", Value::F32(f32::NAN));
        }),
        &["RMS norm epsilon NaN"],
    );
    cfg_err(
        &tiny_gguf_with(|w| {
            w.add("llama.rope.freq_base", Value::F32(-1.0));
        }),
        &["RoPE base -1"],
    );
    let g = tiny_gguf_with(|_| {});
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata.iter().filter(|(k, _)| k != "llama.feed_forward_length") {
        w.add(k, v.clone());
    }
    cfg_err(&Gguf::from_bytes("tiny.gguf", w.to_bytes().unwrap()).unwrap(), &["missing metadata key 'llama.feed_forward_length'"]);
}

fn hf_json(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let mut j: serde_json::Value = serde_json::from_str(&hf_config_json(false)).unwrap();
    edit(j.as_object_mut().unwrap());
    j.to_string()
}

#[track_caller]
fn hf_err(text: &str, want: &[&str]) {
    let msg = ModelConfig::from_hf_json("config.json", text).unwrap_err().to_string();
    check_msg(&msg, "config.json", want);
}

#[test]
fn config_from_hf_json() {
    use serde_json::json;
    assert_eq!(ModelConfig::from_hf_json("c", &hf_config_json(false)).unwrap(), tiny_config(RopeStyle::HalfSplit, false));
    assert!(ModelConfig::from_hf_json("c", &hf_config_json(true)).unwrap().tied_embeddings);
    // Optional keys: KV heads default to heads, head_dim to hidden/heads, rope_scaling "default" accepted.
    let c = ModelConfig::from_hf_json(
        "c",
        &hf_json(|j| {
            j.remove("num_key_value_heads");
            j.remove("head_dim");
            j.insert("rope_scaling".into(), json!({"rope_type": "default"}));
            j.insert("architectures".into(), json!(["MistralForCausalLM"]));
            j.insert("sliding_window".into(), json!(null));
        }),
    )
    .unwrap();
    assert_eq!((c.n_kv_heads, c.head_dim, c.arch.as_str()), (HEADS, HEAD_DIM, "mistral"));
    // An explicit head_dim that differs from hidden/heads.
    let c = ModelConfig::from_hf_json(
        "c",
        &hf_json(|j| {
            j.insert("head_dim".into(), json!(32));
        }),
    )
    .unwrap();
    assert_eq!((c.head_dim, c.q_dim(), c.kv_dim()), (32, 128, 64));

    for arch in TinyArch::ALL {
        for tied in [false, true] {
            let o = TinyOpts { tied, ..TinyOpts::of(arch, 1) };
            assert_eq!(ModelConfig::from_hf_json("c", &hf_config_json_of(&o)).unwrap(), tiny_config_of(&o, false), "{arch:?} tied {tied}");
        }
    }
    hf_err(
        &hf_json(|j| {
            j.insert("architectures".into(), json!(["Gemma3ForConditionalGeneration"]));
        }),
        &["architectures [Gemma3ForConditionalGeneration] not supported yet (needs: the vision tower and language_model.* names"],
    );
    // Gemma's config keys: its activation, its query scale, the window's layers and softcaps.
    let gemma = |arch: TinyArch, edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut j: serde_json::Value = serde_json::from_str(&hf_config_json_of(&TinyOpts::of(arch, 1))).unwrap();
        edit(j.as_object_mut().unwrap());
        j.to_string()
    };
    let c = ModelConfig::from_hf_json(
        "c",
        &gemma(TinyArch::Gemma3, &|j| {
            j.remove("layer_types");
            j.remove("tie_word_embeddings");
            j.insert("sliding_window_pattern".into(), json!(2));
        }),
    )
    .unwrap();
    assert_eq!((c.window.unwrap().local, c.tied_embeddings, c.embed_scale), (vec![true, false], true, Some(8.0)));
    let c = ModelConfig::from_hf_json(
        "c",
        &gemma(TinyArch::Gemma2, &|j| {
            j.remove("attn_logit_softcapping");
            j.remove("final_logit_softcapping");
            j.remove("sliding_window");
        }),
    )
    .unwrap();
    assert_eq!((c.attn_softcap, c.final_softcap, c.window.unwrap().size), (Some(50.0), Some(30.0), 4096));
    for (arch, edit, want) in [
        (
            TinyArch::Gemma3,
            &(|j: &mut serde_json::Map<String, serde_json::Value>| {
                j.insert("query_pre_attn_scalar".into(), json!(144));
            }) as &dyn Fn(&mut serde_json::Map<String, serde_json::Value>),
            "query_pre_attn_scalar 144 is not supported (head_dim 32 is)",
        ),
        (
            TinyArch::Gemma3,
            &|j| {
                j.insert("hidden_activation".into(), json!("silu"));
            },
            "hidden_activation 'silu' is not supported (gelu_pytorch_tanh is)",
        ),
        (
            TinyArch::Gemma3,
            &|j| {
                j.insert("layer_types".into(), json!(["full_attention"]));
            },
            "'layer_types' has 1 entries for 2 layers",
        ),
        (
            TinyArch::Gemma3,
            &|j| {
                j.insert("rope_scaling".into(), json!({"rope_type": "linear", "factor": 8.0}));
            },
            "rope_scaling 'linear' is not supported",
        ),
        (
            TinyArch::Gemma2,
            &|j| {
                j.insert("final_logit_softcapping".into(), json!(-1.0));
            },
            "'final_logit_softcapping' is not a positive number",
        ),
    ] {
        hf_err(&gemma(arch, edit), &[want]);
    }
    hf_err(
        &hf_json(|j| {
            j.insert("architectures".into(), json!(["BloomForCausalLM"]));
        }),
        &[
            "architectures [BloomForCausalLM] not supported (this build runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM)",
        ],
    );
    // A Qwen config's window counts when use_sliding_window says so.
    let qwen = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut j: serde_json::Value = serde_json::from_str(&hf_config_json_of(&TinyOpts::of(TinyArch::Qwen2, 1))).unwrap();
        edit(j.as_object_mut().unwrap());
        j.to_string()
    };
    hf_err(
        &qwen(&|j| {
            j.insert("use_sliding_window".into(), json!(true));
        }),
        &["sliding_window 64 is not supported"],
    );
    // attention_bias would put a bias on the output projection too.
    hf_err(
        &qwen(&|j| {
            j.insert("attention_bias".into(), json!(true));
        }),
        &["attention_bias"],
    );
    hf_err(
        &hf_json(|j| {
            j.remove("architectures");
        }),
        &["architectures [none] not supported"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("rope_scaling".into(), json!({"rope_type": "llama3", "factor": 8.0}));
        }),
        &["rope_scaling 'llama3' is missing 'low_freq_factor'"],
    );
    let llama3 = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    hf_err(
        &hf_json(|j| {
            j.insert("rope_scaling".into(), llama3.clone());
        }),
        &["rope_scaling high_freq_factor 4 is not above low_freq_factor 4"],
    );
    let mut bad = llama3.clone();
    bad["factor"] = json!(-1.0);
    hf_err(
        &hf_json(|j| {
            j.insert("rope_scaling".into(), bad.clone());
        }),
        &["rope_scaling 'factor' is not a positive number"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("rope_scaling".into(), json!({"type": "linear", "factor": 2.0}));
        }),
        &["rope_scaling 'linear' is not supported (default and llama3 are)"],
    );
    for ty in ["yarn", "dynamic", "longrope"] {
        hf_err(
            &hf_json(|j| {
                j.insert("rope_scaling".into(), json!({"rope_type": ty, "factor": 4.0}));
            }),
            &[&format!("rope_scaling '{ty}' is not supported")],
        );
    }
    hf_err(
        &hf_json(|j| {
            j.remove("hidden_size");
        }),
        &["missing key 'hidden_size'"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("vocab_size".into(), json!(-5));
        }),
        &["'vocab_size' is not a non-negative integer"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("rms_norm_eps".into(), json!("small"));
        }),
        &["'rms_norm_eps' is not a number"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("num_key_value_heads".into(), json!(3));
        }),
        &["not a multiple of 3 KV heads"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("hidden_size".into(), json!(1u64 << 40));
        }),
        &["embedding size 1099511627776 is outside"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("attention_bias".into(), json!(true));
        }),
        &["attention_bias"],
    );
    hf_err(
        &hf_json(|j| {
            j.insert("hidden_act".into(), json!("gelu"));
        }),
        &["hidden_act 'gelu'"],
    );
    // Mistral's window covers every layer, at the global RoPE base.
    let c = ModelConfig::from_hf_json(
        "c",
        &hf_json(|j| {
            j.insert("sliding_window".into(), json!(128));
        }),
    )
    .unwrap();
    let w = c.window.clone().unwrap();
    assert_eq!((w.size, w.rope_theta, w.local.len(), w.local.iter().all(|&l| l)), (128, c.rope_theta, c.n_layers, true));
    hf_err(
        &hf_json(|j| {
            j.insert("sliding_window".into(), json!(1u64 << 40));
            j.insert("max_position_embeddings".into(), json!(1u64 << 41));
        }),
        &["outside"],
    );
    hf_err("{ not json", &["not valid JSON"]);
    hf_err("[]", &["not a JSON object"]);
}

// ---------------------------------------------------------------- tiny model through both loaders

/// Every tensor's values, dequantized, in HF row order (GGUF Q/K un-permuted).
fn hf_order_values(w: &Weights, name: &str) -> Vec<f32> {
    let t = w.get(name).unwrap();
    let v = dequantize(t.wtype, &t.data, t.n_elems()).unwrap();
    match (w.cfg.rope_style, rope_heads(name)) {
        (RopeStyle::Interleaved, Some(h)) => from_gguf_rows(&v, t.cols(), h),
        _ => v,
    }
}

#[test]
fn rope_row_permutation_round_trips() {
    let cols = 3;
    let v: Vec<f32> = (0..8 * cols).map(|i| i as f32).collect();
    let g = to_gguf_rows(&v, cols, 2);
    // Head 0 (rows 0..4, head_dim 4): HF rows 0,2 pair and 1,3 pair; GGUF puts pairs side by side.
    let rows: Vec<f32> = g.chunks(cols).map(|r| r[0] / cols as f32).collect();
    assert_eq!(rows, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
    assert_eq!(from_gguf_rows(&g, cols, 2), v);
}

/// llama.cpp's converter's factors (tiny.rs, written from its Python) and
/// the HF loader's agree, for the tiny model and for Llama 3.1 8B's
/// parameters; each regime (kept, blended, divided) occurs.
#[test]
fn llama3_rope_factors_match_the_converter() {
    use wgkv::config::Llama3Rope;
    let l31 = Llama3Rope { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192.0 };
    for (p, hd, theta) in [(LLAMA3, 16, 10000.0), (l31, 128, 500000.0), (Llama3Rope { factor: 32.0, ..l31 }, 64, 500000.0)] {
        let (got, want) = (p.factors(hd, theta), llama3_factors(&p, hd, theta));
        common::assert_close(&format!("llama3 factors {p:?} head_dim {hd}"), &got, &want, common::Tol { name: "f32-ulp", abs: 0.0, rel: 2e-7 });
        assert_eq!((got[0], got[hd / 2 - 1]), (1.0, p.factor as f32), "{p:?}");
        assert!(got.iter().any(|&f| f > 1.0 && f < p.factor as f32), "{p:?}: no blended pair in {got:?}");
    }
}

#[test]
fn tiny_model_same_through_gguf_and_safetensors() {
    let dir = scratch("agree");
    let quants = [WType::F32, WType::F16, WType::BF16, WType::Q8_0, WType::Q4_0, WType::Q4_1];
    for (i, (arch, quant)) in TinyArch::ALL.into_iter().flat_map(|a| quants.map(|q| (a, q))).enumerate() {
        let o = TinyOpts { quant, ..TinyOpts::of(arch, 40 + i as u64) };
        let tag = format!("{arch:?}-{}", quant.name());
        let (gp, hp) = (dir.join(format!("{tag}.gguf")), dir.join(&tag));
        write_tiny_gguf_opts(&gp, &o);
        write_tiny_hf_opts(&hp, &o);
        let g = Weights::open(&gp).unwrap();
        let h = Weights::open(&hp).unwrap();
        assert_eq!((g.format, h.format), ("gguf", "safetensors"));
        assert_eq!(g.cfg, tiny_config_of(&o, true));
        assert_eq!(h.cfg, tiny_config_of(&o, false));
        assert_eq!(g.names(), h.names());
        assert!(g.gguf.is_some() && g.hf_dir.is_none() && h.gguf.is_none());
        assert_eq!(h.tokenizer_json(), Some(hp.join("tokenizer.json")));
        for t in tiny_model(&o) {
            let (tg, th) = (g.get(&t.name).unwrap(), h.get(&t.name).unwrap());
            assert_eq!(tg.dims, t.dims, "{}", t.name);
            assert_eq!(th.dims, t.dims, "{}", t.name);
            assert_eq!(tg.wtype, if t.dims.len() == 1 { WType::F32 } else { quant }, "{}", t.name);
            assert_eq!(th.wtype, hf_dtype(&t.name, quant), "{}", t.name);
            let what = format!("{tag} {}", t.name);
            common::assert_close(&format!("{what} (gguf)"), &hf_order_values(&g, &t.name), &t.values, common::EXACT);
            // The HF loader computes the RoPE factors the GGUF carries.
            let tol = if t.name == "rope_freqs.weight" { common::Tol { name: "f32-ulp", abs: 0.0, rel: 2e-7 } } else { common::EXACT };
            common::assert_close(&format!("{what} (hf)"), &hf_order_values(&h, &t.name), &t.values, tol);
        }
        assert_eq!(g.rope_factors().unwrap().is_some(), arch == TinyArch::Llama3Rope);
        // Q/K really are stored permuted in Llama GGUFs (and not elsewhere).
        let raw = |w: &Weights, n: &str| dequantize(w.get(n).unwrap().wtype, &w.get(n).unwrap().data, w.get(n).unwrap().n_elems()).unwrap();
        let permuted = arch.family() == wgkv::arch::Arch::Llama;
        assert_eq!(raw(&g, "blk.0.attn_q.weight") != raw(&h, "blk.0.attn_q.weight"), permuted, "{tag}");
        assert_eq!(raw(&g, "blk.1.attn_k.weight") != raw(&h, "blk.1.attn_k.weight"), permuted, "{tag}");
        assert_eq!(raw(&g, "blk.0.attn_v.weight"), raw(&h, "blk.0.attn_v.weight"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tiny_hf_sharded_and_tied() {
    let dir = scratch("sharded");
    let o = TinyOpts { tied: true, shards: 3, ..TinyOpts::new(5) };
    write_tiny_hf_opts(&dir.join("hf"), &o);
    assert!(dir.join("hf/model-00003-of-00003.safetensors").exists());
    let h = Weights::open(&dir.join("hf")).unwrap();
    assert_eq!(h.cfg, tiny_config(RopeStyle::HalfSplit, true));
    assert!(h.get("output.weight").is_err());
    assert_eq!(h.output().unwrap().name, "token_embd.weight");
    for t in tiny_model(&o) {
        common::assert_close(&t.name, &hf_order_values(&h, &t.name), &t.values, common::EXACT);
    }
    // Tied GGUF: no output.weight.
    write_tiny_gguf_opts(&dir.join("t.gguf"), &o);
    let g = Weights::open(&dir.join("t.gguf")).unwrap();
    assert!(g.cfg.tied_embeddings);
    assert_eq!(g.output().unwrap().name, "token_embd.weight");
    // A tied HF checkpoint that still carries lm_head.weight drops it.
    write_tiny_hf_opts(&dir.join("both"), &TinyOpts::new(5));
    std::fs::write(dir.join("both/config.json"), hf_config_json(true)).unwrap();
    let b = Weights::open(&dir.join("both")).unwrap();
    assert!(b.cfg.tied_embeddings && b.get("output.weight").is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn open_detects_the_format() {
    let dir = scratch("detect");
    write_tiny_hf(&dir.join("hf"), 9);
    write_tiny_gguf(&dir.join("m.gguf"), 9, WType::Q4_0);
    for p in ["hf", "hf/config.json", "hf/model.safetensors"] {
        let w = Weights::open(&dir.join(p)).unwrap();
        assert_eq!((w.format, w.path.clone()), ("safetensors", dir.join("hf")), "{p}");
    }
    // A GGUF is recognised by its magic, not its name.
    std::fs::rename(dir.join("m.gguf"), dir.join("model.bin")).unwrap();
    assert_eq!(Weights::open(&dir.join("model.bin")).unwrap().format, "gguf");
    std::fs::write(dir.join("junk.bin"), b"hello").unwrap();
    let msg = Weights::open(&dir.join("junk.bin")).unwrap_err().to_string();
    assert!(msg.contains("junk.bin") && msg.contains("not a GGUF file, an HF model folder"), "{msg}");
    let msg = Weights::open(&dir.join("absent.gguf")).unwrap_err().to_string();
    assert!(msg.contains("absent.gguf") && msg.contains("No such file"), "{msg}");
    std::fs::create_dir(dir.join("empty")).unwrap();
    let msg = Weights::open(&dir.join("empty")).unwrap_err().to_string();
    assert!(msg.contains("config.json") && msg.contains("No such file"), "{msg}");
    std::fs::copy(dir.join("hf/config.json"), dir.join("empty/config.json")).unwrap();
    let msg = Weights::open(&dir.join("empty")).unwrap_err().to_string();
    assert!(msg.contains("no model.safetensors or model.safetensors.index.json"), "{msg}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The error of opening the tiny GGUF with its tensor list changed by `edit`.
fn tiny_weights_err(edit: impl FnOnce(&mut Vec<RawTensor>)) -> String {
    let msg = Weights::from_gguf(tiny_edited(edit)).unwrap_err().to_string();
    check_msg(&msg, "edited.gguf", &[]);
    msg
}

#[test]
fn weights_shape_missing_and_extra_tensors() {
    let f32s = |n: usize| quantize(WType::F32, &vec![0.25; n]);
    let m = tiny_weights_err(|t| {
        let k = t.iter_mut().find(|t| t.0 == "blk.1.attn_k.weight").unwrap();
        *k = (k.0.clone(), vec![64, 64], WType::F32, f32s(64 * 64));
    });
    assert!(m.contains("tensor 'blk.1.attn_k.weight' has shape [64, 64], expected [64, 32]"), "{m}");
    let m = tiny_weights_err(|t| {
        let k = t.iter_mut().find(|t| t.0 == "output_norm.weight").unwrap();
        *k = (k.0.clone(), vec![32], WType::F32, f32s(32));
    });
    assert!(m.contains("'output_norm.weight' has shape [32], expected [64]"), "{m}");
    let m = tiny_weights_err(|t| t.retain(|t| t.0 != "blk.1.ffn_up.weight"));
    assert!(m.contains("missing tensor 'blk.1.ffn_up.weight'"), "{m}");
    let m = tiny_weights_err(|t| t.push(("blk.0.attn_q.bias".into(), vec![64], WType::F32, f32s(64))));
    assert!(m.contains("unexpected tensor(s) 'blk.0.attn_q.bias'"), "{m}");
    let m = tiny_weights_err(|t| t.push(("blk.2.attn_q.weight".into(), vec![64, 64], WType::F32, f32s(64 * 64))));
    assert!(m.contains("'blk.2.attn_q.weight' for a 2-layer Llama"), "{m}");
    // The recipes' optional tensors: required where the recipe has them, refused elsewhere.
    let err = |arch: TinyArch, edit: &dyn Fn(&mut Vec<RawTensor>)| {
        let msg = Weights::from_gguf(tiny_edited_of(&TinyOpts::of(arch, 2), edit)).unwrap_err().to_string();
        check_msg(&msg, "edited.gguf", &[]);
        msg
    };
    let m = err(TinyArch::Qwen2, &|t| t.retain(|t| t.0 != "blk.1.attn_k.bias"));
    assert!(m.contains("missing tensor 'blk.1.attn_k.bias'"), "{m}");
    let m = err(TinyArch::Qwen2, &|t| {
        let b = t.iter_mut().find(|t| t.0 == "blk.0.attn_v.bias").unwrap();
        (b.1, b.3) = (vec![64], f32s(64));
    });
    assert!(m.contains("'blk.0.attn_v.bias' has shape [64], expected [32]"), "{m}");
    let m = err(TinyArch::Qwen3, &|t| t.retain(|t| t.0 != "blk.0.attn_q_norm.weight"));
    assert!(m.contains("missing tensor 'blk.0.attn_q_norm.weight'"), "{m}");
    let m = err(TinyArch::Qwen3, &|t| t.push(("blk.0.attn_q.bias".into(), vec![128], WType::F32, f32s(128))));
    assert!(m.contains("unexpected tensor(s) 'blk.0.attn_q.bias' for a 2-layer Qwen3"), "{m}");
    let m = err(TinyArch::Qwen2, &|t| t.push(("blk.0.attn_k_norm.weight".into(), vec![16], WType::F32, f32s(16))));
    assert!(m.contains("unexpected tensor(s) 'blk.0.attn_k_norm.weight' for a 2-layer Qwen2"), "{m}");
    // Llama 3 frequency factors: one per rotated pair, positive.
    let m = err(TinyArch::Llama, &|t| t.push(("rope_freqs.weight".into(), vec![7], WType::F32, f32s(7))));
    assert!(m.contains("'rope_freqs.weight' has shape [7], expected [8]"), "{m}");
    let m = err(TinyArch::Llama, &|t| t.push(("rope_freqs.weight".into(), vec![8], WType::F32, vec![0; 32])));
    assert!(m.contains("tensor 'rope_freqs.weight' holds 0 at pair 0: RoPE frequency factors must be positive numbers"), "{m}");
    let m = err(TinyArch::Llama3Rope, &|t| {
        let f = t.iter_mut().find(|t| t.0 == "rope_freqs.weight").unwrap();
        f.3[12..16].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(m.contains("holds NaN at pair 3"), "{m}");
}

/// A tensor as a GGUF holds it: name, dims (ne0 first), type, bytes.
type RawTensor = (String, Vec<u64>, WType, Vec<u8>);

/// The tiny GGUF with its tensor list changed by `edit`.
fn tiny_edited(edit: impl FnOnce(&mut Vec<RawTensor>)) -> Gguf {
    tiny_edited_of(&TinyOpts::new(2), edit)
}

/// The tiny GGUF written with `o`, its tensor list changed by `edit`.
fn tiny_edited_of(o: &TinyOpts, edit: impl FnOnce(&mut Vec<RawTensor>)) -> Gguf {
    let g = Gguf::from_bytes("t", tiny_gguf_writer(o).to_bytes().unwrap()).unwrap();
    let mut tensors: Vec<_> = g.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.wtype, g.tensor_data(t).to_vec())).collect();
    edit(&mut tensors);
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.add(k, v.clone());
    }
    for (n, d, wt, b) in tensors {
        w.add_tensor(&n, &d, wt, b);
    }
    Gguf::from_bytes("edited.gguf", w.to_bytes().unwrap()).unwrap()
}

#[test]
fn weights_accept_a_trailing_unit_dim() {
    let g = tiny_edited(|t| t.iter_mut().find(|t| t.0 == "output_norm.weight").unwrap().1 = vec![64, 1]);
    let w = Weights::from_gguf(g).unwrap();
    assert_eq!(w.get("output_norm.weight").unwrap().dims, vec![64, 1]);
}

#[test]
fn hf_folder_errors() {
    let dir = scratch("hferr");
    let o = TinyOpts { shards: 2, ..TinyOpts::new(4) };
    let hf = dir.join("hf");
    write_tiny_hf_opts(&hf, &o);
    let index = std::fs::read_to_string(hf.join("model.safetensors.index.json")).unwrap();
    let set_index = |s: &str| std::fs::write(hf.join("model.safetensors.index.json"), s).unwrap();
    let open_err = || Weights::open(&hf).unwrap_err().to_string();

    set_index(&index.replacen("model-00001-of-00002.safetensors", "../../etc/passwd", 1));
    let m = open_err();
    assert!(m.contains("shard name '../../etc/passwd' is not a plain file name"), "{m}");
    // The index places a tensor in the wrong shard.
    let j: serde_json::Value = serde_json::from_str(&index).unwrap();
    let (name, file) = j["weight_map"].as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).unwrap();
    let other = if file.contains("00001") { "model-00002-of-00002.safetensors" } else { "model-00001-of-00002.safetensors" };
    let mut moved = j.clone();
    moved["weight_map"][&name] = other.into();
    set_index(&moved.to_string());
    let m = open_err();
    assert!(m.contains(other) && m.contains(&format!("lists tensor '{name}'")), "{m}");
    set_index("{\"weight_map\": 3}");
    assert!(open_err().contains("no \"weight_map\" object"));
    set_index("not json");
    assert!(open_err().contains("model.safetensors.index.json: not valid JSON"));

    // Single-file folders: a missing tensor and a stray one, named the HF way.
    let one = dir.join("one");
    write_tiny_hf(&one, 4);
    let st = SafeTensors::open(&one.join("model.safetensors")).unwrap();
    let mut w = SafeTensorsWriter::new();
    for t in st.tensors.iter().filter(|t| t.name != "model.layers.1.mlp.down_proj.weight") {
        w.add(&t.name, t.wtype, &t.shape, st.tensor_data(t).to_vec());
    }
    w.write(&one.join("model.safetensors")).unwrap();
    let m = Weights::open(&one).unwrap_err().to_string();
    assert!(m.contains("missing tensor 'blk.1.ffn_down.weight' (HF 'model.layers.1.mlp.down_proj.weight')"), "{m}");
    // HF shapes are [rows, cols]: down_proj is [64, 96]; a transposed one is refused.
    w.add("model.layers.1.mlp.down_proj.weight", WType::F32, &[96, 64], vec![0; 64 * 96 * 4]);
    w.write(&one.join("model.safetensors")).unwrap();
    let m = Weights::open(&one).unwrap_err().to_string();
    assert!(m.contains("'blk.1.ffn_down.weight' (HF 'model.layers.1.mlp.down_proj.weight') has shape [64, 96], expected [96, 64]"), "{m}");
    // A bias Llama has no row for is named the HF way too.
    let mut w = SafeTensorsWriter::new();
    for t in &st.tensors {
        w.add(&t.name, t.wtype, &t.shape, st.tensor_data(t).to_vec());
    }
    w.add("model.layers.0.self_attn.q_proj.bias", WType::F32, &[64], vec![0; 256]);
    w.write(&one.join("model.safetensors")).unwrap();
    let m = Weights::open(&one).unwrap_err().to_string();
    assert!(m.contains("unexpected tensor(s) 'blk.0.attn_q.bias' (HF 'model.layers.0.self_attn.q_proj.bias') for a 2-layer Llama"), "{m}");
    w.add("model.layers.0.self_attn.q_proj.scale", WType::F32, &[64], vec![0; 256]);
    w.write(&one.join("model.safetensors")).unwrap();
    let m = Weights::open(&one).unwrap_err().to_string();
    assert!(m.contains("unexpected tensor 'model.layers.0.self_attn.q_proj.scale' (not a Llama weight)"), "{m}");
    // A Qwen2 folder without a bias names it the HF way.
    let qwen = dir.join("qwen");
    write_tiny_hf_opts(&qwen, &TinyOpts::of(TinyArch::Qwen2, 4));
    let st = SafeTensors::open(&qwen.join("model.safetensors")).unwrap();
    let mut w = SafeTensorsWriter::new();
    for t in st.tensors.iter().filter(|t| t.name != "model.layers.1.self_attn.k_proj.bias") {
        w.add(&t.name, t.wtype, &t.shape, st.tensor_data(t).to_vec());
    }
    w.write(&qwen.join("model.safetensors")).unwrap();
    let m = Weights::open(&qwen).unwrap_err().to_string();
    assert!(m.contains("missing tensor 'blk.1.attn_k.bias' (HF 'model.layers.1.self_attn.k_proj.bias')"), "{m}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------- the real model

#[test]
fn real_model_loads_and_validates() {
    let Some(path) = common::real_model() else { return };
    let w = bounded("real model open", 64 << 20, || Weights::open(&path).unwrap());
    let c = &w.cfg;
    assert_eq!(c.arch, "llama");
    assert_eq!((c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim), (30, 576, 9, 3, 64));
    assert_eq!((c.hidden_dim, c.vocab_size, c.max_seq), (1536, 49152, 8192));
    assert_eq!((c.rope_theta, c.norm_eps), (100000.0, 1e-5));
    assert_eq!((c.rope_style, c.tied_embeddings), (RopeStyle::Interleaved, true));
    assert_eq!((c.kv_dim(), c.q_dim()), (192, 576));
    w.validate().unwrap();
    assert_eq!(w.names().len(), 2 + 30 * 9);
    let e = w.get("token_embd.weight").unwrap();
    assert_eq!((e.wtype, e.dims.clone(), e.data.len()), (WType::Q8_0, vec![576, 49152], 49152 * 18 * 34));
    let q = w.get("blk.29.attn_q.weight").unwrap();
    assert_eq!((q.wtype, q.rows(), q.cols()), (WType::Q4_1, 576, 576));
    assert_eq!(w.output().unwrap().name, "token_embd.weight");
    let msg = w.get("output.weight").unwrap_err().to_string();
    assert!(msg.contains("missing tensor 'output.weight'"), "{msg}");
    let g = w.gguf.as_ref().unwrap();
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    // Norm weights are plausible numbers.
    let n = w.get("blk.0.attn_norm.weight").unwrap();
    let v = dequantize(n.wtype, &n.data, n.n_elems()).unwrap();
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0));
}

#[test]
fn real_model_header_prefixes_are_errors() {
    let Some(path) = common::real_model() else { return };
    let g = Gguf::open(&path).unwrap();
    let head = {
        use std::io::Read;
        let mut b = vec![0u8; g.data_offset as usize + 4096];
        std::fs::File::open(&path).unwrap().read_exact(&mut b).unwrap();
        b
    };
    let mut rng = common::Rng::new(7);
    for _ in 0..60 {
        let len = rng.below(head.len() as u32) as usize;
        let msg = gguf_err(head[..len].to_vec(), &[]);
        assert!(msg.contains(TRUNCATED) || msg.contains("beyond the end of the file"), "prefix {len}: {msg}");
    }
}

/// Phi-3's fused `attn_qkv` and `ffn_up` (gate then up) split on load into
/// the table's matrices, each equal to the tensor the generator made before
/// it stacked them; a fused tensor of another height is reported by name.
#[test]
fn phi3_fused_tensors_split_into_their_parts() {
    let dir = scratch("loaders-phi3");
    for quant in [WType::Q8_0, WType::Q4_1, WType::F16] {
        let o = TinyOpts { quant, ..TinyOpts::of(TinyArch::Phi3, 3) };
        let path = dir.join(format!("phi3-{}.gguf", quant.name()));
        write_tiny_gguf_opts(&path, &o);
        let g = Gguf::open(&path).unwrap();
        assert!(g.tensor("blk.0.attn_qkv.weight").is_some() && g.tensor("blk.0.attn_q.weight").is_none());
        let w = Weights::open(&path).unwrap();
        assert_eq!(w.cfg, tiny_config_of(&o, true));
        for t in tiny_model(&o) {
            assert_eq!(hf_order_values(&w, &t.name), t.values, "{} ({})", t.name, quant.name());
        }
    }
    // A config whose Q + K + V is another height: not split, so the parts are missing.
    let o = TinyOpts { quant: WType::F32, ..TinyOpts::of(TinyArch::Phi3, 3) };
    let mut gw = tiny_gguf_writer(&o);
    gw.add("phi3.attention.head_count_kv", Value::U32(HEADS as u32));
    let path = dir.join("phi3-short.gguf");
    std::fs::write(&path, gw.to_bytes().unwrap()).unwrap();
    let e = Weights::open(&path).unwrap_err().to_string();
    assert!(e.contains("attn_q.weight"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}
