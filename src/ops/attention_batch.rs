//! A batched decode step's attention over several sequences' dense caches
//! in two dispatches per layer: `attn_decode_batch` stores each sequence's
//! new K/V row in its own cache and runs the lanes form of flash-decoding's
//! first half for every (chunk, KV head, sequence), and one `attn_merge`
//! over the batch's query rows finishes it. Each sequence's cache is its
//! own pair of bindings, so a dispatch serves at most [`max_sequences`] of
//! them.

use super::attention::{AttnShape, DECODE_LANES, attn_merge};
use crate::gpu::Gpu;
use crate::kernels::{BATCH, Dispatch, Kernel, Spec};
use bytemuck::{Pod, Zeroable};

/// Per sequence in the `seqs` uniform: its cache's slots after the step's
/// append (`kv_len`) and its slots per KV head (`max_seq`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SeqEntry {
    pub kv_len: u32,
    pub max_seq: u32,
    pub _p: [u32; 2],
}

/// Bytes of the `seqs` uniform for `n` sequences.
pub fn seqs_bytes(n: usize) -> u64 {
    (n * size_of::<SeqEntry>()) as u64
}

/// Most sequences one batched dispatch can bind on `gpu`: two cache
/// bindings each, beside the kernel's own five storage buffers, in a power
/// of two of pairs ([`bindings`]).
pub fn max_sequences(gpu: &Gpu) -> usize {
    let pairs = (gpu.caps.max_storage_buffers.saturating_sub(5) / 2) as usize;
    if pairs == 0 { 0 } else { 1 << pairs.ilog2() }
}

/// The decode chunks (per KV head) a batch whose largest cache holds
/// `max_seq` slots per head needs: as a one-sequence decode of that cache.
pub fn n_split(shape: &AttnShape, max_seq: u32) -> u32 {
    AttnShape { max_seq, ..*shape }.n_split()
}

pub fn decode_batch_spec(s: &AttnShape, n: u32) -> Spec {
    let spec = Spec::new(Kernel::AttnDecodeBatch).with("LANES", DECODE_LANES).with("HEAD_DIM", s.head_dim).with("GROUP", s.group());
    s.options(spec.with("CHUNK", s.decode_chunk()).with(BATCH, n))
}

/// Cache binding pairs of the kernel that serves `n` sequences: the next
/// power of two, so that four pipelines per shape serve every batch (each
/// one costs lavapipe seconds to compile).
pub fn bindings(n: usize) -> u32 {
    n.next_power_of_two() as u32
}

/// The specs the engine may build: the real models' shapes, 1 to 8 sequences.
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for (head_dim, g) in [(64, 3), (64, 7), (256, 4), (16, 2)] {
        let s = AttnShape { n_heads: g, n_kv_heads: 1, head_dim, max_seq: 1, ..Default::default() };
        for n in [1, 2, 4, 8] {
            v.push(decode_batch_spec(&s, bindings(n)));
        }
    }
    v
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DecodeParams {
    n_heads: u32,
    n_kv_heads: u32,
    n_split: u32,
    part_stride: u32,
    scale: f32,
    _p: [u32; 3],
}

/// The partial and merge buffers of a batch's attention.
pub struct BatchScratch<'a> {
    /// `[rows][n_split][head_dim]` f32, rows = sequence * n_heads + head.
    pub part_o: &'a wgpu::Buffer,
    /// `[rows][n_split]` (m, l).
    pub part_ml: &'a wgpu::Buffer,
    /// `[rows]` log-sum-exp.
    pub lse: &'a wgpu::Buffer,
    pub n_split: u32,
}

impl BatchScratch<'_> {
    /// Bytes of `part_o` and `part_ml` for `rows` query rows.
    pub fn bytes(shape: &AttnShape, rows: u32, n_split: u32) -> (u64, u64) {
        let parts = rows as u64 * n_split as u64;
        (parts * shape.head_dim as u64 * 4, parts * 8)
    }
}

/// Each of `caches.len()` sequences' step: its token's K and V (row `b` of
/// `k_new` / `v_new`, `[b][n_kv_heads * head_dim]` f32) stored at slot
/// `seqs[b].kv_len - 1` of its cache, and its query (row `b` of `q`,
/// `[b][n_heads * head_dim]`) attending the cache's `seqs[b].kv_len` slots,
/// into rows `b * n_heads ..` of `out` (and `lse`): the partial dispatch,
/// then the merge, which finishes the first `step.n_tokens` sequences' rows.
#[allow(clippy::too_many_arguments)]
pub fn attn_decode_batch(
    gpu: &Gpu,
    shape: &AttnShape,
    q: &wgpu::Buffer,
    k_new: &wgpu::Buffer,
    v_new: &wgpu::Buffer,
    caches: &[(&wgpu::Buffer, &wgpu::Buffer)],
    seqs: &wgpu::Buffer,
    scratch: &BatchScratch,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> [Dispatch; 2] {
    let n = caches.len() as u32;
    let ns = scratch.n_split;
    let params = DecodeParams { n_heads: shape.n_heads, n_kv_heads: shape.n_kv_heads, n_split: ns, part_stride: ns, scale: shape.scale(), _p: [0; 3] };
    let params = gpu.uniform("attn_decode_batch.params", bytemuck::bytes_of(&params));
    let mut bufs = vec![q, k_new, v_new, scratch.part_o, scratch.part_ml, &params, seqs];
    let pairs = bindings(caches.len());
    let last = caches.last().expect("a batch of at least one sequence");
    bufs.extend(caches.iter().chain(std::iter::repeat_n(last, pairs as usize - caches.len())).flat_map(|&(k, v)| [k, v]));
    let partial = gpu.dispatch(&decode_batch_spec(shape, pairs), &bufs, [ns, shape.n_kv_heads, n]);
    let merge = attn_merge(gpu, shape, n * shape.n_heads, scratch.part_o, scratch.part_ml, ns, out, scratch.lse, step);
    [partial, merge]
}
