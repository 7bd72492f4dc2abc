//! CPU reference forward pass, llama2.c style: weights dequantized to f32,
//! one token at a time, f64 accumulation in dot products, softmax and norms.
//! The GPU forward is checked against it; it is never used by the GPU path.

use crate::Result;
use crate::arch::{Block, Role};
use crate::config::{ModelConfig, RopeStyle};
use crate::quant::dequantize;
use crate::reference::elementwise::{self, add_bias};
use crate::weights::Weights;

/// One layer's weights as f32, row-major `[rows][cols]`; the parts a
/// recipe may leave out are `Option`s.
#[derive(Clone)]
struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    /// Q, K, V biases (`qkv_bias`).
    bias: Option<[Vec<f32>; 3]>,
    /// Per-head Q and K norm weights (`qk_norm`).
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    /// Attention and FFN output norms (the sandwich block).
    post_norms: Option<[Vec<f32>; 2]>,
}

#[derive(Clone)]
pub struct RefModel {
    pub cfg: ModelConfig,
    embed: Vec<f32>, // [vocab][dim]
    layers: Vec<Layer>,
    out_norm: Vec<f32>,
    output: Option<Vec<f32>>,       // [vocab][dim]; None when tied to `embed`
    rope_factors: Option<Vec<f32>>, // [head_dim / 2] Llama 3 frequency divisors
    /// Round cached K/V through f16 like the GPU cache does.
    pub kv_f16: bool,
    /// Quantized storage (`q8`, `q4`): cached rows are kept as their 8- or
    /// 4-bit blocks give them back (`reference::kvquant`); 0: `kv_f16`'s rounding.
    pub kv_quant: u32,
    /// With `kv_quant`: rows rotated by the Walsh-Hadamard matrix over
    /// groups of this many elements before they are quantized, queries
    /// rotated before attention and the output rotated back (0: not).
    pub kv_rot: usize,
    /// KIVI (bits, group, residual, sinks): rows cached as `kv_f16` says
    /// until [`RefModel::end_call`] quantizes the slots below the last
    /// multiple of the residual, past the first `sinks`
    /// (`reference::kivi`), as the engine does after each call.
    pub kivi: Option<(u32, usize, usize, usize)>,
    /// Under KIVI, per layer the slots quantized so far.
    kivi_done: Vec<usize>,
    /// Under KIVI, per layer the keys as appended (f16), before any
    /// quantization: Quest's page boxes are taken from them, as the engine
    /// takes them when a page is written, before the pack reaches it.
    kivi_keys: Vec<Vec<f32>>,
    k_cache: Vec<Vec<f32>>, // per layer [pos][kv_dim]
    v_cache: Vec<Vec<f32>>,
    pub pos: usize,
    /// Quest page selection for the tokens run while it is `active`.
    pub quest: Option<RefQuest>,
    /// Per layer, the last token's queries as attention used them (after
    /// RoPE and any rotation), `[n_heads][head_dim]`.
    pub queries: Vec<Vec<f32>>,
}

/// Quest in the reference forward: from layer `dense_layers` on, a token run
/// while `active` attends only the pages Quest selects (see
/// `reference::quest` for the rule); the engine activates it for decode steps.
#[derive(Clone, Copy, Debug)]
pub struct RefQuest {
    pub page: usize,
    pub budget_pages: usize,
    /// Query heads per selection unit (1 or the KV group).
    pub unit: usize,
    pub dense_layers: usize,
    /// The weight of the key box's width in a page's score (1: Quest's bound).
    pub width: f32,
    /// Score pages by the attention the unit's heads put on them (softmax
    /// over every cached slot, no softcap) instead of their key boxes: the
    /// best any page score can do, for diagnostics (no kernel does this).
    pub oracle: bool,
    pub active: bool,
    /// Under Mustafar: slots from here on (its dense window) are always
    /// attended, and pages are selected among the slots before it only.
    pub window_from: Option<usize>,
}

