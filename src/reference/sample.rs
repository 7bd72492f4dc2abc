//! References for greedy argmax and top-k selection with the logsumexp of
//! all logits (f64 sums).

use std::cmp::Ordering;

/// Order for selection: larger value first, NaN after everything (-0 == +0),
/// then the smaller index.
fn rank_order(a: (usize, f32), b: (usize, f32)) -> Ordering {
    let by_value = match (a.1.is_nan(), b.1.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal),
    };
    by_value.then(a.0.cmp(&b.0))
}

/// Index of the largest logit, ties to the smallest index; NaN never wins;
/// `u32::MAX` when there is no non-NaN logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(u32::MAX, |(i, _)| i as u32)
}

/// Top-k selection over all logits.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// Largest logit.
    pub max: f32,
    /// Sum over all logits of exp(logit - max), in f64.
    pub sum_exp: f64,
    /// (index, logit) of the min(k, n) best, sorted as `rank_order`.
    pub candidates: Vec<(u32, f32)>,
}

pub fn topk(logits: &[f32], k: usize) -> TopK {
    let mut all: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
    all.sort_by(|&a, &b| rank_order(a, b));
    let candidates: Vec<(u32, f32)> = all.iter().take(k).map(|&(i, v)| (i as u32, v)).collect();
    let max = logits.iter().copied().filter(|v| !v.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    let sum_exp = if max == f32::NEG_INFINITY { 0.0 } else { logits.iter().map(|&v| ((v as f64) - max as f64).exp()).sum() };
    TopK { max, sum_exp, candidates }
}
