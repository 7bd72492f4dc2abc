//! Launch builders for the weight-reading kernels: matrix-vector product
//! (decode), tiled matrix-matrix product (prefill) and embedding lookup.
//!
//! Weights are the raw GGUF bytes of a row-major `[rows, cols]` matrix in
//! one storage buffer, decoded inside the kernels by the weight type's
//! fragment (`shaders/quant/<type>.wgsl`). Shapes must pass
//! `quant::check_shape` (loaders call it and return the error; the builders
//! here assert it).
//!
//! Token counts: `matmul` and `embed` take the shared `ops::Step` uniform
//! as their last binding and process `min(step.n_tokens, n_tokens)` tokens,
//! where `n_tokens` is what the buffers hold. Their bind groups therefore
//! never change; a call with fewer tokens only writes the Step buffer and
//! may re-record with `matmul_groups` / `embed_groups` to skip idle
//! workgroups (those exit at once anyway).

#![allow(clippy::too_many_arguments)]

use crate::gpu::Gpu;
use crate::kernels::{grid_1d, Dispatch, Kernel, Spec};
use crate::quant::{check_shape, WType};
use bytemuck::{Pod, Zeroable};

/// Matvec parallelisation: `threads_per_row` invocations share a row
/// (striding over its 32-weight chunks, then a workgroup-memory reduction),
/// `rows_per_group` rows per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecShape {
    pub threads_per_row: u32,
    pub rows_per_group: u32,
}

/// CPU adapters (lavapipe runs a workgroup as SIMD loops, where barriers
/// and idle lanes are expensive): a whole row per invocation, no reduction.
pub const MATVEC_CPU: MatvecShape = MatvecShape { threads_per_row: 1, rows_per_group: 64 };
/// GPUs: 8 invocations per row so that short rows still spread over many
/// lanes, 8 rows per 64-invocation workgroup.
pub const MATVEC_GPU: MatvecShape = MatvecShape { threads_per_row: 8, rows_per_group: 8 };

/// Matmul tile: `tile_rows` weight rows x `tile_tokens` tokens per
/// workgroup, 4x4 outputs per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub tile_rows: u32,
    pub tile_tokens: u32,
}

pub const MATMUL_CPU: MatmulShape = MatmulShape { tile_rows: 32, tile_tokens: 32 };
pub const MATMUL_GPU: MatmulShape = MatmulShape { tile_rows: 64, tile_tokens: 64 };

/// Invocations per embed workgroup (each writes one 32-element chunk).
pub const EMBED_WG: u32 = 64;

impl MatvecShape {
    pub fn for_gpu(gpu: &Gpu) -> MatvecShape {
        if gpu.caps.cpu { MATVEC_CPU } else { MATVEC_GPU }
    }
}