impl RefQuest {
    /// Slots each query head attends among `n`; `key(kvh, t)` is a cached key.
    /// `f16`: the page boxes are kept as f16 (`kv_t`), rounded to nearest
    /// (exact for f16 keys; a quantized cache's dequantized keys may round).
    fn slots<'a>(&self, q: &[f32], n_heads: usize, group: usize, n: usize, f16: bool, key: impl Fn(usize, usize) -> &'a [f32]) -> Vec<Vec<usize>> {
        let hd = q.len() / n_heads;
        let n_pages = n.div_ceil(self.page);
        if n_pages <= self.budget_pages {
            return vec![(0..n).collect(); n_heads];
        }
        let mut out = vec![Vec::new(); n_heads];
        for u in 0..n_heads / self.unit {
            let kvh = u * self.unit / group;
            let oracle: Vec<f64> = if self.oracle {
                let mut mass = vec![0f64; n_pages];
                for h in u * self.unit..(u + 1) * self.unit {
                    let qh = &q[h * hd..][..hd];
                    let s: Vec<f64> =
                        (0..n).map(|t| qh.iter().zip(key(kvh, t)).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / (hd as f64).sqrt()).collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    s.iter().enumerate().for_each(|(t, x)| mass[t / self.page] += (x - m).exp() / sum);
                }
                mass
            } else {
                Vec::new()
            };
            let score = |pg: usize| -> f64 {
                if self.oracle {
                    return oracle[pg];
                }
                let (mut hi, mut lo) = (vec![f32::NEG_INFINITY; hd], vec![f32::INFINITY; hd]);
                for t in pg * self.page..(pg + 1) * self.page {
                    for (i, &x) in key(kvh, t).iter().enumerate() {
                        hi[i] = hi[i].max(x);
                        lo[i] = lo[i].min(x);
                    }
                }
                if f16 {
                    for v in hi.iter_mut().chain(lo.iter_mut()) {
                        *v = half::f16::from_f32(*v).to_f32();
                    }
                }
                (u * self.unit..(u + 1) * self.unit)
                    .map(|h| {
                        (0..hd)
                            .map(|i| crate::reference::quest::channel_score(q[h * hd + i] as f64, hi[i] as f64, lo[i] as f64, self.width as f64))
                            .sum::<f64>()
                    })
                    .sum()
            };
            let scores: Vec<f64> = (0..n_pages - 1).map(score).collect();
            let mut pages: Vec<usize> = (0..n_pages - 1).collect();
            pages.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            pages.truncate(self.budget_pages - 1);
            pages.push(n_pages - 1);
            let slots: Vec<usize> = pages.iter().flat_map(|&pg| pg * self.page..((pg + 1) * self.page).min(n)).collect();
            out[u * self.unit..(u + 1) * self.unit].fill(slots);
        }
        out
    }
}

fn matvec(w: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let cols = x.len();
    (0..rows).map(|r| w[r * cols..(r + 1) * cols].iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32).collect()
}

fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    elementwise::rmsnorm(x, w, x.len(), eps)
}

/// Rotate the `n_heads` head vectors of `v` in place for position `pos`.
fn rope(v: &mut [f32], n_heads: usize, pos: usize, c: &ModelConfig, layer: usize, factors: Option<&[f32]>) {
    let hd = c.head_dim;
    let half_split = c.rope_style == RopeStyle::HalfSplit;
    crate::reference::elementwise::rope(v, n_heads, hd, hd, c.layer_rope_theta(layer) as f64, factors, half_split, pos as u32);
}

