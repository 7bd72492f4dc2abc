//! Score-based eviction with per-layer budgets (SnapKV,
//! PyramidKV, DynamicKV, H2O, VATP, key-norm eviction): `snapkv`, `pyramidkv`, `dynamickv` (observation-window scores,
//! pooled), `h2o` (accumulated attention), `vatp` (accumulated attention ×
//! the value's L1 norm, sinks protected) and `knorm` (low key norm kept), each
//! with `alloc=uniform|pyramid|dynamic` budgets per layer.
//!
//! When it runs: after every multi-token call (a prompt, a chat turn) each
//! layer is cut to its budget; `h2o` and `vatp` also evict during decode, a
//! few slots at a time, whenever a layer would pass its budget. Every layer
//! attends the full cache during prefill, as in the papers. The cache keeps
//! the whole context's slots (the prompt is prefilled densely); resident
//! bytes count the kept tokens.
//!
//! On the GPU: `attn_accum` sums the attention probabilities (the window's
//! last rows, or every row and decode step), `evict_score` turns them into
//! per-slot scores, `evict_select` picks each head's kept slots and
//! `kv_compact` gathers them (and the scores) in place. DynamicKV's
//! re-allocation reads back only per-layer counts (`evict_budget`).

use super::super::spec::{Budget, Part};
use crate::gpu::{Gpu, storage_size, uniform_size};
use crate::kernels::Dispatch;
use crate::ops::Step;
use crate::ops::attention::AttnShape;
use crate::ops::evict::{self, Accum, BudgetParams, ScoreMode, ScoreParams, SelectParams};
use crate::{Error, Result};

/// How slots are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranking {
    /// H2O: accumulated attention of every query.
    Attention,
    /// VATP: accumulated attention × the value's L1 norm.
    ValueAware,
    /// Knorm: the lowest key L2 norms.
    KeyNorm,
    /// SnapKV's family: the observation window's attention, pooled.
    Window { max_pool: bool },
}

/// How the budget is shared among layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alloc {
    Uniform,
    /// PyramidKV: linearly fewer tokens in deeper layers.
    Pyramid,
    /// DynamicKV: from a global ranking of every layer's scores.
    Dynamic,
}

/// Options of a scored eviction part. Defaults per preset:
/// `snapkv`/`pyramidkv` window 8, kernel 7, max pooling (KVCache-Factory's
/// runner); `dynamickv` window 8, kernel 7, average pooling (DynamicKV's
/// Llama script); `h2o` half the budget recent; `vatp` half recent, 20
/// sinks (its README); `knorm` nothing protected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredOptions {
    pub ranking: Ranking,
    pub alloc: Alloc,
    pub budget: Budget,
    /// Observation window (window family): its tokens are always kept.
    pub window: usize,
    /// Pooling kernel (odd).
    pub kernel: usize,
    /// First tokens always kept.
    pub sinks: usize,
    /// Most recent tokens always kept (h2o, vatp); None: half the layer's budget.
    pub recent: Option<usize>,
}

/// DynamicKV's per-layer temporary maximum, in multiples of the average.
pub const R_MAX: usize = 10;
/// DynamicKV re-allocates after every `M`-th layer.
pub const M: usize = 4;
/// PyramidKV's ratio of the average to the smallest budget.
pub const BETA: f64 = 20.0;

