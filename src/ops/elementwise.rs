//! Launch builders for embedding, RMSNorm, RoPE, SwiGLU and residual add.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Dispatch, Kernel, Spec, grid_1d};
use bytemuck::{Pod, Zeroable};

pub const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AddParams {
    n: u32,
    _p: [u32; 3],
}

/// `x[i] += y[i]` for `i < n`.
pub fn add(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32) -> Dispatch {
    let params = gpu.uniform("add.params", bytemuck::bytes_of(&AddParams { n, _p: [0; 3] }));
    gpu.dispatch(&Spec::new(Kernel::Add).with("WG", WG), &[x, y, &params], grid_1d(n.div_ceil(WG)))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RmsNormParams {
    n_tokens: u32,
    dim: u32,
    eps: f32,
    _p: u32,
}

/// `out[t] = rmsnorm(x[t]) * weight` for `n_tokens` rows of `dim`.
pub fn rmsnorm(gpu: &Gpu, x: &wgpu::Buffer, weight: &wgpu::Buffer, out: &wgpu::Buffer, n_tokens: u32, dim: u32, eps: f32) -> Dispatch {
    let params = gpu.uniform("rmsnorm.params", bytemuck::bytes_of(&RmsNormParams { n_tokens, dim, eps, _p: 0 }));
    gpu.dispatch(&Spec::new(Kernel::RmsNorm).with("WG", WG), &[x, weight, out, &params], [n_tokens, 1, 1])
}

/// Which dims RoPE rotates together: the one place the layout is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// GGUF / llama.cpp "normal": pairs (x[2j], x[2j + 1]).
    Interleaved,
    /// Hugging Face / NeoX: pairs (x[j], x[j + rot_dim / 2]).
    HalfSplit,
}

/// Shape of one RoPE application.
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub n_heads: u32,
    pub head_dim: u32,
    /// Leading dims of each head that rotate (`head_dim` for full rotary); even.
    pub rot_dim: u32,
    /// Frequency base (theta), e.g. 100000.
    pub base: f64,
    pub layout: RopeLayout,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    n_heads: u32,
    head_dim: u32,
    rot_dim: u32,
    max_tokens: u32,
}

/// Per-pair frequencies in turns (theta_j / 2pi per position), computed in
/// f64 and split as (hi, mid, lo, 0) with hi and mid holding 12 significant
/// bits each, so the shader forms exact products with 12-bit halves of the
/// position (see shaders/rope.wgsl for the error analysis).
pub fn rope_freqs(rot_dim: u32, base: f64) -> Vec<[f32; 4]> {
    let top12 = |v: f64| f32::from_bits((v as f32).to_bits() & !0xFFF);
    (0..rot_dim / 2)
        .map(|j| {
            let turns = base.powf(-2.0 * j as f64 / rot_dim as f64) / std::f64::consts::TAU;
            let hi = top12(turns);
            let mid = top12(turns - hi as f64);
            [hi, mid, (turns - hi as f64 - mid as f64) as f32, 0.0]
        })
        .collect()
}

/// RoPE in place on `x` = [tokens, n_heads * head_dim]: token `t` of the
/// call is at position `step.pos + t`; only the first `step.n_tokens` rows
/// change. The grid covers `max_tokens` rows (the buffer's capacity), so the
/// dispatch stays valid for any step with `n_tokens <= max_tokens`.
/// Positions must stay below 2^24.
pub fn rope(gpu: &Gpu, x: &wgpu::Buffer, step: &wgpu::Buffer, r: &Rope, max_tokens: u32) -> Result<Dispatch> {
    if r.rot_dim == 0 || !r.rot_dim.is_multiple_of(2) || r.rot_dim > r.head_dim {
        return Err(Error::msg(format!("rope: rotary dims {} must be even, non-zero and at most head_dim {}", r.rot_dim, r.head_dim)));
    }
    if !r.base.is_finite() || r.base <= 1.0 {
        return Err(Error::msg(format!("rope: frequency base {} must be a finite number above 1", r.base)));
    }
    let freqs = gpu.upload("rope.freqs", bytemuck::cast_slice(&rope_freqs(r.rot_dim, r.base)));
    let params = gpu.uniform("rope.params", bytemuck::bytes_of(&RopeParams { n_heads: r.n_heads, head_dim: r.head_dim, rot_dim: r.rot_dim, max_tokens }));
    let pairs = max_tokens * r.n_heads * (r.rot_dim / 2);
    Ok(gpu.dispatch(&rope_spec(r.layout), &[x, &freqs, &params, step], grid_1d(pairs.div_ceil(WG))))
}

fn rope_spec(layout: RopeLayout) -> Spec {
    Spec::new(Kernel::Rope).with("WG", WG).with("ROPE_HALF", (layout == RopeLayout::HalfSplit) as u32)
}

/// `out[i] = silu(gate[i]) * up[i]` for `i < n` (any [tokens, ffn] batch is flat).
pub fn swiglu(gpu: &Gpu, gate: &wgpu::Buffer, up: &wgpu::Buffer, out: &wgpu::Buffer, n: u32) -> Dispatch {
    let params = gpu.uniform("swiglu.params", bytemuck::bytes_of(&AddParams { n, _p: [0; 3] }));
    gpu.dispatch(&Spec::new(Kernel::Swiglu).with("WG", WG), &[gate, up, out, &params], grid_1d(n.div_ceil(WG)))
}

/// Every specialisation this file creates (for the portability test).
pub fn specs() -> Vec<Spec> {
    vec![
        Spec::new(Kernel::Add).with("WG", WG),
        Spec::new(Kernel::RmsNorm).with("WG", WG),
        rope_spec(RopeLayout::Interleaved),
        rope_spec(RopeLayout::HalfSplit),
        Spec::new(Kernel::Swiglu).with("WG", WG),
    ]
}
