//! Launch builders for eviction: the attention scores a policy accumulates,
//! the per-slot score it ranks by, the per-head selection of kept slots,
//! DynamicKV's global ranking, and compaction of a layer's cache to the
//! kept slots.

use super::attention::{AttnShape, WG};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Dispatch, Kernel, Spec, grid_1d};
use bytemuck::{Pod, Zeroable};

/// Most slots a compaction keeps per KV head: one kv_compact invocation walks
/// them all, and llvmpipe stops an invocation's loops after 65535 iterations.
pub const MAX_KEEP: u32 = 65536 - 1024;
/// Most layers `evict_budget` ranks at once.
pub const MAX_LAYERS: u32 = 256;
/// Most query rows `attn_accum` sums per call (a prefill chunk).
pub const MAX_ROWS: u32 = 512;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CompactParams {
    n_kv_heads: u32,
    max_seq: u32,
    max_keep: u32,
    has_acc: u32,
}

fn expand_spec(s: &AttnShape) -> Spec {
    s.cache_format(Spec::new(Kernel::KiviExpand).with("WG", WG).with("HEAD_DIM", s.head_dim))
}

fn repack_spec(s: &AttnShape) -> Spec {
    s.cache_format(Spec::new(Kernel::KiviRepack).with("WG", WG).with("HEAD_DIM", s.head_dim))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct KiviParams {
    n_kv_heads: u32,
    _p: [u32; 3],
}

/// A KIVI cache's compaction to the kept slots (`shape.kivi`): its slots
/// as dense `kv_t` rows in `tk` / `tv` (`kivi_expand`, the cached length in
/// `step`'s `kv_len`, `n_tokens` 0), those gathered by `kv_compact` (with
/// the scores in `acc`), then quantized again below the new boundary and
/// staged past it (`kivi_repack`). `tk` / `tv`: `shape.compacted()`'s cache
/// bytes each.
#[allow(clippy::too_many_arguments)]
pub fn kivi_compaction(
    gpu: &Gpu,
    shape: &AttnShape,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    temp: [&wgpu::Buffer; 2],
    keep: &wgpu::Buffer,
    counts: &wgpu::Buffer,
    acc: Option<&wgpu::Buffer>,
    step: &wgpu::Buffer,
    max_keep: u32,
) -> Result<Vec<Dispatch>> {
    let s = shape;
    let params = gpu.uniform("kivi.params", bytemuck::bytes_of(&KiviParams { n_kv_heads: s.n_kv_heads, _p: [0; 3] }));
    let d4 = s.head_dim / 4;
    let expand = gpu.dispatch(&expand_spec(s), &[k_cache, v_cache, temp[0], temp[1], &params, step], grid_1d((s.n_kv_heads * s.max_seq * d4).div_ceil(WG)));
    let compact = kv_compact(gpu, &s.compacted(), temp[0], temp[1], keep, counts, acc, max_keep)?;
    let cw = s.head_dim * s.kivi / 32;
    let jobs = s.kivi_nq() / s.kivi_group * cw + s.kivi_nq() * (s.head_dim / s.kivi_gv()) + (s.kivi_sink + s.kivi_res) * d4;
    let repack = gpu.dispatch(&repack_spec(s), &[k_cache, v_cache, temp[0], temp[1], counts, &params], grid_1d((s.n_kv_heads * jobs).div_ceil(WG)));
    Ok(vec![expand, compact, repack])
}

fn compact_spec(s: &AttnShape) -> Spec {
    s.cache_format(Spec::new(Kernel::KvCompact).with("WG", WG).with("HEAD_DIM", s.head_dim))
}

/// The eviction scores, with the attention core's options of `s`: the same
/// scores (softcap) and visible slots (window) as the attention kernels.
fn accum_spec(s: &AttnShape) -> Spec {
    s.options(Spec::new(Kernel::AttnAccum).with("WG", WG).with("HEAD_DIM", s.head_dim).with("GROUP", s.group()))
}

fn score_spec(s: &AttnShape) -> Spec {
    s.cache_format(Spec::new(Kernel::EvictScore).with("WG", WG).with("HEAD_DIM", s.head_dim))
}

pub fn specs() -> Vec<Spec> {
    let mut v = vec![Spec::new(Kernel::EvictSelect), Spec::new(Kernel::EvictBudget)];
    for s in super::attention::spec_shapes().into_iter().chain(super::attention::quant_spec_shapes()) {
        v.extend([compact_spec(&s.compacted()), score_spec(&s), accum_spec(&s)]);
        if s.kivi > 0 {
            v.extend([expand_spec(&s), repack_spec(&s)]);
        }
    }
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AccumParams {
    max_seq: u32,
    scale: f32,
    rows: u32,
    set: u32,
}

/// How `attn_accum` treats the scores already in `acc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    /// Add this call's probabilities (H2O, VATP).
    Add,
    /// Replace them (an observation window's scores).
    Set,
}

/// The attention probabilities the call's last `rows` query rows gave every
/// slot below `step.kv_len`, summed over the rows and each KV group's query
/// heads, added to or written over `acc` (`[n_kv_heads][max_seq]` f32):
/// H2O's accumulated attention, SnapKV's window scores. `q`: the call's
/// queries; `lse`: per (token, query head), as the attention kernels wrote it.
#[allow(clippy::too_many_arguments)]
pub fn attn_accum(
    gpu: &Gpu,
    shape: &AttnShape,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    step: &wgpu::Buffer,
    rows: u32,
    mode: Accum,
) -> Dispatch {
    let params = AccumParams { max_seq: shape.max_seq, scale: shape.scale(), rows: rows.min(MAX_ROWS), set: (mode == Accum::Set) as u32 };
    let params = gpu.uniform("attn_accum.params", bytemuck::bytes_of(&params));
    gpu.dispatch(&accum_spec(shape), &[q, k_cache, lse, acc, &params, step], [shape.max_seq.div_ceil(WG), shape.n_kv_heads, 1])
}

/// What `evict_score` ranks slots by (its `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreMode {
    /// The accumulated attention (H2O).
    Attention = 0,
    /// Accumulated attention times the value's L1 norm (VATP).
    ValueAware = 1,
    /// The negated key L2 norm (Knorm).
    KeyNorm = 2,
    /// The window scores max-pooled over `2r + 1` slots (SnapKV's family).
    MaxPool = 3,
    /// The window scores average-pooled over `2r + 1` slots.
    AvgPool = 4,
}