impl ScoredOptions {
    pub fn from_part(p: &Part) -> Result<ScoredOptions> {
        let window_family = matches!(p.name.as_str(), "snapkv" | "pyramidkv" | "dynamickv");
        let (ranking, alloc) = match p.name.as_str() {
            "snapkv" => (Ranking::Window { max_pool: true }, Alloc::Uniform),
            "pyramidkv" => (Ranking::Window { max_pool: true }, Alloc::Pyramid),
            "dynamickv" => (Ranking::Window { max_pool: false }, Alloc::Dynamic),
            "h2o" => (Ranking::Attention, Alloc::Uniform),
            "vatp" => (Ranking::ValueAware, Alloc::Uniform),
            "knorm" => (Ranking::KeyNorm, Alloc::Uniform),
            other => return Err(Error::msg(format!("--kv {other} is not a scored eviction policy"))),
        };
        let mut o = ScoredOptions {
            ranking,
            alloc,
            budget: p.budget()?.unwrap_or(Budget::Tokens(1024)),
            window: if window_family { 8 } else { 0 },
            kernel: 7,
            sinks: if p.name == "vatp" { 20 } else { 0 },
            recent: None,
        };
        let name = &p.name;
        let count = |k: &str, v: &str| -> Result<usize> { v.parse().map_err(|_| Error::msg(format!("--kv {name}: {k}={v} is not a count"))) };
        for (k, v) in &p.options {
            let applies = match k.as_str() {
                "budget" => true,
                "alloc" => {
                    o.alloc = match v.as_str() {
                        "uniform" => Alloc::Uniform,
                        "pyramid" => Alloc::Pyramid,
                        "dynamic" => Alloc::Dynamic,
                        _ => return Err(Error::msg(format!("--kv {name}: alloc={v} is not uniform, pyramid or dynamic"))),
                    };
                    true
                }
                "window" => {
                    o.window = count(k, v)?;
                    window_family
                }
                "kernel" => {
                    o.kernel = count(k, v)?;
                    if o.kernel.is_multiple_of(2) {
                        return Err(Error::msg(format!("--kv {name}: kernel={v} must be odd")));
                    }
                    window_family
                }
                "pool" => {
                    let max_pool = match v.as_str() {
                        "max" => true,
                        "avg" => false,
                        _ => return Err(Error::msg(format!("--kv {name}: pool={v} is not max or avg"))),
                    };
                    o.ranking = Ranking::Window { max_pool };
                    window_family
                }
                "sinks" => {
                    o.sinks = count(k, v)?;
                    matches!(ranking, Ranking::Attention | Ranking::ValueAware)
                }
                "recent" => {
                    o.recent = Some(count(k, v)?);
                    matches!(ranking, Ranking::Attention | Ranking::ValueAware)
                }
                _ => false,
            };
            if !applies {
                return Err(Error::msg(format!("--kv {name} has no option '{k}'")));
            }
        }
        if window_family && o.window == 0 {
            return Err(Error::msg(format!("--kv {name}: window= must be at least 1")));
        }
        Ok(o)
    }

    /// What a multi-token call leaves in the accumulators before the cut:
    /// nothing (knorm), the window's attention (the window family), or every
    /// row's (h2o, vatp). Policies with equal keys differ only in their cut.
    pub fn accum_key(&self) -> (u8, usize) {
        match self.ranking {
            Ranking::KeyNorm => (0, 0),
            Ranking::Window { .. } => (1, self.window),
            Ranking::Attention | Ranking::ValueAware => (2, 0),
        }
    }

    /// Whether this policy also evicts during decode.
    pub fn evicts_in_decode(&self) -> bool {
        matches!(self.ranking, Ranking::Attention | Ranking::ValueAware)
    }
}

/// PyramidKV's budgets (tokens before the window) for `layers` layers with
/// an average `base` and at most `limit` each: from `2·base − base/β` down
/// to `base/β` in equal steps (rounded down), capped at `limit`.
pub fn pyramid_budgets(base: usize, limit: usize, layers: usize) -> Vec<usize> {
    if base >= limit {
        return vec![limit; layers];
    }
    let b = base as f64;
    let mut min = b / BETA;
    let mut max = 2.0 * b - min;
    if max >= limit as f64 {
        max = limit as f64;
        min = 2.0 * b - max;
    }
    let step = if layers > 1 { (max - min) / (layers - 1) as f64 } else { 0.0 };
    (0..layers).map(|l| ((max - l as f64 * step).floor().max(0.0) as usize).min(limit)).collect()
}

/// DynamicKV's re-allocation (arXiv 2412.14838, its layer-budget update) from the counts
/// of each update: `updates` holds, for an update after layer `l`, how many
/// of the global top `base · heads · (l + 1)` scores each layer `0..=l` had.
/// Every layer starts at `b_max`; an update sets `b_k = ⌊b_max · c_k / Σc⌋`,
/// rescales them to sum to `base · layers` (`⌊b_k / s⌋`, the rounding
/// remainder to layer `l`), caps them at `limit` and keeps each layer's
/// smallest budget so far. Returns tokens before the window per layer.
pub fn dynamic_budgets(updates: &[Vec<usize>], base: usize, b_max: usize, limit: usize, layers: usize) -> Vec<usize> {
    let mut cur = vec![b_max.min(limit); layers];
    let target = base * layers;
    for counts in updates {
        let total: usize = counts.iter().sum();
        if total == 0 {
            continue;
        }
        let mut b: Vec<usize> = counts.iter().map(|&c| b_max * c / total).collect();
        let sum: usize = b.iter().sum();
        if sum == 0 {
            continue;
        }
        // ⌊b_k / (sum / target)⌋ = ⌊b_k · target / sum⌋
        for x in b.iter_mut() {
            *x = *x * target / sum;
        }
        let rest = target.saturating_sub(b.iter().sum());
        *b.last_mut().expect("an update covers at least one layer") += rest;
        for (k, x) in b.iter().enumerate() {
            cur[k] = cur[k].min((*x).min(limit));
        }
    }
    cur
}

