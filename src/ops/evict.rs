//! Launch builders for eviction: compaction of a layer's cache to the slots
//! a policy keeps.

use super::attention::{AttnShape, WG};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{grid_1d, Dispatch, Kernel, Spec};
use bytemuck::{Pod, Zeroable};

/// Most slots a compaction keeps per KV head: one kv_compact invocation walks
/// them all, and llvmpipe stops an invocation's loops after 65535 iterations.
pub const MAX_KEEP: u32 = 65536 - 1024;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CompactParams {
    n_kv_heads: u32,
    max_seq: u32,
    max_keep: u32,
    _p: u32,
}

fn compact_spec(head_dim: u32) -> Spec {
    Spec::new(Kernel::KvCompact).with("WG", WG).with("HEAD_DIM", head_dim)
}

fn accum_spec(head_dim: u32, group: u32) -> Spec {
    Spec::new(Kernel::AttnAccum).with("WG", WG).with("HEAD_DIM", head_dim).with("GROUP", group)
}

pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for &hd in super::attention::SPEC_HEAD_DIMS {
        v.push(compact_spec(hd));
        for &g in super::attention::SPEC_GROUPS {
            v.push(accum_spec(hd, g));
        }
    }
    v
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AccumParams {
    max_seq: u32,
    scale: f32,
    _p: [u32; 2],
}

/// Add the decode step's attention probabilities, summed over each KV
/// group's query heads, to `acc` (`[n_kv_heads][max_seq]` f32) for every
/// slot below `step.kv_len`: H2O's accumulated attention. `q`: the step's
/// query (row 0); `lse`: per query head, as `attn_decode` wrote it.
pub fn attn_accum(
    gpu: &Gpu,
    shape: &AttnShape,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let params = AccumParams { max_seq: shape.max_seq, scale: shape.scale(), _p: [0; 2] };
    let params = gpu.uniform("attn_accum.params", bytemuck::bytes_of(&params));
    gpu.dispatch(
        &accum_spec(shape.head_dim, shape.group()),
        &[q, k_cache, lse, acc, &params, step],
        [shape.max_seq.div_ceil(WG), shape.n_kv_heads, 1],
    )
}

/// Gather slots `keep[h][i]` (`[n_kv_heads][max_keep]` u32, strictly
/// increasing per head) to slots `i < counts[h]` of one layer's caches.
pub fn kv_compact(
    gpu: &Gpu,
    shape: &AttnShape,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    keep: &wgpu::Buffer,
    counts: &wgpu::Buffer,
    max_keep: u32,
) -> Result<Dispatch> {
    if max_keep > MAX_KEEP {
        return Err(Error::msg(format!("eviction: keeping {max_keep} slots per layer is above the {MAX_KEEP} supported")));
    }
    let params = CompactParams { n_kv_heads: shape.n_kv_heads, max_seq: shape.max_seq, max_keep, _p: 0 };
    let params = gpu.uniform("kv_compact.params", bytemuck::bytes_of(&params));
    Ok(gpu.dispatch(
        &compact_spec(shape.head_dim),
        &[k_cache, v_cache, keep, counts, &params],
        grid_1d((shape.n_kv_heads * shape.head_dim / 4).div_ceil(WG)),
    ))
}
