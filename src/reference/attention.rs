//! References for the KV-cache append and causal grouped-query attention.
//! Same layouts as the kernels (see `ops::attention`), caches held as f32 (the
//! tests round them through f16 first when the device stores f16), softmax and
//! weighted sums accumulated in f64. The shape's options apply: the softcap
//! ([`score`]) and the sliding window ([`sees`]).

use crate::ops::attention::AttnShape;

/// Round every value through f16, as an f16 KV cache stores it.
pub fn round_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// Store `n_tokens` rows of `k_new` / `v_new` (`[n_tokens][n_kv_heads * head_dim]`)
/// at slots `first_slot + i` of caches laid out `[n_kv_heads][max_seq][head_dim]`.
pub fn kv_append(shape: &AttnShape, k_cache: &mut [f32], v_cache: &mut [f32], k_new: &[f32], v_new: &[f32], first_slot: usize) {
    let (kvh, hd, ms) = (shape.n_kv_heads as usize, shape.head_dim as usize, shape.max_seq as usize);
    let n_tokens = k_new.len() / (kvh * hd);
    for t in 0..n_tokens {
        for h in 0..kvh {
            let src = (t * kvh + h) * hd;
            let dst = (h * ms + first_slot + t) * hd;
            k_cache[dst..dst + hd].copy_from_slice(&k_new[src..src + hd]);
            v_cache[dst..dst + hd].copy_from_slice(&v_new[src..src + hd]);
        }
    }
}

/// The score of a query-key dot product `dot` (unscaled), in f64: scaled by
/// `1 / sqrt(head_dim)`, then `c * tanh(s / c)` with a softcap `c > 0`.
pub fn score(shape: &AttnShape, dot: f64) -> f64 {
    let s = dot * (1.0 / (shape.head_dim as f64).sqrt());
    let c = shape.softcap as f64;
    if c > 0.0 { c * (s / c).tanh() } else { s }
}

/// Whether the query at slot `at` sees slot `j`: `j <= at` and, with a window
/// `W > 0`, `j + W > at` (the `W` most recent slots, its own included).
pub fn sees(shape: &AttnShape, at: usize, j: usize) -> bool {
    let w = shape.window as usize;
    j <= at && (w == 0 || j + w > at)
}

/// Output of [`attention`].
pub struct Attention {
    /// `[n_tokens][n_heads * head_dim]`.
    pub out: Vec<f32>,
    /// Log-sum-exp of each row's scaled scores, `[n_tokens][n_heads]`.
    pub lse: Vec<f32>,
}

/// Causal attention of `n_tokens` query rows (`q`: `[n_tokens][n_heads * head_dim]`)
/// over caches whose first `kv_len` slots are valid: token `t`, at slot
/// `at = kv_len - n_tokens + t`, attends the slots `j <= at` it [`sees`], with
/// scores from [`score`]. Query head `h` reads KV head `h / group`.
pub fn attention(shape: &AttnShape, q: &[f32], k_cache: &[f32], v_cache: &[f32], n_tokens: usize, kv_len: usize) -> Attention {
    let (nh, hd, ms) = (shape.n_heads as usize, shape.head_dim as usize, shape.max_seq as usize);
    let group = shape.group() as usize;
    let base = kv_len - n_tokens;
    let mut out = vec![0.0f32; n_tokens * nh * hd];
    let mut lse = vec![0.0f32; n_tokens * nh];
    let mut scores = Vec::with_capacity(kv_len);
    let mut acc = vec![0.0f64; hd];
    for t in 0..n_tokens {
        for h in 0..nh {
            let qr = &q[(t * nh + h) * hd..][..hd];
            let head = (h / group) * ms;
            scores.clear();
            let slots: Vec<usize> = (0..=base + t).filter(|&j| sees(shape, base + t, j)).collect();
            for &j in &slots {
                let k = &k_cache[(head + j) * hd..][..hd];
                let dot: f64 = qr.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum();
                scores.push(score(shape, dot));
            }
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (&j, &s) in slots.iter().zip(&scores) {
                let p = (s - m).exp();
                sum += p;
                let v = &v_cache[(head + j) * hd..][..hd];
                for (a, &x) in acc.iter_mut().zip(v) {
                    *a += p * x as f64;
                }
            }
            let o = &mut out[(t * nh + h) * hd..][..hd];
            for (o, a) in o.iter_mut().zip(&acc) {
                *o = (a / sum) as f32;
            }
            lse[t * nh + h] = (m + sum.ln()) as f32;
        }
    }
    Attention { out, lse }
}
