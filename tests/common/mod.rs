//! Shared test harness: GPU contexts (or a visible skip), seeded inputs,
//! named tolerance presets with an error report, and guard words around
//! outputs so out-of-bounds writes and unwritten elements are caught.
#![allow(dead_code)]

pub mod cli;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use wgkv::gpu::{Gpu, GpuOptions};
use wgkv::model::Output;

/// The contexts every kernel test runs on:
/// - the default adapter with SHADER_F16 when it has it,
/// - the same adapter forced onto the f32 path,
/// - wgpu's GL backend where it exists (no f16, 16 storage buffers).
///
/// Empty (the test prints a skip) only when no adapter exists and
/// `WGKV_REQUIRE_GPU` is unset; with it set, a missing adapter fails.
pub fn contexts() -> Contexts {
    // One GPU test at a time per test binary: wgpu's GL backend gives up on
    // its context lock after a few seconds when another thread holds it for a
    // long dispatch, and on a 2-core machine parallel GPU tests gain nothing.
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    Contexts { list: all_contexts(), guard }
}

/// The contexts of one test, holding the GPU lock while iterated.
pub struct Contexts {
    list: Vec<Arc<Gpu>>,
    guard: MutexGuard<'static, ()>,
}

pub struct ContextIter {
    it: std::vec::IntoIter<Arc<Gpu>>,
    _guard: MutexGuard<'static, ()>,
}

impl Iterator for ContextIter {
    type Item = Arc<Gpu>;
    fn next(&mut self) -> Option<Arc<Gpu>> {
        self.it.next()
    }
}

impl IntoIterator for Contexts {
    type Item = Arc<Gpu>;
    type IntoIter = ContextIter;
    fn into_iter(self) -> ContextIter {
        ContextIter { it: self.list.into_iter(), _guard: self.guard }
    }
}

fn all_contexts() -> Vec<Arc<Gpu>> {
    static CTX: OnceLock<Vec<Arc<Gpu>>> = OnceLock::new();
    CTX.get_or_init(|| {
        // Mesa's EGL (the GL backend) complains on every context creation
        // when XDG_RUNTIME_DIR is unset; give it one.
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            // SAFETY: set once, before any GPU context (and its threads) exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
        }
        let required = std::env::var_os("WGKV_REQUIRE_GPU").is_some_and(|v| !v.is_empty() && v != "0");
        let main = match Gpu::new(&GpuOptions::default()) {
            Ok(g) => g,
            Err(e) => {
                if required {
                    panic!("WGKV_REQUIRE_GPU is set but no GPU context could be created: {e}");
                }
                eprintln!("SKIP: no GPU adapter ({e}); set WGKV_REQUIRE_GPU=1 to make this a failure");
                return Vec::new();
            }
        };
        let mut v = vec![main.clone()];
        if main.caps.f16 {
            v.push(Gpu::new(&GpuOptions { force_f32: true, ..Default::default() }).expect("f32 context"));
        }
        if std::env::var_os("WGKV_TEST_GL").is_none_or(|v| v != "0")
            && main.info.backend != wgpu::Backend::Gl
            && let Ok(gl) = Gpu::new(&GpuOptions { backend: Some("gl".into()), ..Default::default() })
        {
            v.push(gl);
        }
        for g in &v {
            eprintln!("test context: {} f16={}", g.describe(), g.caps.f16);
        }
        v
    })
    .clone()
}

/// Short label of a context for failure messages.
pub fn label(g: &Gpu) -> String {
    format!("{:?}/{}", g.info.backend, if g.caps.f16 { "f16" } else { "f32" })
}

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u32() as u8).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// A tolerance: |got - want| <= abs + rel * |want| per element.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub name: &'static str,
    pub abs: f32,
    pub rel: f32,
}

/// Bit-exact (integer outputs, copies, selections).
pub const EXACT: Tol = Tol { name: "exact", abs: 0.0, rel: 0.0 };
/// Elementwise f32 math with a different operation order or a fast
/// inverse sqrt/exp: a few ulps.
pub const F32_ELEMENTWISE: Tol = Tol { name: "f32-elementwise", abs: 1e-5, rel: 1e-5 };
/// f32 dot products / reductions over up to ~10^4 terms in another order
/// than the (f64-accumulating) reference.
pub const F32_REDUCTION: Tol = Tol { name: "f32-reduction", abs: 1e-4, rel: 1e-4 };
/// Values that went through f16 storage (KV cache): f16 has 11 significant
/// bits, so relative error up to 2^-11 per stored value, plus accumulation.
pub const F16_STORAGE: Tol = Tol { name: "f16-storage", abs: 2e-3, rel: 2e-3 };

/// Compare element by element; on failure report the worst error, the first
/// mismatches and the preset. NaN in `got` always fails.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length {} != {}", got.len(), want.len());
    let mut bad = Vec::new();
    let mut worst = (0usize, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let lim = tol.abs + tol.rel * w.abs();
        if err.is_nan() || err > lim || g.is_nan() != w.is_nan() {
            if bad.len() < 8 {
                bad.push(format!("[{i}] got {g} want {w} (err {err:.3e}, allowed {lim:.3e})"));
            }
            if err.is_nan() || err > worst.1 {
                worst = (i, err);
            }
        }
    }
    if !bad.is_empty() {
        let n_bad = got
            .iter()
            .zip(want)
            .filter(|(g, w)| {
                let e = (*g - *w).abs();
                e.is_nan() || e > tol.abs + tol.rel * w.abs()
            })
            .count();
        panic!(
            "{what}: {n_bad} of {} elements outside tolerance '{}' (abs {:e}, rel {:e}); worst at [{}] err {:e}\n  {}",
            got.len(),
            tol.name,
            tol.abs,
            tol.rel,
            worst.0,
            worst.1,
            bad.join("\n  ")
        );
    }
}