/// `evict_score`'s parameters, written by the host before each ranking.
/// The three eviction kernels read their parameters from a storage buffer
/// (`Gpu::upload`), not a uniform: lavapipe inlines small uniforms into the
/// shader and keeps a compiled variant per value, so values that change with
/// every cut grew the process by megabytes per cut (`wgkv eval soak`).
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct ScoreParams {
    pub max_seq: u32,
    /// Cached slots.
    pub len: u32,
    /// Slots before the observation window (pooling stays below it).
    pub prefix: u32,
    pub mode: u32,
    /// Pooling radius: the kernel is `2 * radius + 1` slots.
    pub radius: u32,
    /// Where this layer's rows start in the score buffer (f32 words).
    pub out_base: u32,
    pub _p: [u32; 2],
}

/// Write one layer's slot scores (see `ScoreMode`) from its caches and
/// accumulated attention `acc` into `score` at `params.out_base`.
pub fn evict_score(
    gpu: &Gpu,
    shape: &AttnShape,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    score: &wgpu::Buffer,
    params: &wgpu::Buffer,
) -> Dispatch {
    gpu.dispatch(&score_spec(shape), &[k_cache, v_cache, acc, score, params], [shape.max_seq.div_ceil(WG), shape.n_kv_heads, 1])
}

