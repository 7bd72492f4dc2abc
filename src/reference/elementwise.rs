//! References for RMSNorm (also per head, QK-norm), RoPE, SwiGLU, residual
//! add and bias add.

/// `x[i] += y[i]`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += *b;
    }
}

/// `x[t, i] += bias[i]` over rows of `bias.len()`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_mut(bias.len()) {
        add(row, bias);
    }
}

/// RMSNorm over rows of `dim` (f64 accumulation of the sum of squares);
/// QK-norm is this over rows of `head_dim` (every head its own row).
pub fn rmsnorm(x: &[f32], weight: &[f32], dim: usize, eps: f32) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for (row, o) in x.chunks(dim).zip(out.chunks_mut(dim)) {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / (ss / dim as f64 + eps as f64).sqrt();
        for i in 0..dim {
            o[i] = (row[i] as f64 * scale * weight[i] as f64) as f32;
        }
    }
    out
}

/// RoPE in place on rows of `n_heads * head_dim` (row `t` at position
/// `pos + t`), angles and rotation in f64: theta_j = pos * base^(-2j / rot_dim)
/// / factors[j] (Llama 3's frequency factors; 1 without them).
/// `half_split` picks pairs (x[j], x[j + rot_dim / 2]) (Hugging Face / NeoX)
/// instead of (x[2j], x[2j + 1]) (GGUF / llama.cpp); dims >= rot_dim are kept.
#[allow(clippy::too_many_arguments)]
pub fn rope(x: &mut [f32], n_heads: usize, head_dim: usize, rot_dim: usize, base: f64, factors: Option<&[f32]>, half_split: bool, pos: u32) {
    let half = rot_dim / 2;
    for (t, row) in x.chunks_mut(n_heads * head_dim).enumerate() {
        let p = (pos as u64 + t as u64) as f64;
        for head in row.chunks_mut(head_dim) {
            for j in 0..half {
                let factor = factors.map_or(1.0, |f| f[j] as f64);
                let theta = p * base.powf(-2.0 * j as f64 / rot_dim as f64) / factor;
                let (s, c) = theta.sin_cos();
                let (i0, i1) = if half_split { (j, j + half) } else { (2 * j, 2 * j + 1) };
                let (x0, x1) = (head[i0] as f64, head[i1] as f64);
                head[i0] = (x0 * c - x1 * s) as f32;
                head[i1] = (x0 * s + x1 * c) as f32;
            }
        }
    }
}

/// `silu(gate[i]) * up[i]` in f64.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = g as f64;
            (g / (1.0 + (-g).exp()) * u as f64) as f32
        })
        .collect()
}

/// GELU, tanh approximation, in f64: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// `gelu_tanh(gate[i]) * up[i]` in f64.
pub fn geglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(&g, &u)| (gelu_tanh(g as f64) * u as f64) as f32).collect()
}

/// `c * tanh(x / c)` in f64 (a softcap `c > 0`: Gemma 2's attention scores
/// and final logits).
pub fn softcap(x: &[f32], c: f32) -> Vec<f32> {
    let c = c as f64;
    x.iter().map(|&v| (c * (v as f64 / c).tanh()) as f32).collect()
}
