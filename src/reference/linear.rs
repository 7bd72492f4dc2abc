//! References for matvec, matmul and embedding lookup, over weights already
//! dequantized with `quant::dequantize` (row-major `[rows, cols]` f32), with
//! f64 accumulation.

/// `y[r] = init[r] + sum_k w[r, k] x[k]` (`init` absent: 0).
pub fn matvec(w: &[f32], x: &[f32], rows: usize, cols: usize, init: Option<&[f32]>) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            let dot: f64 = w[r * cols..(r + 1) * cols].iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
            (init.map_or(0.0, |y| y[r] as f64) + dot) as f32
        })
        .collect()
}

/// `y[t, r] = init[t, r] + sum_k w[r, k] x[t, k]` for `n_tokens` rows of
/// `x` (`[n_tokens, cols]`); `y` is `[n_tokens, rows]`.
pub fn matmul(w: &[f32], x: &[f32], rows: usize, cols: usize, n_tokens: usize, init: Option<&[f32]>) -> Vec<f32> {
    let mut y = Vec::with_capacity(n_tokens * rows);
    for t in 0..n_tokens {
        let init_t = init.map(|v| &v[t * rows..(t + 1) * rows]);
        y.extend(matvec(w, &x[t * cols..(t + 1) * cols], rows, cols, init_t));
    }
    y
}

/// `out[t, :] = table[ids[t], :]`; an id past the table gives zeros.
pub fn embed(table: &[f32], ids: &[u32], dim: usize) -> Vec<f32> {
    let vocab = table.len() / dim;
    let mut out = vec![0.0; ids.len() * dim];
    for (o, &id) in out.chunks_exact_mut(dim).zip(ids) {
        if (id as usize) < vocab {
            o.copy_from_slice(&table[id as usize * dim..(id as usize + 1) * dim]);
        }
    }
    out
}
