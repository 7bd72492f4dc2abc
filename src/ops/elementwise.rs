//! Launch builders for embedding, RMSNorm, RoPE, SwiGLU and residual add.

use crate::gpu::Gpu;
use crate::kernels::{grid_1d, Dispatch, Kernel, Spec};
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
