//! References for eviction: which slots StreamingLLM keeps, and compaction.

use super::attention::{score, sees};
use crate::ops::attention::AttnShape;

/// StreamingLLM's kept slots when `len` cached tokens must shrink to `target`:
/// the first `sinks` (attention sinks) and the most recent `target - sinks`,
/// in slot order. Everything when `len <= target`. Independent of
/// production's `kv::eviction::streaming::streaming_keep` (tests/layering.rs compares them).
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

/// H2O's accumulation for one decode query `q` (`[n_heads][head_dim]`, at
/// slot `kv_len - 1`) with its per-head log-sum-exp `lse`:
/// `acc[kvh][j] += Σ_g exp(score(q_g·K_j) − lse_g)` over the KV group's query
/// heads, for the slots `j < kv_len` the query sees (the shape's window; its
/// softcap in `score`); summed in f64.
pub fn accumulate(shape: &AttnShape, q: &[f32], k_cache: &[f32], lse: &[f32], kv_len: usize, acc: &mut [f32]) {
    let (hd, ms, group) = (shape.head_dim as usize, shape.max_seq as usize, shape.group() as usize);
    for kvh in 0..shape.n_kv_heads as usize {
        for j in (0..kv_len).filter(|&j| sees(shape, kv_len - 1, j)) {
            let k = &k_cache[(kvh * ms + j) * hd..][..hd];
            let a: f64 = (kvh * group..(kvh + 1) * group)
                .map(|h| {
                    let s: f64 = q[h * hd..(h + 1) * hd].iter().zip(k).map(|(&x, &y)| x as f64 * y as f64).sum();
                    (score(shape, s) - lse[h] as f64).exp()
                })
                .sum();
            acc[kvh * ms + j] = (acc[kvh * ms + j] as f64 + a) as f32;
        }
    }
}

/// `accumulate` for the last `rows` of a call of `n_tokens` query rows
/// (`q`: `[n_tokens][n_heads][head_dim]`, `lse`: `[n_tokens][n_heads]`) over
/// `kv_len` slots, causal (token t is slot `kv_len - n_tokens + t`); summed
/// in f64 and added to `acc`.
#[allow(clippy::too_many_arguments)]
pub fn accumulate_rows(shape: &AttnShape, q: &[f32], k_cache: &[f32], lse: &[f32], kv_len: usize, n_tokens: usize, rows: usize, acc: &mut [f32]) {
    let (hd, nh) = (shape.head_dim as usize, shape.n_heads as usize);
    let base = kv_len - n_tokens;
    let mut sums = vec![0f64; acc.len()];
    for t in n_tokens - rows.min(n_tokens)..n_tokens {
        let mut one = vec![0f32; acc.len()];
        accumulate(shape, &q[t * nh * hd..(t + 1) * nh * hd], k_cache, &lse[t * nh..(t + 1) * nh], base + t + 1, &mut one);
        for (s, o) in sums.iter_mut().zip(&one) {
            *s += *o as f64;
        }
    }
    for (a, s) in acc.iter_mut().zip(&sums) {
        *a = (*a as f64 + s) as f32;
    }
}

/// What a policy ranks slots by (mirrors `ops::evict::ScoreMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    Attention,
    ValueAware,
    KeyNorm,
    MaxPool { radius: usize },
    AvgPool { radius: usize },
}

/// One layer's slot scores per KV head (`[n_kv_heads][max_seq]`, slots past
/// `len` 0): `acc` as it is, times the value's L1 norm, the negated key L2
/// norm, or pooled over the slots below `prefix` (max ignores slots outside;
/// the average divides by the whole kernel).
pub fn slot_scores(shape: &AttnShape, k_cache: &[f32], v_cache: &[f32], acc: &[f32], len: usize, prefix: usize, how: Score) -> Vec<f32> {
    let (hd, ms) = (shape.head_dim as usize, shape.max_seq as usize);
    let mut out = vec![0f32; shape.n_kv_heads as usize * ms];
    for h in 0..shape.n_kv_heads as usize {
        for j in 0..len {
            let o = h * ms + j;
            let row = |c: &[f32]| c[o * hd..(o + 1) * hd].to_vec();
            out[o] = match how {
                Score::Attention => acc[o],
                Score::ValueAware => (acc[o] as f64 * row(v_cache).iter().map(|x| x.abs() as f64).sum::<f64>()) as f32,
                Score::KeyNorm => -(row(k_cache).iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()) as f32,
                Score::MaxPool { radius } | Score::AvgPool { radius } if j < prefix => {
                    let win = &acc[h * ms + j.saturating_sub(radius)..h * ms + (j + radius + 1).min(prefix)];
                    match how {
                        Score::MaxPool { .. } => win.iter().cloned().fold(f32::MIN, f32::max),
                        _ => (win.iter().map(|&x| x as f64).sum::<f64>() / (2 * radius + 1) as f64) as f32,
                    }
                }
                _ => acc[o],
            };
        }
    }
    out
}

/// The slots one head keeps: the `keep` of `scores[..len]` ranked highest,
/// the first `sinks` and last `recent` slots ranked above all (and equal
/// among themselves), ties to the later slot; in increasing order. Everything when `keep >= len`.
pub fn select_keep(scores: &[f32], len: usize, keep: usize, sinks: usize, recent: usize) -> Vec<usize> {
    if keep >= len {
        return (0..len).collect();
    }
    // Protected slots rank above every score, equal among themselves.
    let protected = |j: usize| j < sinks || j + recent >= len;
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|&a, &b| {
        let by_score = if protected(a) || protected(b) { std::cmp::Ordering::Equal } else { scores[b].total_cmp(&scores[a]) };
        protected(b).cmp(&protected(a)).then(by_score).then(b.cmp(&a))
    });
    let mut kept = order[..keep].to_vec();
    kept.sort_unstable();
    kept
}

/// DynamicKV's ranking: over the scores of every layer given
/// (`scores[l][h][j]` for `j < prefix[l]`), the `keep`-th largest, and per
/// layer how many of its scores reach it.
pub fn global_counts(scores: &[Vec<Vec<f32>>], prefix: &[usize], keep: usize) -> Vec<usize> {
    let mut all: Vec<f32> = Vec::new();
    for (l, layer) in scores.iter().enumerate() {
        for head in layer {
            all.extend_from_slice(&head[..prefix[l]]);
        }
    }
    all.sort_by(|a, b| b.total_cmp(a));
    let t = all[keep.clamp(1, all.len()) - 1];
    scores.iter().enumerate().map(|(l, layer)| layer.iter().map(|h| h[..prefix[l]].iter().filter(|&&s| s >= t).count()).sum()).collect()
}
