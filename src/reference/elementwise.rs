//! References for embedding, RMSNorm, RoPE, SwiGLU and residual add.

/// `x[i] += y[i]`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += *b;
    }
}

/// RMSNorm over rows of `dim` (f64 accumulation of the sum of squares).
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