/// Guard words written before and after every output region.
pub const GUARD_WORDS: usize = 16;
pub const GUARD: u32 = 0x7FBA_D0D0; // a NaN pattern: unwritten elements fail comparisons

/// An output buffer of `n` 32-bit words followed by `GUARD_WORDS` sentinel
/// words, all poisoned with `GUARD`: elements the kernel fails to write stay
/// NaN, writes past the end show up in the guard.
pub fn poisoned(g: &Gpu, label: &str, n: usize) -> wgpu::Buffer {
    let words = vec![GUARD; n + GUARD_WORDS];
    g.upload(label, bytemuck::cast_slice(&words))
}

/// Read `n` f32 from a `poisoned` buffer and check that its trailing guard
/// words are intact (no out-of-bounds write).
#[track_caller]
pub fn read_guarded_f32(g: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let all = g.read_u32(buf, n + GUARD_WORDS);
    let tail = &all[n..];
    assert!(tail.iter().all(|&w| w == GUARD), "guard words after the output were overwritten: {:x?}", &tail[..4.min(tail.len())]);
    all[..n].iter().map(|&w| f32::from_bits(w)).collect()
}

#[track_caller]
pub fn read_guarded_u32(g: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<u32> {
    let all = g.read_u32(buf, n + GUARD_WORDS);
    assert!(all[n..].iter().all(|&w| w == GUARD), "guard words after the output were overwritten");
    all[..n].to_vec()
}

pub fn upload_f32(g: &Gpu, label: &str, data: &[f32]) -> wgpu::Buffer {
    g.upload(label, bytemuck::cast_slice(data))
}

/// The real model's GGUF path from `WGKV_MODEL`. `None` (with a printed
/// skip) when unset, except under `WGKV_REQUIRE_MODEL=1` (set by `.ci/run`),
/// where a missing model fails the test instead of skipping it.
pub fn real_model() -> Option<std::path::PathBuf> {
    match std::env::var_os("WGKV_MODEL") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            if std::env::var_os("WGKV_REQUIRE_MODEL").is_some_and(|v| v != "0") {
                panic!("WGKV_REQUIRE_MODEL is set but WGKV_MODEL is not");
            }
            eprintln!("SKIP: WGKV_MODEL unset (path of SmolLM2-135M-Instruct.Q4_1.gguf)");
            None
        }
    }
}

/// Another real model's file from the env var `var` (`.ci/run` sets
/// `WGKV_QWEN_MODEL` and `WGKV_GEMMA_MODEL` from `wgkv fetch NAME`); `what`
/// names it in the skip line. Skips and fails as [`real_model`] does.
pub fn named_model(var: &str, what: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => {
            if std::env::var_os("WGKV_REQUIRE_MODEL").is_some_and(|v| v != "0") {
                panic!("WGKV_REQUIRE_MODEL is set but {var} is not ({what})");
            }
            eprintln!("SKIP: {var} unset ({what})");
            None
        }
    }
}

/// A file of the golden reference data vendored in `tests/reference/`
/// (see its README): `rel` is relative to that folder, e.g.
/// `"smollm2-135m/compare_1.json"` for the default model's.
pub fn reference_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(rel)
}

/// Bytes of `x` as a KV cache stores them on `g` (f16 with SHADER_F16, else f32).
pub fn kv_bytes(g: &Gpu, x: &[f32]) -> Vec<u8> {
    if g.caps.f16 { x.iter().flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes()).collect() } else { bytemuck::cast_slice(x).to_vec() }
}

/// `x` as a KV cache stores it on `g`, back in f32.
pub fn kv_round(g: &Gpu, x: &[f32]) -> Vec<f32> {
    if g.caps.f16 { wgkv::reference::attention::round_f16(x) } else { x.to_vec() }
}

/// `n` kv_t values of `buf` as f32.
pub fn read_kv(g: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    if g.caps.f16 {
        let b = g.readback(buf, 0, (2 * n).next_multiple_of(4) as u64);
        b.chunks_exact(2).take(n).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
    } else {
        g.read_f32(buf, n)
    }
}

/// Asserts that loading `w` with a `ctx`-token cache under each spec fails
/// with an error containing its needle.
pub fn assert_load_errors(g: &Arc<Gpu>, w: &wgkv::weights::Weights, ctx: usize, cases: &[(&str, &str)]) {
    for &(spec, want) in cases {
        let e = match wgkv::model::Model::load(g.clone(), w, ctx, wgkv::kv::KvSpec::parse(spec).unwrap()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{spec} was accepted"),
        };
        assert!(e.contains(want), "{spec}: {e}");
    }
}

/// The logits of a `Readout::Logits` forward.
pub fn logits(o: Output) -> Vec<f32> {
    match o {
        Output::Logits(v) => v,
        other => panic!("expected logits, got {other:?}"),
    }
}

/// The index of the largest value (the first where several are).
pub fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}
