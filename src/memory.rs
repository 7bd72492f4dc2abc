//! Device memory: how much a model at a context needs, checked against what
//! the device has before anything large is allocated, and GPU errors caught
//! around allocation (error scopes) and reported as one line.
//!
//! wgpu reports no memory size. Where the device's memory is the system's
//! (a CPU adapter such as lavapipe, or an integrated GPU) the available
//! system memory is the bound; elsewhere the user may state it with
//! `--gpu-memory`, and without it only the allocation's own errors remain.

use crate::config::ModelConfig;
use crate::gpu::{Caps, Gpu, STAGING_LIMIT, storage_size, uniform_size};
use crate::kv::{KvCache, KvSpec, MAX_CHUNK};
use crate::ops::{Step, sample};
use crate::{Error, Result};

/// Bytes a model needs on the device, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub weights: u64,
    /// Everything the KV cache allocates ([`KvCache::bytes_for`]): the
    /// dense slots, every policy part's buffers, the attention scratch.
    pub kv: u64,
    /// What the KV cache may add as it fills ([`KvCache::growth_for`]:
    /// Mustafar's pools at their worst case).
    pub kv_growth: u64,
    /// Dense KV bytes per slot (all layers, K and V).
    pub kv_per_slot: u64,
    /// Activations for one prefill chunk, the readouts (logits, argmax,
    /// top-k, the readback buffer) and the step uniform.
    pub buffers: u64,
    /// The load's transient peak: staging copies of queued weight writes,
    /// which the upload submits whenever they would pass
    /// [`STAGING_LIMIT`] (so at most that much, or the weights if fewer);
    /// gone once the load returns.
    pub staging: u64,
}

impl Need {
    /// What a model of `cfg` with `weights` bytes of weights needs at
    /// `ctx` tokens under `spec` on an adapter with `caps`.
    pub fn new(cfg: &ModelConfig, weights: u64, spec: &KvSpec, ctx: usize, caps: &Caps) -> Result<Need> {
        let elem = if caps.f16 { 2 } else { 4 };
        let kv_per_slot = 2 * cfg.n_layers as u64 * (cfg.n_kv_heads * cfg.head_dim) as u64 * elem;
        let topk = sample::topk_words(sample::TOPK_K);
        let storage = acts(cfg, MAX_CHUNK).into_iter().chain(readouts(cfg, topk)).map(|(_, b)| storage_size(b)).sum::<u64>();
        let buffers = storage + uniform_size(size_of::<Step>() as u64);
        let kv = KvCache::bytes_for(spec, cfg, ctx, caps)?;
        let kv_growth = KvCache::growth_for(spec, cfg, ctx, caps)?;
        Ok(Need { weights, kv, kv_growth, kv_per_slot, buffers, staging: weights.min(STAGING_LIMIT) })
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.kv_growth + self.buffers + self.staging
    }
}

/// The model's activations for `n` tokens: (label, requested bytes).
pub fn acts(c: &ModelConfig, n: usize) -> [(&'static str, u64); 11] {
    let f = |label, per_token: usize| (label, (4 * n * per_token) as u64);
    let q_dim = c.n_heads * c.head_dim;
    let kv_dim = c.n_kv_heads * c.head_dim;
    [
        f("ids", 1),
        f("x", c.dim),
        f("xn", c.dim),
        f("q", q_dim),
        f("k", kv_dim),
        f("v", kv_dim),
        f("att", q_dim),
        f("gate", c.hidden_dim),
        f("up", c.hidden_dim),
        f("hb", c.hidden_dim),
        // The decode step's folded norm: partial sums of squares (ops::linear::NormIn).
        ("norm_parts", 4 * crate::kernels::NORM_PARTS_MAX as u64),
    ]
}

/// The model's readout buffers for `topk_words` words of top-k: the last
/// token's state, logits, argmax, top-k and the readback (staging) buffer.
pub fn readouts(c: &ModelConfig, topk_words: usize) -> [(&'static str, u64); 5] {
    [
        // At least what a uniform-x matvec binds (the LM head's input).
        ("last", (4 * c.dim as u64).max(crate::ops::linear::X_UNIFORM_BYTES)),
        ("logits", 4 * c.vocab_size as u64),
        ("best", 4 * sample::ARGMAX_WORDS as u64),
        ("topk", 4 * topk_words as u64),
        ("readback", 4 * c.vocab_size.max(topk_words) as u64),
    ]
}

/// Device memory in bytes and where the figure comes from, if known:
/// `stated` (the user's `--gpu-memory`), else the system's available
/// memory for adapters that use it.
pub fn available(gpu: &Gpu, stated: Option<u64>) -> Option<(u64, String)> {
    if let Some(b) = stated {
        return Some((b, "--gpu-memory".into()));
    }
    match gpu.info.device_type {
        wgpu::DeviceType::Cpu | wgpu::DeviceType::IntegratedGpu => {
            system_available().map(|b| (b, format!("available system memory, which a {:?} adapter uses", gpu.info.device_type)))
        }
        _ => None,
    }
}

/// MemAvailable from /proc/meminfo (Linux); None elsewhere.
fn system_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
}

/// Fails, saying what to lower, when the model at `ctx` needs more than
/// `avail` bytes; `need_at(c)` is what it needs at context `c`. The largest
/// context that would fit is suggested, in whole 256-token steps.
pub fn check(need_at: impl Fn(usize) -> Result<Need>, avail: Option<(u64, String)>, ctx: usize) -> Result<()> {
    let Some((avail, source)) = avail else { return Ok(()) };
    let need = need_at(ctx)?;
    if need.total() <= avail {
        return Ok(());
    }
    let head = format!(
        "the model needs about {} of GPU memory (weights {}, KV cache {} at --ctx {ctx}, buffers {}) but {} are available ({source})",
        mib(need.total()),
        mib(need.weights),
        mib(need.kv),
        mib(need.buffers),
        mib(avail)
    );
    let fits = |c: usize| need_at(c).is_ok_and(|n| n.total() <= avail);
    let (mut lo, mut hi) = (0, ctx / 256); // in 256-token steps: lo fits (or is 0), hi does not
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid * 256) { lo = mid } else { hi = mid }
    }
    if lo == 0 {
        return Err(Error::msg(format!("{head}: even a 256-token context does not fit; use a smaller or more quantized model")));
    }
    Err(Error::msg(format!("{head}: lower --ctx to at most {}, or choose a --kv policy with a smaller budget", lo * 256)))
}

/// Run `f` (which creates GPU objects) inside out-of-memory and validation
/// error scopes; an error either caught becomes one line naming `what`.
pub fn scoped<T>(gpu: &Gpu, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let (out, caught) = gpu.catch(f);
    if let Some(e) = caught.out_of_memory {
        return Err(Error::msg(format!("out of GPU memory while {what} ({e}): lower --ctx, choose a smaller --kv budget or a smaller model")));
    }
    if let Some(e) = caught.validation {
        return Err(Error::msg(format!("GPU validation error while {what}: {e}")));
    }
    out
}