/// The layers after which DynamicKV re-allocates: every `M`-th, and the last
/// one (which the paper's models, with a multiple of `M` layers, reach anyway).
pub fn update_layers(layers: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..layers).filter(|l| l % M == M - 1).collect();
    if layers > 0 && v.last() != Some(&(layers - 1)) {
        v.push(layers - 1);
    }
    v
}

/// A storage's compaction of one layer to the slots a keep list holds
/// (layer, keep, counts, scores to move along).
pub type Compaction<'a> = dyn Fn(usize, &wgpu::Buffer, &wgpu::Buffer, Option<&wgpu::Buffer>) -> Result<Vec<Dispatch>> + 'a;

/// Per-layer GPU state of the policy.
struct Layer {
    /// Accumulated attention `[n_kv_heads][max_seq]` f32.
    acc: wgpu::Buffer,
    list: wgpu::Buffer,
    counts: wgpu::Buffer,
    step: wgpu::Buffer,
    score_params: wgpu::Buffer,
    select_params: wgpu::Buffer,
    score: Dispatch,
    select: Dispatch,
    compact: Vec<Dispatch>,
}

/// The per-layer counts of a [`Scored`] policy, as a saved cache holds them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScoredState {
    pub lens: Vec<usize>,
    pub scored: Vec<usize>,
    pub budgets: Vec<usize>,
}

/// The policy for one cache.
pub struct Scored {
    pub opts: ScoredOptions,
    /// Average tokens per layer.
    pub budget: usize,
    /// Tokens each layer is cut to, from the last allocation.
    pub budgets: Vec<usize>,
    /// Cached tokens per layer.
    pub lens: Vec<usize>,
    /// Per layer, the cached tokens the last window scoring saw.
    scored: Vec<usize>,
    shape: AttnShape,
    layers: Vec<Layer>,
    /// `[layers][n_kv_heads][max_seq]` f32: every layer's slot scores.
    score: wgpu::Buffer,
    /// DynamicKV's ranking: dispatch, params, per-layer prefix and counts.
    ranking: Option<(Dispatch, wgpu::Buffer, wgpu::Buffer, wgpu::Buffer)>,
}

