//! References for eviction: which slots StreamingLLM keeps, and compaction.

use crate::ops::attention::AttnShape;

/// StreamingLLM's kept slots when `len` cached tokens must shrink to `target`:
/// the first `sinks` (attention sinks) and the most recent `target - sinks`,
/// in slot order. Everything when `len <= target`.
pub fn streaming_keep(len: usize, target: usize, sinks: usize) -> Vec<usize> {
    if len <= target {
        return (0..len).collect();
    }
    let sinks = sinks.min(target);
    (0..sinks).chain(len - (target - sinks)..len).collect()
}

/// The caches after compaction: per KV head `h`, slot `i` takes the old slot
/// `keep[h][i]`; slots past `keep[h].len()` keep their old contents.
pub fn kv_compact(shape: &AttnShape, k_cache: &mut [f32], v_cache: &mut [f32], keep: &[Vec<usize>]) {
    let (hd, ms) = (shape.head_dim as usize, shape.max_seq as usize);
    for (h, kept) in keep.iter().enumerate() {
        for cache in [&mut *k_cache, &mut *v_cache] {
            let old = cache[h * ms * hd..(h + 1) * ms * hd].to_vec();
            for (i, &src) in kept.iter().enumerate() {
                cache[(h * ms + i) * hd..][..hd].copy_from_slice(&old[src * hd..(src + 1) * hd]);
            }
        }
    }
}

/// H2O's accumulation for one decode query `q` (`[n_heads][head_dim]`) with
/// its per-head log-sum-exp `lse`: `acc[kvh][j] += Σ_g exp(scale q_g·K_j − lse_g)`
/// over the KV group's query heads, for slots `j < kv_len`; summed in f64.
pub fn accumulate(shape: &AttnShape, q: &[f32], k_cache: &[f32], lse: &[f32], kv_len: usize, acc: &mut [f32]) {
    let (hd, ms, group) = (shape.head_dim as usize, shape.max_seq as usize, shape.group() as usize);
    let scale = 1.0 / (hd as f64).sqrt();
    for kvh in 0..shape.n_kv_heads as usize {
        for j in 0..kv_len {
            let k = &k_cache[(kvh * ms + j) * hd..][..hd];
            let a: f64 = (kvh * group..(kvh + 1) * group)
                .map(|h| {
                    let s: f64 = q[h * hd..(h + 1) * hd].iter().zip(k).map(|(&x, &y)| x as f64 * y as f64).sum();
                    (s * scale - lse[h] as f64).exp()
                })
                .sum();
            acc[kvh * ms + j] = (acc[kvh * ms + j] as f64 + a) as f32;
        }
    }
}