impl RefModel {
    pub fn new(w: &Weights) -> Result<RefModel> {
        let cfg = w.cfg.clone();
        let f = |name: &str| -> Result<Vec<f32>> {
            let t = w.get(name)?;
            dequantize(t.wtype, &t.data, t.dims.iter().product::<u64>() as usize)
        };
        let name = |role: Role, l: Option<usize>| cfg.family.tensor_name(role, l);
        let mut layers = Vec::new();
        for i in 0..cfg.n_layers {
            let n = |role: Role| name(role, Some(i));
            layers.push(Layer {
                attn_norm: f(&n(Role::AttnNorm))?,
                wq: f(&n(Role::Wq))?,
                wk: f(&n(Role::Wk))?,
                wv: f(&n(Role::Wv))?,
                bias: if cfg.qkv_bias { Some([f(&n(Role::Bq))?, f(&n(Role::Bk))?, f(&n(Role::Bv))?]) } else { None },
                qk_norm: if cfg.qk_norm { Some([f(&n(Role::QNorm))?, f(&n(Role::KNorm))?]) } else { None },
                wo: f(&n(Role::Wo))?,
                ffn_norm: f(&n(Role::FfnNorm))?,
                gate: f(&n(Role::Gate))?,
                up: f(&n(Role::Up))?,
                down: f(&n(Role::Down))?,
                post_norms: match cfg.family.block() {
                    Block::PreNorm => None,
                    Block::Sandwich => Some([f(&n(Role::PostAttnNorm))?, f(&n(Role::PostFfnNorm))?]),
                },
            });
        }
        let output = if cfg.tied_embeddings { None } else { Some(f(&name(Role::Output, None))?) };
        Ok(RefModel {
            embed: f(&name(Role::Embed, None))?,
            out_norm: f(&name(Role::OutputNorm, None))?,
            output,
            rope_factors: w.rope_factors()?,
            layers,
            kv_f16: true,
            kv_quant: 0,
            kv_rot: 0,
            kivi: None,
            kivi_done: vec![0; cfg.n_layers],
            kivi_keys: vec![Vec::new(); cfg.n_layers],
            k_cache: vec![Vec::new(); cfg.n_layers],
            v_cache: vec![Vec::new(); cfg.n_layers],
            pos: 0,
            quest: None,
            queries: vec![Vec::new(); cfg.n_layers],
            cfg,
        })
    }

    pub fn reset(&mut self) {
        self.pos = 0;
        self.kivi_done.iter_mut().for_each(|d| *d = 0);
        self.kivi_keys.iter_mut().for_each(Vec::clear);
        self.k_cache.iter_mut().for_each(Vec::clear);
        self.v_cache.iter_mut().for_each(Vec::clear);
    }

    /// Take a cache made elsewhere (the engine's, read back): per layer the
    /// K and V rows `[n][kv_dim]` of positions `0..n`; the next token runs at
    /// position `n`.
    pub fn set_cache(&mut self, k: Vec<Vec<f32>>, v: Vec<Vec<f32>>) {
        assert!(self.kv_quant == 0 && self.kivi.is_none(), "set_cache takes dense rows");
        assert_eq!((k.len(), v.len()), (self.cfg.n_layers, self.cfg.n_layers));
        self.pos = k[0].len() / (self.cfg.n_kv_heads * self.cfg.head_dim);
        self.k_cache = k;
        self.v_cache = v;
    }

    /// Layer `l`'s cached keys, `[n][kv_dim]`.
    pub fn keys(&self, l: usize) -> &[f32] {
        &self.k_cache[l]
    }

    /// Keep only the cached tokens at `slots` (increasing), in every layer:
    /// eviction's compaction; positions stay as they were.
    pub fn keep(&mut self, slots: &[usize]) {
        let per_head = vec![slots.to_vec(); self.cfg.n_kv_heads];
        for l in 0..self.k_cache.len() {
            self.keep_heads(l, &per_head);
        }
    }

