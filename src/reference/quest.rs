//! References for Quest: page metadata, page scores, page selection and
//! attention restricted to the selected pages. Same layouts as the kernels
//! (see `ops::quest`); caches and metadata held as f32.

use super::attention::{score, sees};
use crate::ops::quest::QuestShape;

/// Element-wise max and min of the keys of every page of the first `kv_len`
/// slots: (`kmax`, `kmin`), each `[n_kv_heads][max_pages][head_dim]`; pages
/// past `kv_len` are zero.
pub fn page_meta(s: &QuestShape, k_cache: &[f32], kv_len: usize) -> (Vec<f32>, Vec<f32>) {
    let (kvh, hd, ms, page, mp) = (s.attn.n_kv_heads as usize, s.attn.head_dim as usize, s.attn.max_seq as usize, s.page as usize, s.max_pages() as usize);
    let mut kmax = vec![0.0f32; kvh * mp * hd];
    let mut kmin = vec![0.0f32; kvh * mp * hd];
    for h in 0..kvh {
        for pg in 0..kv_len.div_ceil(page) {
            let o = (h * mp + pg) * hd;
            for i in 0..hd {
                let vals = (pg * page..((pg + 1) * page).min(kv_len)).map(|j| k_cache[(h * ms + j) * hd + i]);
                kmax[o + i] = vals.clone().fold(f32::NEG_INFINITY, f32::max);
                kmin[o + i] = vals.fold(f32::INFINITY, f32::min);
            }
        }
    }
    (kmax, kmin)
}

/// Pages in `kv_len` slots.
pub fn n_pages(s: &QuestShape, kv_len: usize) -> usize {
    kv_len.div_ceil(s.page as usize)
}

/// One channel's share of a page score: `max(q * hi, q * lo)` (Quest's
/// bound) for `width` 1, else `q * centre + width * |q| * half-width` of
/// the box `lo..=hi`.
pub fn channel_score(q: f64, hi: f64, lo: f64, width: f64) -> f64 {
    if width == 1.0 { (q * hi).max(q * lo) } else { q * ((hi + lo) * 0.5) + width * (q.abs() * ((hi - lo) * 0.5)) }
}

/// Scores `[n_units][n_pages - 1]` of the full pages for query `q`
/// (`[n_heads][head_dim]`): `sum_{h in unit} sum_i channel_score(..)`,
/// summed in f64. Empty lists when every page fits the budget.
pub fn page_scores(s: &QuestShape, width: f32, q: &[f32], kmax: &[f32], kmin: &[f32], kv_len: usize) -> Vec<Vec<f64>> {
    let (hd, mp, unit, group) = (s.attn.head_dim as usize, s.max_pages() as usize, s.unit as usize, s.attn.group() as usize);
    let np = n_pages(s, kv_len);
    (0..s.n_units() as usize)
        .map(|u| {
            if np <= s.budget_pages as usize {
                return Vec::new();
            }
            let kvh = u * unit / group;
            (0..np - 1)
                .map(|pg| {
                    let o = (kvh * mp + pg) * hd;
                    (u * unit..(u + 1) * unit)
                        .map(|h| (0..hd).map(|i| channel_score(q[h * hd + i] as f64, kmax[o + i] as f64, kmin[o + i] as f64, width as f64)).sum::<f64>())
                        .sum()
                })
                .collect()
        })
        .collect()
}

/// Each unit's page list, as `quest_select` writes it: every page when they
/// fit the budget, else the `budget_pages - 1` best-scored full pages (higher
/// score first, ties to the lower index) then the last page.
pub fn select(s: &QuestShape, scores: &[Vec<f64>], kv_len: usize) -> Vec<Vec<u32>> {
    let np = n_pages(s, kv_len);
    scores
        .iter()
        .map(|sc| {
            if np <= s.budget_pages as usize {
                return (0..np as u32).collect();
            }
            let mut order: Vec<u32> = (0..(np - 1) as u32).collect();
            order.sort_by(|&a, &b| sc[b as usize].total_cmp(&sc[a as usize]).then(a.cmp(&b)));
            order.truncate(s.budget_pages as usize - 1);
            order.push((np - 1) as u32);
            order
        })
        .collect()
}

/// Decode attention of `q` (`[n_heads][head_dim]`) where the heads of unit u
/// attend only the valid slots of the pages in `lists[u]` that the query (at
/// slot `kv_len - 1`) sees (the window of `s.attn`), with `s.attn`'s scores
/// (softcap); `[n_heads][head_dim]` out, softmax and sums in f64.
pub fn attention_pages(s: &QuestShape, q: &[f32], k_cache: &[f32], v_cache: &[f32], lists: &[Vec<u32>], kv_len: usize) -> Vec<f32> {
    let (hd, ms, page, unit, group) = (s.attn.head_dim as usize, s.attn.max_seq as usize, s.page as usize, s.unit as usize, s.attn.group() as usize);
    let mut out = vec![0.0f32; s.attn.n_heads as usize * hd];
    for h in 0..s.attn.n_heads as usize {
        let head = (h / group) * ms;
        let slots: Vec<usize> = lists[h / unit]
            .iter()
            .flat_map(|&pg| (pg as usize * page..(pg as usize + 1) * page).filter(|&j| j < kv_len && sees(&s.attn, kv_len - 1, j)))
            .collect();
        let qr = &q[h * hd..][..hd];
        let sc: Vec<f64> =
            slots.iter().map(|&j| score(&s.attn, qr.iter().zip(&k_cache[(head + j) * hd..][..hd]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>())).collect();
        let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut acc = vec![0.0f64; hd];
        let mut sum = 0.0;
        for (&j, &x) in slots.iter().zip(&sc) {
            let p = (x - m).exp();
            sum += p;
            for (a, &v) in acc.iter_mut().zip(&v_cache[(head + j) * hd..][..hd]) {
                *a += p * v as f64;
            }
        }
        for (o, a) in out[h * hd..][..hd].iter_mut().zip(&acc) {
            *o = (a / sum) as f32;
        }
    }
    out
}