impl Scored {
    /// The policy over a context of `ctx` tokens; `shape.max_seq` slots.
    /// `k`, `v`: each layer's cache buffers; `compaction(l, keep, counts,
    /// acc)`: the storage's compaction of layer `l` to the slots `keep` lists.
    pub fn new(
        gpu: &Gpu,
        opts: ScoredOptions,
        shape: AttnShape,
        ctx: usize,
        k: &[wgpu::Buffer],
        v: &[wgpu::Buffer],
        compaction: &Compaction,
    ) -> Result<Scored> {
        let budget = opts.budget.tokens(ctx).min(ctx);
        let least = opts.sinks + opts.window + 1;
        if budget < least {
            return Err(Error::msg(format!(
                "--kv: a budget of {budget} tokens per layer leaves no room beside {} sinks and a window of {} (raise budget=)",
                opts.sinks, opts.window
            )));
        }
        let n_layers = k.len();
        let score = gpu.buffer("evict.score", Scored::score_bytes(&shape, n_layers));
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let [acc, list, counts] = Scored::layer_buffers(&shape).map(|(label, bytes)| gpu.buffer(&format!("{label}{l}"), bytes));
            let step = gpu.uniform(&format!("evict.step{l}"), bytemuck::bytes_of(&Step::default()));
            let score_params = gpu.upload("evict_score.params", bytemuck::bytes_of(&ScoreParams::default()));
            let select_params = gpu.upload("evict_select.params", bytemuck::bytes_of(&SelectParams::default()));
            let score_d = evict::evict_score(gpu, &shape, &k[l], &v[l], &acc, &score, &score_params);
            let select = evict::evict_select(gpu, &shape, &score, &list, &counts, &select_params);
            let compact = compaction(l, &list, &counts, Some(&acc))?;
            layers.push(Layer { acc, list, counts, step, score_params, select_params, score: score_d, select, compact });
        }
        let ranking = if opts.alloc == Alloc::Dynamic {
            let params = gpu.upload("evict_budget.params", bytemuck::bytes_of(&BudgetParams { max_seq: 0, n_kv_heads: 0, n_layers: 0, keep: 0 }));
            let [prefix, counts] = Scored::ranking_buffers(n_layers).map(|(label, bytes)| gpu.buffer(label, bytes));
            let d = evict::evict_budget(gpu, &shape, n_layers as u32, &score, &prefix, &counts, &params)?;
            Some((d, params, prefix, counts))
        } else {
            None
        };
        Ok(Scored { opts, budget, budgets: vec![budget; n_layers], lens: vec![0; n_layers], scored: vec![0; n_layers], shape, layers, score, ranking })
    }

    /// Bytes `new` allocates for the same options over `n_layers` layers of
    /// `shape.max_seq` slots: the score buffer, every layer's accumulator,
    /// kept list, counts, step and params, and DynamicKV's ranking buffers.
    /// (The dispatches' own params uniforms are not counted.)
    pub fn bytes_for(opts: &ScoredOptions, shape: &AttnShape, n_layers: usize) -> u64 {
        let sum = |b: &[(&str, u64)]| b.iter().map(|&(_, b)| storage_size(b)).sum::<u64>();
        let params = storage_size(size_of::<ScoreParams>() as u64) + storage_size(size_of::<SelectParams>() as u64);
        let layer = sum(&Scored::layer_buffers(shape)) + uniform_size(size_of::<Step>() as u64) + params;
        let ranking = match opts.alloc {
            Alloc::Dynamic => storage_size(size_of::<BudgetParams>() as u64) + sum(&Scored::ranking_buffers(n_layers)),
            _ => 0,
        };
        storage_size(Scored::score_bytes(shape, n_layers)) + n_layers as u64 * layer + ranking
    }

    /// `[layers][n_kv_heads][max_seq]` f32.
    fn score_bytes(shape: &AttnShape, n_layers: usize) -> u64 {
        4 * n_layers as u64 * shape.n_kv_heads as u64 * shape.max_seq as u64
    }

    /// One layer's (label prefix, requested bytes): accumulator, kept list, counts.
    fn layer_buffers(shape: &AttnShape) -> [(&'static str, u64); 3] {
        let (heads, ms) = (shape.n_kv_heads as u64, shape.max_seq as u64);
        [("evict.acc", 4 * heads * ms), ("evict.keep", 4 * heads * ms), ("evict.counts", 4 * heads)]
    }

    /// DynamicKV's per-layer prefix and counts.
    fn ranking_buffers(n_layers: usize) -> [(&'static str, u64); 2] {
        [("evict_budget.prefix", 4 * n_layers as u64), ("evict_budget.counts", 4 * n_layers as u64)]
    }

    /// Layer `l`'s step uniform (its own cached length).
    pub fn step(&self, l: usize) -> &wgpu::Buffer {
        &self.layers[l].step
    }

    /// Layer `l`'s kept slots after its last cut: `[n_kv_heads][max_seq]` u32 lists.
    pub fn kept(&self, l: usize) -> (&wgpu::Buffer, &wgpu::Buffer) {
        (&self.layers[l].list, &self.layers[l].counts)
    }

    /// Every layer's slot scores from the last ranking (`[layers][n_kv_heads][max_seq]` f32).
    pub fn scores(&self) -> &wgpu::Buffer {
        &self.score
    }

    /// The dispatch that feeds this layer's scores in a call of `n` tokens:
    /// the window's last rows (prefill, window family) or every query row and
    /// decode step (h2o, vatp); `lse` is the attention's log-sum-exp.
    pub fn accumulate(&self, gpu: &Gpu, l: usize, n: usize, q: &wgpu::Buffer, k: &wgpu::Buffer, lse: &wgpu::Buffer) -> Option<Dispatch> {
        let (rows, mode) = match self.opts.ranking {
            Ranking::KeyNorm => return None,
            Ranking::Window { .. } if n == 1 => return None,
            Ranking::Window { .. } => (self.opts.window as u32, Accum::Set),
            Ranking::Attention | Ranking::ValueAware => (n as u32, Accum::Add),
        };
        Some(evict::attn_accum(gpu, &self.shape, q, k, lse, &self.layers[l].acc, &self.layers[l].step, rows, mode))
    }

    /// Fewest tokens the last chunk of a multi-token call should carry (the
    /// observation window).
    pub fn min_last_chunk(&self) -> usize {
        self.opts.window.max(1)
    }

    /// Before a call of `n` tokens at position `pos`: cut the layers that
    /// would pass their budget (decode under h2o/vatp) or the cache's slots,
    /// then write every layer's step.
    pub fn before_call(&mut self, gpu: &Gpu, pos: usize, n: usize) -> usize {
        let ms = self.shape.max_seq as usize;
        let mut cuts = Vec::new();
        for l in 0..self.lens.len() {
            let len = self.lens[l];
            let b = self.budgets[l];
            if n == 1 && self.opts.evicts_in_decode() && len + 1 > b {
                // Free a few slots at once so a compaction runs every few steps.
                let slack = (b / 8).clamp(1, 32).min(b.saturating_sub(self.protected(b, 0)).max(1));
                cuts.push((l, b - slack, 0));
            } else if len + n > ms {
                let target = b.min(ms - n);
                let unscored = len - self.scored[l].min(len);
                cuts.push((l, target, unscored));
            }
        }
        let evicted = self.cut(gpu, &cuts, true);
        for (l, layer) in self.layers.iter().enumerate() {
            let step = Step { pos: pos as u32, n_tokens: n as u32, kv_len: (self.lens[l] + n) as u32, _pad: 0 };
            gpu.write(&layer.step, 0, bytemuck::bytes_of(&step));
        }
        evicted
    }

    /// Count `n` tokens appended to every layer.
    pub fn advance(&mut self, n: usize) {
        for len in self.lens.iter_mut() {
            *len += n;
        }
    }

    /// After a call of `n` tokens whose last chunk carried `last`: after a
    /// multi-token call, share out the budget and cut every layer to it.
    /// Returns the tokens evicted per layer on average.
    pub fn after_call(&mut self, gpu: &Gpu, n: usize, last: usize) -> Result<usize> {
        if n == 1 {
            return Ok(0);
        }
        // The observation window: the last chunk's tail.
        let w = self.opts.window.min(last);
        self.scores_all(gpu, w);
        self.budgets = self.allocate(gpu, w)?;
        self.scored = self.lens.clone();
        let cuts: Vec<(usize, usize, usize)> = (0..self.lens.len()).map(|l| (l, self.budgets[l], w)).collect();
        Ok(self.cut(gpu, &cuts, false))
    }

    /// Slots a layer cut to `keep` protects at its tail beyond `extra`.
    fn protected(&self, keep: usize, extra: usize) -> usize {
        let recent = match self.opts.ranking {
            Ranking::Attention | Ranking::ValueAware => self.opts.recent.unwrap_or(keep / 2),
            _ => 0,
        };
        (recent.max(extra) + self.opts.sinks).min(keep)
    }

    /// Write every layer's slot scores (`w`: the window at the tail).
    fn scores_all(&self, gpu: &Gpu, w: usize) {
        for l in 0..self.layers.len() {
            self.write_score_params(gpu, l, w);
        }
        let mut enc = gpu.encoder();
        gpu.record(&mut enc, "evict_score", self.layers.iter().map(|x| &x.score));
        gpu.submit(enc);
    }

    fn write_score_params(&self, gpu: &Gpu, l: usize, w: usize) {
        let (mode, radius) = match self.opts.ranking {
            Ranking::Attention => (ScoreMode::Attention, 0),
            Ranking::ValueAware => (ScoreMode::ValueAware, 0),
            Ranking::KeyNorm => (ScoreMode::KeyNorm, 0),
            Ranking::Window { max_pool: true } => (ScoreMode::MaxPool, self.opts.kernel / 2),
            Ranking::Window { max_pool: false } => (ScoreMode::AvgPool, self.opts.kernel / 2),
        };
        let ms = self.shape.max_seq;
        let len = self.lens[l];
        let p = ScoreParams {
            max_seq: ms,
            len: len as u32,
            prefix: len.saturating_sub(w) as u32,
            mode: mode as u32,
            radius: radius as u32,
            out_base: (l * self.shape.n_kv_heads as usize) as u32 * ms,
            _p: [0; 2],
        };
        gpu.write(&self.layers[l].score_params, 0, bytemuck::bytes_of(&p));
    }

    /// Per-layer budgets for the cached lengths, `w` window slots at the tail.
    fn allocate(&self, gpu: &Gpu, w: usize) -> Result<Vec<usize>> {
        let layers = self.lens.len();
        let base = self.budget.saturating_sub(w);
        let limits: Vec<usize> = self.lens.iter().map(|&len| len.saturating_sub(w)).collect();
        let limit = *limits.iter().max().unwrap_or(&0);
        // A budget covering every layer keeps everything, and stays the
        // layers' budget while they grow.
        if self.opts.alloc == Alloc::Uniform || base >= limit {
            return Ok(vec![self.budget; layers]);
        }
        let prefix = match self.opts.alloc {
            Alloc::Pyramid => pyramid_budgets(base, limit, layers),
            _ => {
                let updates = self.rank(gpu, &limits, base)?;
                dynamic_budgets(&updates, base, (R_MAX * base).min(limit), limit, layers)
            }
        };
        Ok(prefix.iter().map(|&b| b + w).collect())
    }

    /// DynamicKV's ranking counts for every update layer.
    fn rank(&self, gpu: &Gpu, limits: &[usize], base: usize) -> Result<Vec<Vec<usize>>> {
        let (d, params, prefix, counts) = self.ranking.as_ref().expect("dynamic allocation builds its ranking");
        let heads = self.shape.n_kv_heads as usize;
        let words: Vec<u32> = limits.iter().map(|&x| x as u32).collect();
        gpu.write(prefix, 0, bytemuck::cast_slice(&words));
        let mut out = Vec::new();
        for l in update_layers(limits.len()) {
            let valid: usize = limits[..=l].iter().sum::<usize>() * heads;
            let keep = (base * heads * (l + 1)).clamp(1, valid.max(1));
            let p = BudgetParams { max_seq: self.shape.max_seq, n_kv_heads: heads as u32, n_layers: (l + 1) as u32, keep: keep as u32 };
            gpu.write(params, 0, bytemuck::bytes_of(&p));
            let mut enc = gpu.encoder();
            gpu.record(&mut enc, "evict_budget", [d]);
            let b = gpu.readback_with(Some(enc), counts, 0, 4 * (l + 1) as u64);
            out.push(bytemuck::pod_collect_to_vec::<u8, u32>(&b).into_iter().map(|c| c as usize).collect());
        }
        Ok(out)
    }

    /// Cut each `(layer, keep, tail)`: select the layer's `keep` best slots
    /// (its sinks, its recent share and the last `tail` slots protected) and
    /// gather them; `rescore` first ranks by the scores as they are now
    /// (otherwise `scores_all` just did). Returns the tokens evicted (summed
    /// over layers, divided by the layer count).
    fn cut(&mut self, gpu: &Gpu, cuts: &[(usize, usize, usize)], rescore: bool) -> usize {
        let cuts: Vec<_> = cuts.iter().filter(|&&(l, keep, _)| keep < self.lens[l]).copied().collect();
        if cuts.is_empty() {
            return 0;
        }
        let ms = self.shape.max_seq;
        let heads = self.shape.n_kv_heads as usize;
        let mut list: Vec<&Dispatch> = Vec::new();
        for &(l, keep, tail) in &cuts {
            let prot = self.protected(keep, tail);
            let sinks = self.opts.sinks.min(keep);
            let p = SelectParams {
                max_seq: ms,
                len: self.lens[l] as u32,
                keep: keep as u32,
                sinks: sinks as u32,
                recent: (prot - sinks) as u32,
                max_keep: ms,
                score_base: (l * heads) as u32 * ms,
                _p: 0,
            };
            gpu.write(&self.layers[l].select_params, 0, bytemuck::bytes_of(&p));
            if rescore {
                self.write_score_params(gpu, l, tail);
                list.push(&self.layers[l].score);
            }
            list.push(&self.layers[l].select);
            list.extend(&self.layers[l].compact);
        }
        let mut enc = gpu.encoder();
        gpu.record(&mut enc, "evict", list);
        gpu.submit(enc);
        let mut evicted = 0;
        for &(l, keep, _) in &cuts {
            evicted += self.lens[l] - keep;
            self.lens[l] = keep;
            self.scored[l] = self.scored[l].min(keep);
        }
        evicted / self.lens.len()
    }

    /// One line for `/kv`: ranking, allocation and per-layer budgets.
    pub fn describe(&self) -> String {
        let o = &self.opts;
        let ranking = match o.ranking {
            Ranking::Attention => "accumulated attention (h2o)".to_string(),
            Ranking::ValueAware => format!("accumulated attention x value L1 norm (vatp), {} sinks", o.sinks),
            Ranking::KeyNorm => "lowest key L2 norm (knorm)".to_string(),
            Ranking::Window { max_pool } => {
                format!("window of {} queries, {}-pooled over {} (snapkv family)", o.window, if max_pool { "max" } else { "avg" }, o.kernel)
            }
        };
        let alloc = match o.alloc {
            Alloc::Uniform => "uniform",
            Alloc::Pyramid => "pyramid",
            Alloc::Dynamic => "dynamic",
        };
        let when = if o.evicts_in_decode() { "after each prompt and while decoding" } else { "after each prompt" };
        format!("evict by {ranking}, {alloc} budgets averaging {} tokens per layer, cut {when}; budgets now {:?}", self.budget, self.budgets)
    }

    /// The most tokens any layer holds.
    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    /// Bytes of the policy's own buffers (what `bytes_for` counts): the
    /// scores, every layer's accumulator, kept list, counts, step and
    /// params, DynamicKV's ranking buffers.
    pub fn allocated(&self) -> u64 {
        let layers: u64 =
            self.layers.iter().map(|y| [&y.acc, &y.list, &y.counts, &y.step, &y.score_params, &y.select_params].iter().map(|b| b.size()).sum::<u64>()).sum();
        let ranking = self.ranking.as_ref().map_or(0, |(_, params, prefix, counts)| params.size() + prefix.size() + counts.size());
        self.score.size() + layers + ranking
    }

    /// Take the lengths and accumulators a call left in `src` (equal
    /// `accum_key` and shape), or, from no policy, `len` tokens per layer.
    pub fn copy_from(&mut self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, src: Option<&Scored>, len: usize) {
        let Some(src) = src else {
            self.lens.iter_mut().for_each(|x| *x = len);
            return;
        };
        self.lens.clone_from(&src.lens);
        self.scored.clone_from(&src.scored);
        self.budgets.clone_from(&src.budgets);
        if self.opts.accum_key().0 != 0 {
            for (d, s) in self.layers.iter().zip(&src.layers) {
                gpu.copy(enc, &s.acc, 0, &d.acc, 0, s.acc.size());
            }
        }
    }

    /// What a saved cache needs besides its K/V rows: the lengths, budgets
    /// and scored counts per layer.
    pub fn state(&self) -> ScoredState {
        ScoredState { lens: self.lens.clone(), scored: self.scored.clone(), budgets: self.budgets.clone() }
    }

    /// Take a saved `state` (same layer count, checked by the caller).
    pub fn set_state(&mut self, st: &ScoredState) {
        self.lens.clone_from(&st.lens);
        self.scored.clone_from(&st.scored);
        self.budgets.clone_from(&st.budgets);
    }

    /// Layer `l`'s accumulated attention `[n_kv_heads][max_seq]` f32, when
    /// the ranking carries it from call to call (h2o, vatp).
    pub fn carried_scores(&self, l: usize) -> Option<&wgpu::Buffer> {
        self.opts.evicts_in_decode().then(|| &self.layers[l].acc)
    }

    /// Forget every token: lengths to 0, accumulated scores cleared.
    pub fn reset(&mut self, gpu: &Gpu) {
        self.lens.iter_mut().for_each(|x| *x = 0);
        self.scored.iter_mut().for_each(|x| *x = 0);
        self.budgets = vec![self.budget; self.lens.len()];
        let mut enc = gpu.encoder();
        for layer in &self.layers {
            enc.clear_buffer(&layer.acc, 0, None);
        }
        gpu.submit(enc);
    }
}