    /// Keep, in layer `layer`, per KV head `h` the cached slots `keep[h]`
    /// (increasing, as many for every head): slot `i` of head `h` takes its
    /// old slot `keep[h][i]`, as `kv_compact` gathers them.
    /// Under KIVI the kept tokens come back as f16 rows, and
    /// those below the new boundary are quantized again in their new groups
    /// (`evict::kivi_compaction`).
    pub fn keep_heads(&mut self, layer: usize, keep: &[Vec<usize>]) {
        let hd = self.cfg.head_dim;
        let kv_dim = self.cfg.n_kv_heads * hd;
        for cache in [&mut self.k_cache[layer], &mut self.v_cache[layer], &mut self.kivi_keys[layer]] {
            if cache.is_empty() {
                continue; // kivi_keys without KIVI
            }
            let old = cache.clone();
            let n = keep[0].len();
            *cache = vec![0.0; n * kv_dim];
            for (h, kept) in keep.iter().enumerate() {
                for (i, &s) in kept.iter().enumerate() {
                    cache[i * kv_dim + h * hd..][..hd].copy_from_slice(&old[s * kv_dim + h * hd..][..hd]);
                }
            }
        }
        if let Some((bits, group, residual, sinks)) = self.kivi {
            for v in self.k_cache[layer].iter_mut().chain(self.v_cache[layer].iter_mut()) {
                *v = half::f16::from_f32(*v).to_f32();
            }
            let to = keep[0].len() / residual * residual;
            for h in 0..self.cfg.n_kv_heads {
                crate::reference::kivi::settle(&mut self.k_cache[layer], kv_dim, h * hd, hd, sinks, to, bits, true, group);
                crate::reference::kivi::settle(&mut self.v_cache[layer], kv_dim, h * hd, hd, sinks, to, bits, false, group.min(hd));
            }
            self.kivi_done[layer] = to;
        }
    }

    /// Mustafar's pruning of the cached tokens `slots` in every layer: per
    /// token and KV head, keys keep their `keep_k` and values their `keep_v`
    /// largest magnitudes (`reference::mustafar::prune`).
    pub fn prune(&mut self, slots: std::ops::Range<usize>, keep_k: usize, keep_v: usize) {
        let (hd, kv_dim) = (self.cfg.head_dim, self.cfg.n_kv_heads * self.cfg.head_dim);
        for (caches, keep) in [(&mut self.k_cache, keep_k), (&mut self.v_cache, keep_v)] {
            for cache in caches.iter_mut() {
                for t in slots.clone() {
                    for h in 0..self.cfg.n_kv_heads {
                        let row = &mut cache[t * kv_dim + h * hd..][..hd];
                        let pruned = crate::reference::mustafar::prune(row, keep);
                        row.copy_from_slice(&pruned);
                    }
                }
            }
        }
    }

    /// The end of a forward call (a prompt chunk or a decode step): KIVI
    /// quantizes, in every layer and KV head, the cached slots past the
    /// sinks that the boundary (the last multiple of the residual) passed;
    /// nothing else changes.
    pub fn end_call(&mut self) {
        let Some((bits, group, residual, sinks)) = self.kivi else {
            return;
        };
        let (hd, nkv) = (self.cfg.head_dim, self.cfg.n_kv_heads);
        for l in 0..self.k_cache.len() {
            let to = self.k_cache[l].len() / (nkv * hd) / residual * residual;
            let from = self.kivi_done[l].max(sinks);
            for h in 0..nkv {
                crate::reference::kivi::settle(&mut self.k_cache[l], nkv * hd, h * hd, hd, from, to, bits, true, group);
                crate::reference::kivi::settle(&mut self.v_cache[l], nkv * hd, h * hd, hd, from, to, bits, false, group.min(hd));
            }
            self.kivi_done[l] = to;
        }
    }

    /// Tokens cached per layer.
    pub fn cached(&self) -> usize {
        self.k_cache[0].len() / (self.cfg.n_kv_heads * self.cfg.head_dim)
    }