impl MatmulShape {
    pub fn for_gpu(gpu: &Gpu) -> MatmulShape {
        if gpu.caps.cpu { MATMUL_CPU } else { MATMUL_GPU }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatvecParams {
    rows: u32,
    cols: u32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    _p: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    vocab: u32,
    dim: u32,
    n_tokens: u32,
    _p: u32,
}

#[track_caller]
fn assert_shape(w: WType, rows: u32, cols: u32) {
    if let Err(e) = check_shape(w, rows as usize, cols as usize) {
        panic!("weight shape not checked by the loader: {e}");
    }
}

fn matvec_spec(w: WType, s: MatvecShape, accum: bool) -> Spec {
    Spec::new(Kernel::Matvec)
        .weights(w)
        .with("TPR", s.threads_per_row)
        .with("RPW", s.rows_per_group)
        .with("ACCUM", accum as u32)
}

fn matmul_spec(w: WType, s: MatmulShape, accum: bool) -> Spec {
    Spec::new(Kernel::Matmul)
        .weights(w)
        .with("TR", s.tile_rows)
        .with("TT", s.tile_tokens)
        .with("ACCUM", accum as u32)
}

fn embed_spec(w: WType) -> Spec {
    Spec::new(Kernel::Embed).weights(w).with("WG", EMBED_WG)
}

/// `y[r] = sum_k W[r, k] x[k]` (or `y[r] += ...` with `accum`, the fused
/// residual of the attention-output and FFN-down projections), one token.
/// `w`: `[rows, cols]` of type `wtype`; `x`: `cols` f32; `y`: `rows` f32.
pub fn matvec(
    gpu: &Gpu,
    wtype: WType,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: u32,
    cols: u32,
    accum: bool,
) -> Dispatch {
    matvec_with(gpu, MatvecShape::for_gpu(gpu), wtype, w, x, y, rows, cols, accum)
}

/// `matvec` with an explicit parallelisation (tests exercise both).
pub fn matvec_with(
    gpu: &Gpu,
    shape: MatvecShape,
    wtype: WType,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: u32,
    cols: u32,
    accum: bool,
) -> Dispatch {
    assert_shape(wtype, rows, cols);
    let params = gpu.uniform("matvec.params", bytemuck::bytes_of(&MatvecParams { rows, cols, _p: [0; 2] }));
    let groups = grid_1d(rows.div_ceil(shape.rows_per_group));
    gpu.dispatch(&matvec_spec(wtype, shape, accum), &[w, x, y, &params], groups)
}

/// `Y[t, r] = sum_k W[r, k] X[t, k]` (or `+=` with `accum`) for the first
/// `min(step.n_tokens, n_tokens)` tokens. `x`: `[n_tokens, cols]` f32,
/// `y`: `[n_tokens, rows]` f32, `step`: the `ops::Step` uniform.
pub fn matmul(
    gpu: &Gpu,
    wtype: WType,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    rows: u32,
    cols: u32,
    n_tokens: u32,
    accum: bool,
) -> Dispatch {
    matmul_with(gpu, MatmulShape::for_gpu(gpu), wtype, w, x, y, step, rows, cols, n_tokens, accum)
}

/// `matmul` with an explicit tile (tests exercise both).
pub fn matmul_with(
    gpu: &Gpu,
    shape: MatmulShape,
    wtype: WType,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    rows: u32,
    cols: u32,
    n_tokens: u32,
    accum: bool,
) -> Dispatch {
    assert_shape(wtype, rows, cols);
    let params = gpu.uniform("matmul.params", bytemuck::bytes_of(&MatmulParams { rows, cols, n_tokens, _p: 0 }));
    let groups = matmul_groups_for(shape, rows, n_tokens);
    gpu.dispatch(&matmul_spec(wtype, shape, accum), &[w, x, y, &params, step], groups)
}

/// The grid of a `matmul` dispatch on `gpu` covering `n_tokens` tokens
/// (for `Dispatch::record_groups` when a call has fewer tokens than the buffers).
pub fn matmul_groups(gpu: &Gpu, rows: u32, n_tokens: u32) -> [u32; 3] {
    matmul_groups_for(MatmulShape::for_gpu(gpu), rows, n_tokens)
}

fn matmul_groups_for(s: MatmulShape, rows: u32, n_tokens: u32) -> [u32; 3] {
    [rows.div_ceil(s.tile_rows), n_tokens.div_ceil(s.tile_tokens), 1]
}

/// `out[t, :] = table[ids[t], :]` dequantized to f32, for the first
/// `min(step.n_tokens, n_tokens)` ids. `table`: `[vocab, dim]` of type
/// `wtype`; `ids`: `n_tokens` u32; `out`: `[n_tokens, dim]` f32. An id
/// `>= vocab` yields a row of zeros (the host validates ids before upload;
/// this only keeps a bad id from reading another tensor's bytes).
pub fn embed(
    gpu: &Gpu,
    wtype: WType,
    table: &wgpu::Buffer,
    ids: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    vocab: u32,
    dim: u32,
    n_tokens: u32,
) -> Dispatch {
    assert_shape(wtype, vocab, dim);
    let params = gpu.uniform("embed.params", bytemuck::bytes_of(&EmbedParams { vocab, dim, n_tokens, _p: 0 }));
    gpu.dispatch(&embed_spec(wtype), &[table, ids, out, &params, step], embed_groups(dim, n_tokens))
}

/// The grid of an `embed` dispatch covering `n_tokens` tokens.
pub fn embed_groups(dim: u32, n_tokens: u32) -> [u32; 3] {
    grid_1d((n_tokens * dim.div_ceil(32)).div_ceil(EMBED_WG))
}

/// Every specialisation this file can create: all weight types, both
/// parallelisations, with and without the fused residual.
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for &w in WType::ALL {
        for accum in [false, true] {
            for s in [MATVEC_CPU, MATVEC_GPU] {
                v.push(matvec_spec(w, s, accum));
            }
            for s in [MATMUL_CPU, MATMUL_GPU] {
                v.push(matmul_spec(w, s, accum));
            }
        }
        v.push(embed_spec(w));
    }
    v
}
