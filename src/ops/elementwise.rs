//! Launch builders for RMSNorm (whole rows, and in place per head for
//! QK-norm), RoPE, SwiGLU, residual add and bias add.

use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu};
use crate::kernels::{Dispatch, Kernel, Spec, grid_1d};
use bytemuck::{Pod, Zeroable};

pub const WG: u32 = 64;

/// A flat length `n`; `period` is add's (see shaders/add.wgsl), unused by swiglu.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AddParams {
    n: u32,
    period: u32,
    _p: [u32; 2],
}

/// `x[i] += y[i]` for `i < n`.
pub fn add(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32) -> Dispatch {
    add_periodic(gpu, "add.params", x, y, n, n)
}

/// Bias add in place: `x[t, i] += bias[i]` for `n_tokens` rows of `width`.
pub fn add_bias(gpu: &Gpu, x: &wgpu::Buffer, bias: &wgpu::Buffer, n_tokens: u32, width: u32) -> Dispatch {
    add_periodic(gpu, "bias.params", x, bias, n_tokens * width, width)
}

/// `x[i] += y[i % period]` for `i < n`.
fn add_periodic(gpu: &Gpu, label: &str, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32, period: u32) -> Dispatch {
    let params = gpu.uniform(label, bytemuck::bytes_of(&AddParams { n, period: period.max(1), _p: [0; 2] }));
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct HeadNormParams {
    rows: u32,
    dim: u32,
    eps: f32,
    _p: u32,
}

/// QK-norm: RMSNorm in place over `rows` rows of `head_dim` (every head of
/// `rows / n_heads` tokens of Q or K), each row scaled by the same `weight`.
pub fn head_norm(gpu: &Gpu, x: &wgpu::Buffer, weight: &wgpu::Buffer, rows: u32, head_dim: u32, eps: f32) -> Dispatch {
    let params = gpu.uniform("head_norm.params", bytemuck::bytes_of(&HeadNormParams { rows, dim: head_dim, eps, _p: 0 }));
    gpu.dispatch(&Spec::new(Kernel::HeadNorm).with("WG", WG), &[x, weight, &params], grid_1d(rows))
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
pub struct Rope<'a> {
    pub n_heads: u32,
    pub head_dim: u32,
    /// Leading dims of each head that rotate (`head_dim` for full rotary); even.
    pub rot_dim: u32,
    /// Frequency base (theta), e.g. 100000.
    pub base: f64,
    pub layout: RopeLayout,
    /// Per-pair frequency divisors (Llama 3's `rope_freqs`), `rot_dim / 2`
    /// finite positive values: pair j turns at `base^(-2j / rot_dim) / factors[j]`.
    pub factors: Option<&'a [f32]>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    n_heads: u32,
    head_dim: u32,
    rot_dim: u32,
    max_tokens: u32,
    k_heads: u32,
    _p: [u32; 3],
}

/// Per-pair frequencies in turns (theta_j / 2pi per position), each
/// divided by its frequency factor where there are `factors`, computed in
/// f64 and split as (hi, mid, lo, 0) with hi and mid holding 12 significant
/// bits each, so the shader forms exact products with 12-bit halves of the
/// position (see shaders/rope.wgsl for the error analysis).
pub fn rope_freqs(rot_dim: u32, base: f64, factors: Option<&[f32]>) -> Vec<[f32; 4]> {
    let top12 = |v: f64| f32::from_bits((v as f32).to_bits() & !0xFFF);
    (0..rot_dim / 2)
        .map(|j| {
            let factor = factors.map_or(1.0, |f| f[j as usize] as f64);
            let turns = base.powf(-2.0 * j as f64 / rot_dim as f64) / factor / std::f64::consts::TAU;
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
pub fn rope(gpu: &Gpu, x: &wgpu::Buffer, step: &wgpu::Buffer, r: &Rope<'_>, max_tokens: u32) -> Result<Dispatch> {
    rope_dispatch(gpu, x, None, step, None, r, max_tokens)
}

/// `rope` of the queries `q` (`r.n_heads` heads) and of the keys `k`
/// (`k_heads` heads, otherwise as `r`) in one dispatch: both equal their
/// own `rope` bit for bit.
pub fn rope_qk(gpu: &Gpu, q: &wgpu::Buffer, k: &wgpu::Buffer, k_heads: u32, step: &wgpu::Buffer, r: &Rope<'_>, max_tokens: u32) -> Result<Dispatch> {
    rope_dispatch(gpu, q, Some((k, k_heads)), step, None, r, max_tokens)
}

/// `rope_qk` of `[q, k]` with each token at its own position,
/// `positions[t]` (u32), instead of `step.pos + t`: a batched decode step,
/// whose tokens belong to different sequences. `step` still gives the
/// token count.
pub fn rope_qk_at(
    gpu: &Gpu,
    [q, k]: [&wgpu::Buffer; 2],
    k_heads: u32,
    step: &wgpu::Buffer,
    positions: &wgpu::Buffer,
    r: &Rope<'_>,
    max_tokens: u32,
) -> Result<Dispatch> {
    rope_dispatch(gpu, q, Some((k, k_heads)), step, Some(positions), r, max_tokens)
}

fn rope_dispatch(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    x2: Option<(&wgpu::Buffer, u32)>,
    step: &wgpu::Buffer,
    positions: Option<&wgpu::Buffer>,
    r: &Rope<'_>,
    max_tokens: u32,
) -> Result<Dispatch> {
    if r.rot_dim == 0 || !r.rot_dim.is_multiple_of(2) || r.rot_dim > r.head_dim {
        return Err(Error::msg(format!("rope: rotary dims {} must be even, non-zero and at most head_dim {}", r.rot_dim, r.head_dim)));
    }
    if !r.base.is_finite() || r.base <= 1.0 {
        return Err(Error::msg(format!("rope: frequency base {} must be a finite number above 1", r.base)));
    }
    if let Some(f) = r.factors {
        if f.len() != r.rot_dim as usize / 2 {
            return Err(Error::msg(format!("rope: {} frequency factors for {} rotated pairs", f.len(), r.rot_dim / 2)));
        }
        if let Some(bad) = f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
            return Err(Error::msg(format!("rope: frequency factor {bad} is not a positive number")));
        }
    }
    let freqs = gpu.upload("rope.freqs", bytemuck::cast_slice(&rope_freqs(r.rot_dim, r.base, r.factors)));
    let k_heads = x2.map_or(0, |(_, h)| h);
    let p = RopeParams { n_heads: r.n_heads, head_dim: r.head_dim, rot_dim: r.rot_dim, max_tokens, k_heads, _p: [0; 3] };
    let params = gpu.uniform("rope.params", bytemuck::bytes_of(&p));
    let pairs = max_tokens * (r.n_heads + k_heads) * (r.rot_dim / 2);
    let mut b: Vec<Binding> = [x, &freqs, &params, step].iter().enumerate().map(|(i, buffer)| Binding { at: i as u32, buffer, bytes: None }).collect();
    if let Some((k, _)) = x2 {
        b.push(Binding { at: 4, buffer: k, bytes: None });
    }
    if let Some(p) = positions {
        b.push(Binding { at: 5, buffer: p, bytes: None });
    }
    Ok(gpu.dispatch_bound(&rope_spec(r.layout, x2.is_some(), positions.is_some()), &b, grid_1d(pairs.div_ceil(WG))))
}

fn rope_spec(layout: RopeLayout, two: bool, table: bool) -> Spec {
    let half = (layout == RopeLayout::HalfSplit) as u32;
    Spec::new(Kernel::Rope).with("WG", WG).with("ROPE_HALF", half).with("K2", two as u32).with("POS", table as u32)
}

/// `out[i] = silu(gate[i]) * up[i]` for `i < n` (any [tokens, ffn] batch is flat).
pub fn swiglu(gpu: &Gpu, gate: &wgpu::Buffer, up: &wgpu::Buffer, out: &wgpu::Buffer, n: u32) -> Dispatch {
    let params = gpu.uniform("swiglu.params", bytemuck::bytes_of(&AddParams { n, period: 0, _p: [0; 2] }));
    gpu.dispatch(&Spec::new(Kernel::Swiglu).with("WG", WG), &[gate, up, out, &params], grid_1d(n.div_ceil(WG)))
}

/// `out[i] = gelu_tanh(gate[i]) * up[i]` for `i < n` (Gemma's FFN; see shaders/geglu.wgsl).
pub fn geglu(gpu: &Gpu, gate: &wgpu::Buffer, up: &wgpu::Buffer, out: &wgpu::Buffer, n: u32) -> Dispatch {
    let params = gpu.uniform("geglu.params", bytemuck::bytes_of(&AddParams { n, period: 0, _p: [0; 2] }));
    gpu.dispatch(&Spec::new(Kernel::Geglu).with("WG", WG), &[gate, up, out, &params], grid_1d(n.div_ceil(WG)))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ScaleParams {
    n: u32,
    s: f32,
    cap: f32,
    _p: u32,
}

/// `x[i] *= s` for `i < n`, in place.
pub fn scale(gpu: &Gpu, x: &wgpu::Buffer, s: f32, n: u32) -> Dispatch {
    scale_capped(gpu, x, s, 0.0, n)
}

/// `x[i] = c * tanh(x[i] / c)` for `i < n`, in place (a softcap `c > 0`).
pub fn softcap(gpu: &Gpu, x: &wgpu::Buffer, c: f32, n: u32) -> Dispatch {
    scale_capped(gpu, x, 1.0, c, n)
}

fn scale_capped(gpu: &Gpu, x: &wgpu::Buffer, s: f32, cap: f32, n: u32) -> Dispatch {
    let params = gpu.uniform("scale.params", bytemuck::bytes_of(&ScaleParams { n, s, cap, _p: 0 }));
    gpu.dispatch(&Spec::new(Kernel::Scale).with("WG", WG), &[x, &params], grid_1d(n.div_ceil(WG)))
}

/// Every specialisation this file creates (for the portability test).
pub fn specs() -> Vec<Spec> {
    vec![
        Spec::new(Kernel::Add).with("WG", WG),
        Spec::new(Kernel::RmsNorm).with("WG", WG),
        Spec::new(Kernel::HeadNorm).with("WG", WG),
        rope_spec(RopeLayout::Interleaved, false, false),
        rope_spec(RopeLayout::HalfSplit, false, false),
        rope_spec(RopeLayout::Interleaved, true, false),
        rope_spec(RopeLayout::HalfSplit, true, false),
        rope_spec(RopeLayout::Interleaved, true, true),
        rope_spec(RopeLayout::HalfSplit, true, true),
        Spec::new(Kernel::Swiglu).with("WG", WG),
        Spec::new(Kernel::Geglu).with("WG", WG),
        Spec::new(Kernel::Scale).with("WG", WG),
    ]
}
