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