    /// Run one token at the next position and return the logits.
    pub fn forward(&mut self, token: u32) -> Vec<f32> {
        let c = &self.cfg;
        let (dim, hd, nh, nkv) = (c.dim, c.head_dim, c.n_heads, c.n_kv_heads);
        let kv_dim = nkv * hd;
        let group = nh / nkv;
        let pos = self.pos;
        let round = |v: f32| if self.kv_f16 { half::f16::from_f32(v).to_f32() } else { v };
        let mut x = self.embed[token as usize * dim..(token as usize + 1) * dim].to_vec();
        if let Some(s) = c.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        for (l, w) in self.layers.iter().enumerate() {
            // attention: norm, q/k/v (+ bias), QK-norm, RoPE, cache, softmax(softcap(q·k/sqrt(d)))·v, output projection
            let xn = rmsnorm(&x, &w.attn_norm, c.norm_eps);
            let mut q = matvec(&w.wq, &xn, nh * hd);
            let mut k = matvec(&w.wk, &xn, kv_dim);
            let mut v = matvec(&w.wv, &xn, kv_dim);
            if let Some([bq, bk, bv]) = &w.bias {
                add_bias(&mut q, bq);
                add_bias(&mut k, bk);
                add_bias(&mut v, bv);
            }
            if let Some([qn, kn]) = &w.qk_norm {
                q = elementwise::rmsnorm(&q, qn, hd, c.norm_eps);
                k = elementwise::rmsnorm(&k, kn, hd, c.norm_eps);
            }
            rope(&mut q, nh, pos, c, l, self.rope_factors.as_deref());
            rope(&mut k, nkv, pos, c, l, self.rope_factors.as_deref());
            use crate::reference::kvquant::{rotate, roundtrip};
            if self.kv_quant > 0 {
                // Rows kept as stored: rotated (kv_rot), then quantized; the
                // query turns by the same rotation and the output turns back.
                let q = |x: &[f32]| x.chunks(hd).flat_map(|row| roundtrip(&rotate(row, self.kv_rot), self.kv_quant)).collect::<Vec<f32>>();
                self.k_cache[l].extend(q(&k));
                self.v_cache[l].extend(q(&v));
            } else {
                if self.kivi.is_some() {
                    self.kivi_keys[l].extend(k.iter().map(|&e| round(e)));
                }
                self.k_cache[l].extend(k.iter().map(|&e| round(e)));
                self.v_cache[l].extend(v.iter().map(|&e| round(e)));
            }
            let rot = if self.kv_quant > 0 { self.kv_rot } else { 0 };
            let q = rotate(&q, rot);
            self.queries[l].clone_from(&q);
            let (kc, vc) = (&self.k_cache[l], &self.v_cache[l]);
            let boxes = if self.kivi.is_some() { &self.kivi_keys[l] } else { kc };
            let n = kc.len() / kv_dim; // cached tokens (pos + 1 unless some were evicted)
            let slots = match self.quest {
                Some(qs) if qs.active && l >= qs.dense_layers => {
                    let upto = qs.window_from.map_or(n, |c| c.min(n));
                    let mut s = qs.slots(&q, nh, group, upto, self.kv_f16, |kvh, t| &boxes[t * kv_dim + kvh * hd..][..hd]);
                    s.iter_mut().for_each(|h| h.extend(upto..n));
                    s
                }
                // A windowed layer sees the last `size` cached tokens (positions
                // p - size + 1 ..= p while nothing was evicted).
                _ => vec![(n.saturating_sub(c.layer_window(l).unwrap_or(n))..n).collect::<Vec<usize>>(); nh],
            };
            let mut att = vec![0f32; nh * hd];
            for h in 0..nh {
                let kvh = h / group;
                let qh = &q[h * hd..(h + 1) * hd];
                let scores: Vec<f64> = slots[h]
                    .iter()
                    .map(|&t| {
                        let kt = &kc[t * kv_dim + kvh * hd..t * kv_dim + (kvh + 1) * hd];
                        let s = qh.iter().zip(kt).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / (hd as f64).sqrt();
                        match c.attn_softcap.map(f64::from) {
                            Some(cap) => cap * (s / cap).tanh(),
                            None => s,
                        }
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = slots[h].iter().zip(&e).map(|(&t, &p)| p * vc[t * kv_dim + kvh * hd + d] as f64).sum();
                    att[h * hd + d] = (acc / sum) as f32;
                }
            }
            let o = matvec(&w.wo, &rotate(&att, rot), dim);
            match (c.family.block(), &w.post_norms) {
                // x += o; x += down(silu(gate) * up)(norm(x))
                (Block::PreNorm, _) => {
                    x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                    let xn = rmsnorm(&x, &w.ffn_norm, c.norm_eps);
                    let g = matvec(&w.gate, &xn, c.hidden_dim);
                    let u = matvec(&w.up, &xn, c.hidden_dim);
                    let h: Vec<f32> = g.iter().zip(&u).map(|(&g, &u)| (g as f64 / (1.0 + (-g as f64).exp()) * u as f64) as f32).collect();
                    let o = matvec(&w.down, &h, dim);
                    x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                }
                // x += post_attn(o); x += post_ffn(down(gelu(gate) * up)(norm(x)))
                (Block::Sandwich, Some([post_attn, post_ffn])) => {
                    let o = rmsnorm(&o, post_attn, c.norm_eps);
                    x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                    let xn = rmsnorm(&x, &w.ffn_norm, c.norm_eps);
                    let g = matvec(&w.gate, &xn, c.hidden_dim);
                    let u = matvec(&w.up, &xn, c.hidden_dim);
                    let o = rmsnorm(&matvec(&w.down, &elementwise::geglu(&g, &u), dim), post_ffn, c.norm_eps);
                    x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                }
                (Block::Sandwich, None) => unreachable!("RefModel::new loads the sandwich block's post-norms"),
            }
        }
        let xn = rmsnorm(&x, &self.out_norm, c.norm_eps);
        self.pos += 1;
        let logits = matvec(self.output.as_ref().unwrap_or(&self.embed), &xn, c.vocab_size);
        match c.final_softcap {
            Some(cap) => elementwise::softcap(&logits, cap),
            None => logits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RefQuest;

    /// Two heads over one KV head, pages of 2, 4 full pages and the current
    /// one, one full page kept. Keys along channel 0 or 1; page 2's box is
    /// the widest in channel 0 but its keys score low.
    fn pick(width: f32, oracle: bool, q: [f32; 4]) -> Vec<usize> {
        let keys: [[f32; 2]; 9] = [[1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 3.0], [-4.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.5, 0.0], [0.0, 0.0]];
        let rq = RefQuest { page: 2, budget_pages: 2, unit: 2, dense_layers: 0, width, oracle, active: true, window_from: None };
        rq.slots(&q, 2, 2, 9, false, |_, t| &keys[t][..]).swap_remove(0)
    }

    #[test]
    fn oracle_keeps_the_page_holding_the_attention_and_width_moves_the_bound() {
        // q attends channel 1: page 1 (keys 0, 3) holds the attention.
        let q = [0.0, 2.0, 0.0, 2.0];
        assert_eq!(pick(1.0, true, q), vec![2, 3, 8]);
        assert_eq!(pick(1.0, false, q), vec![2, 3, 8]);
        // q along channel 0: page 2's box (-4..=3) bounds 12 (6 per head),
        // page 0's (1..=1) 4, and slot 5 (key 3) does hold nearly all the
        // softmax: the bound and the oracle keep page 2.
        let q = [2.0, 0.0, 2.0, 0.0];
        assert_eq!(pick(1.0, false, q), vec![4, 5, 8]);
        assert_eq!(pick(1.0, true, q), vec![4, 5, 8]);
        // Weighing the width 0 ranks page 0's centre (1) above page 2's
        // (-0.5): the centre alone misses a page of mixed keys.
        assert_eq!(pick(0.0, false, q), vec![0, 1, 8]);
    }
}