/// `evict_select`'s parameters, written by the host before each selection.
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct SelectParams {
    pub max_seq: u32,
    /// Cached slots.
    pub len: u32,
    /// Slots to keep per KV head.
    pub keep: u32,
    /// First slots always kept.
    pub sinks: u32,
    /// Last slots always kept.
    pub recent: u32,
    /// Row stride of the kept list.
    pub max_keep: u32,
    /// Where this layer's rows start in the score buffer (f32 words).
    pub score_base: u32,
    pub _p: u32,
}

/// Per KV head, the `keep` best-scored slots (sinks and recent slots first,
/// ties to the later slot) listed in increasing order in `list`
/// (`[n_kv_heads][max_keep]`), their count in `counts`.
pub fn evict_select(gpu: &Gpu, shape: &AttnShape, score: &wgpu::Buffer, list: &wgpu::Buffer, counts: &wgpu::Buffer, params: &wgpu::Buffer) -> Dispatch {
    gpu.dispatch(&Spec::new(Kernel::EvictSelect), &[score, list, counts, params], [1, shape.n_kv_heads, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BudgetParams {
    pub max_seq: u32,
    pub n_kv_heads: u32,
    /// Layers ranked (0 .. n_layers).
    pub n_layers: u32,
    /// Scores in the global top.
    pub keep: u32,
}

/// DynamicKV's ranking over layers `0 .. params.n_layers` of `score`
/// (`[layers][n_kv_heads][max_seq]`, slots below `prefix[l]`): per layer, how
/// many of its scores reach the `keep`-th largest overall, into `counts`.
pub fn evict_budget(
    gpu: &Gpu,
    shape: &AttnShape,
    n_layers: u32,
    score: &wgpu::Buffer,
    prefix: &wgpu::Buffer,
    counts: &wgpu::Buffer,
    params: &wgpu::Buffer,
) -> Result<Dispatch> {
    let keys = n_layers as u64 * shape.n_kv_heads as u64 * shape.max_seq as u64;
    // Five walks of ceil(keys / 256) each stay under llvmpipe's loop cap.
    if n_layers > MAX_LAYERS || 5 * keys.div_ceil(256) > MAX_KEEP as u64 {
        return Err(Error::msg(format!(
            "dynamic allocation ranks at most {MAX_LAYERS} layers and {} scores at once ({n_layers} layers of {} slots asked: lower --ctx)",
            MAX_KEEP as u64 / 5 * 256,
            shape.max_seq
        )));
    }
    Ok(gpu.dispatch(&Spec::new(Kernel::EvictBudget), &[score, prefix, counts, params], [1, 1, 1]))
}

/// Gather slots `keep[h][i]` (`[n_kv_heads][max_keep]` u32, strictly
/// increasing per head) to slots `i < counts[h]` of one layer's caches, and,
/// given `acc` (`[n_kv_heads][max_seq]` f32 scores), its scores likewise,
/// zeroing the freed ones.
#[allow(clippy::too_many_arguments)]
pub fn kv_compact(
    gpu: &Gpu,
    shape: &AttnShape,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    keep: &wgpu::Buffer,
    counts: &wgpu::Buffer,
    acc: Option<&wgpu::Buffer>,
    max_keep: u32,
) -> Result<Dispatch> {
    if max_keep > MAX_KEEP || shape.max_seq > MAX_KEEP {
        return Err(Error::msg(format!("eviction: keeping {max_keep} slots per layer is above the {MAX_KEEP} supported")));
    }
    let params = CompactParams { n_kv_heads: shape.n_kv_heads, max_seq: shape.max_seq, max_keep, has_acc: acc.is_some() as u32 };
    let params = gpu.uniform("kv_compact.params", bytemuck::bytes_of(&params));
    let placeholder;
    let acc = match acc {
        Some(a) => a,
        None => {
            placeholder = gpu.buffer("kv_compact.no_acc", 16);
            &placeholder
        }
    };
    Ok(gpu.dispatch(&compact_spec(shape), &[k_cache, v_cache, keep, counts, acc, &params], grid_1d((shape.n_kv_heads * shape.row_units()).div_ceil(WG))))
}
