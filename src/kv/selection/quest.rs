//! The `quest` selection part: options, per-layer page metadata and the
//! dispatches one layer adds to a forward pass (see `ops::quest`).
//!
//! `quest:budget=N|P%,page=16,dense_layers=2,group=shared|head,width=1`
//! - `budget`: tokens each selection unit attends per decode step, the
//!   current page included (rounded down to whole pages); default 512.
//! - `page`: slots per page (default 16, the paper's).
//! - `dense_layers`: the first layers attend every token (default 2).
//! - `group`: `shared` (default) lets the query heads of a KV head share one
//!   page list, scored by the sum of their page scores, so each selected K/V
//!   row is read once per group; `head` gives every query head its own pages,
//!   the paper's rule, reading up to `n_heads / n_kv_heads` times more KV.
//! - `width`: how a page is scored from its key box (per channel the max
//!   and min of its keys). Quest's bound `sum_i max(q_i max_i, q_i min_i)`
//!   is `q · centre + |q| · half-width`; `width=W` (0..=1) weighs the second
//!   term by W. 1 (default) is the paper's bound; lower values stop a wide
//!   box, a page of mixed tokens, from outranking a page whose keys match
//!   the query (docs/policies.md, "Quest's page score").
//!
//! Prefill always attends densely. Quest keeps its own page metadata
//! (written for every appended token, prefill included, and recomputed
//! after each compaction by `rebuild`) unless the storage keeps pages of
//! its own ([`Pages`]: a storage of compressed blocks); either way a decode
//! step of a sparse layer scores the pages, selects `budget / page` of them
//! (the newest always) and hands the storage the [`PageList`].

use super::super::seam::{PageList, Pages};
use super::super::spec::{Budget, Part};
use crate::gpu::{Gpu, storage_size, uniform_size};
use crate::kernels::Dispatch;
use crate::ops::attention::AttnShape;
use crate::ops::quest::{self as ops, QuestScratch, QuestShape};
use crate::{Error, Result};

pub const DEFAULT_BUDGET: usize = 512;
pub const DEFAULT_PAGE: u32 = 16;
pub const DEFAULT_DENSE_LAYERS: usize = 2;
pub const DEFAULT_WIDTH: f32 = 1.0;

/// Parsed `quest` options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuestOptions {
    pub budget: Budget,
    pub page: u32,
    pub dense_layers: usize,
    pub shared: bool,
    /// Weight of the key box's width term in a page's score (1: Quest's bound).
    pub width: f32,
}

impl QuestOptions {
    pub fn from_part(p: &Part) -> Result<QuestOptions> {
        let num = |key: &str, default: usize| -> Result<usize> {
            match p.get(key) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| Error::msg(format!("--kv quest: {key}={v} is not a whole number"))),
            }
        };
        let shared = match p.get("group").unwrap_or("shared") {
            "shared" => true,
            "head" => false,
            other => return Err(Error::msg(format!("--kv quest: group={other} (use `shared` or `head`)"))),
        };
        let page = num("page", DEFAULT_PAGE as usize)?;
        if page == 0 || page > 1024 {
            return Err(Error::msg(format!("--kv quest: page={page} is outside 1..=1024")));
        }
        let width = match p.get("width") {
            None => DEFAULT_WIDTH,
            Some(v) => match v.parse::<f32>() {
                Ok(w) if (0.0..=1.0).contains(&w) => w,
                _ => return Err(Error::msg(format!("--kv quest: width={v} is not a number in 0..=1"))),
            },
        };
        Ok(QuestOptions {
            budget: p.budget()?.unwrap_or(Budget::Tokens(DEFAULT_BUDGET)),
            page: page as u32,
            dense_layers: num("dense_layers", DEFAULT_DENSE_LAYERS)?,
            shared,
            width,
        })
    }
}

/// Quest's state for one model: metadata buffers of the sparse layers and
/// the per-step scratch they share.
pub struct Quest {
    pub opts: QuestOptions,
    pub shape: QuestShape,
    /// Per layer from `dense_layers` on: key max / min per page.
    kmax: Vec<wgpu::Buffer>,
    kmin: Vec<wgpu::Buffer>,
    scratch: QuestScratch,
    /// Whether the page metadata is Quest's own (else the storage's).
    own_meta: bool,
    /// Bytes of one metadata row (one KV head's `head_dim` elements).
    row_bytes: u64,
    /// Under eviction: per sparse layer a step uniform and the metadata
    /// update over its whole cache, run after each compaction.
    rebuild: Vec<(wgpu::Buffer, Dispatch)>,
}

impl Quest {
    /// `own_meta`: allocate the page metadata (else the storage keeps pages
    /// of its own and hands them to `select`).
    pub fn new(gpu: &Gpu, opts: QuestOptions, attn: AttnShape, n_layers: usize, own_meta: bool) -> Result<Quest> {
        let shape = Quest::shape_of(&opts, attn)?;
        let sparse = n_layers.saturating_sub(opts.dense_layers);
        let bytes = Quest::meta_bytes(&shape, own_meta, gpu.caps.f16);
        let kmax = (0..sparse).map(|i| gpu.buffer(&format!("quest.kmax{i}"), bytes)).collect();
        let kmin = (0..sparse).map(|i| gpu.buffer(&format!("quest.kmin{i}"), bytes)).collect();
        let row_bytes = shape.attn.head_dim as u64 * if gpu.caps.f16 { 2 } else { 4 };
        Ok(Quest { opts, shape, kmax, kmin, scratch: QuestScratch::new(gpu, &shape), own_meta, row_bytes, rebuild: Vec::new() })
    }

    /// Bytes `new` (and, with `rebuild`, `with_rebuild`) allocates for the
    /// same arguments: the sparse layers' metadata, the scratch, the
    /// rebuild step uniforms.
    pub fn bytes_for(opts: &QuestOptions, attn: AttnShape, n_layers: usize, own_meta: bool, rebuild: bool, f16: bool) -> Result<u64> {
        let shape = Quest::shape_of(opts, attn)?;
        let sparse = n_layers.saturating_sub(opts.dense_layers) as u64;
        let steps = if rebuild { sparse * uniform_size(std::mem::size_of::<crate::ops::Step>() as u64) } else { 0 };
        Ok(2 * sparse * storage_size(Quest::meta_bytes(&shape, own_meta, f16)) + QuestScratch::bytes_for(&shape) + steps)
    }

    /// The selection's geometry for `opts` over `attn`.
    fn shape_of(opts: &QuestOptions, attn: AttnShape) -> Result<QuestShape> {
        // A budget past the context reads everything: clamp it (buffers scale with it).
        let ctx = attn.max_seq as usize;
        let budget = opts.budget.tokens(ctx).min(ctx.next_multiple_of(opts.page as usize)) as u32;
        let unit = if opts.shared { attn.group() } else { 1 };
        QuestShape::new(attn, opts.page, budget, unit).map_err(|e| Error::msg(format!("--kv {e}")))
    }

    /// One sparse layer's `kmax` (or `kmin`) request: a placeholder where
    /// the metadata lives elsewhere.
    fn meta_bytes(shape: &QuestShape, own_meta: bool, f16: bool) -> u64 {
        if own_meta { shape.meta_bytes(f16) } else { 16 }
    }

    /// Whether layer `l` selects pages (else it attends densely).
    pub fn is_sparse(&self, l: usize) -> bool {
        l >= self.opts.dense_layers
    }

    /// Sparse layers.
    pub fn sparse_layers(&self) -> usize {
        self.kmax.len()
    }

    /// After layer `l`'s append of up to `max_tokens` tokens into
    /// `k_cache`: the page metadata update, where Quest keeps its own and
    /// the layer is sparse.
    pub fn record_meta(&self, gpu: &Gpu, l: usize, k_cache: &wgpu::Buffer, step: &wgpu::Buffer, max_tokens: u32) -> Option<Dispatch> {
        (self.own_meta && self.is_sparse(l)).then(|| self.meta(gpu, l, k_cache, step, max_tokens))
    }

    /// Metadata update after layer `l`'s KV append of up to `max_tokens` tokens.
    fn meta(&self, gpu: &Gpu, l: usize, k_cache: &wgpu::Buffer, step: &wgpu::Buffer, max_tokens: u32) -> Dispatch {
        let i = l - self.opts.dense_layers;
        ops::quest_meta(gpu, &self.shape, k_cache, &self.kmax[i], &self.kmin[i], step, max_tokens)
    }

    /// Prepare `rebuild` over the layers' key caches `k` (an eviction part
    /// moves slots, so every page's metadata must follow).
    pub fn with_rebuild(mut self, gpu: &Gpu, k: &[wgpu::Buffer]) -> Quest {
        let all = self.shape.attn.max_seq;
        self.rebuild = (self.opts.dense_layers..k.len())
            .map(|l| {
                let step = gpu.uniform(&format!("quest.rebuild_step{l}"), bytemuck::bytes_of(&crate::ops::Step::default()));
                let d = self.meta(gpu, l, &k[l], &step, all);
                (step, d)
            })
            .collect();
        self
    }

    /// After a compaction left `lens[l]` slots in layer `l`: recompute the
    /// metadata of every page of the sparse layers from the keys now in them.
    pub fn rebuild(&self, gpu: &Gpu, lens: &[usize]) {
        if self.rebuild.is_empty() {
            return;
        }
        for ((step, _), &len) in self.rebuild.iter().zip(&lens[self.opts.dense_layers..]) {
            let s = crate::ops::Step { pos: 0, n_tokens: len as u32, kv_len: len as u32, _pad: 0 };
            gpu.write(step, 0, bytemuck::bytes_of(&s));
        }
        let mut enc = gpu.encoder();
        gpu.record(&mut enc, "quest_rebuild", self.rebuild.iter().map(|(_, d)| d));
        gpu.submit(enc);
    }

    /// Layer `l`'s selection at a decode step: score the pages (the
    /// storage's `pages`, else Quest's own over `step`'s slots), select the
    /// budget's worth and hand back the list. None for a dense layer.
    pub fn select<'a>(&'a self, gpu: &Gpu, l: usize, q: &wgpu::Buffer, pages: Option<Pages>, step: &wgpu::Buffer) -> Option<([Dispatch; 2], PageList<'a>)> {
        if !self.is_sparse(l) {
            return None;
        }
        let i = l - self.opts.dense_layers;
        let (kmax, kmin, step) = match &pages {
            Some(p) => (p.kmax, p.kmin, p.step),
            None => (&self.kmax[i], &self.kmin[i], step),
        };
        let (s, sc) = (&self.shape, &self.scratch);
        let d = [ops::quest_score(gpu, s, self.opts.width, q, kmax, kmin, &sc.score, step), ops::quest_select(gpu, s, &sc.score, &sc.list, step)];
        Some((d, PageList { shape: s, scratch: sc }))
    }

    /// Bytes allocated (what `bytes_for` counts).
    pub fn allocated(&self) -> u64 {
        let sc = &self.scratch;
        let meta: u64 = self.kmax.iter().chain(&self.kmin).map(|b| b.size()).sum();
        let steps: u64 = self.rebuild.iter().map(|(b, _)| b.size()).sum();
        meta + [&sc.score, &sc.list, &sc.part_o, &sc.part_ml].iter().map(|b| b.size()).sum::<u64>() + steps
    }

    /// Slots one selection unit attends at a decode step over `len` slots.
    pub fn slots_per_unit(&self, len: usize) -> usize {
        let (page, bp) = (self.shape.page as usize, self.shape.budget_pages as usize);
        let n_pages = len.div_ceil(page);
        if n_pages <= bp { len } else { (bp - 1) * page + len - (n_pages - 1) * page }
    }

    /// K (or V) rows one sparse layer reads at a decode step over `len`
    /// slots, and metadata rows (kmax + kmin) read. Without selection (every
    /// page fits the budget) each KV head's rows are read once.
    pub fn rows_read(&self, len: usize) -> (usize, usize) {
        let s = &self.shape;
        let n_pages = len.div_ceil(s.page as usize);
        if n_pages <= s.budget_pages as usize {
            return (len * s.attn.n_kv_heads as usize, 0);
        }
        let units = s.n_units() as usize;
        (units * self.slots_per_unit(len), units * (n_pages - 1) * 2)
    }

    /// Bytes layer `l` reads at a decode step from pages covering `tokens`
    /// tokens that hold `bytes`: all of them in a dense layer or when every
    /// page fits the budget, else each unit's selected rows (a share of
    /// `bytes`) and the metadata of the pages it scores.
    pub fn read(&self, l: usize, tokens: usize, bytes: u64) -> u64 {
        if !self.is_sparse(l) || tokens == 0 {
            return bytes;
        }
        let (rows, meta) = self.rows_read(tokens);
        let all = (tokens * self.shape.attn.n_kv_heads as usize) as u64;
        bytes * rows as u64 / all + meta as u64 * self.row_bytes
    }

    /// Bytes of layer `l`'s page metadata over `tokens` tokens.
    pub fn meta_resident(&self, l: usize, tokens: usize) -> u64 {
        if self.is_sparse(l) { self.meta_rows(tokens) as u64 * self.row_bytes } else { 0 }
    }

    /// Metadata rows (kmax + kmin, per KV head) resident for `len` slots, per sparse layer.
    pub fn meta_rows(&self, len: usize) -> usize {
        2 * self.shape.attn.n_kv_heads as usize * len.div_ceil(self.shape.page as usize)
    }

    /// One line for `/kv`: what a decode step over `len` slots attends.
    pub fn describe(&self, len: usize) -> String {
        let s = &self.shape;
        let per_unit = self.slots_per_unit(len);
        format!(
            "quest: layers {}..{} select pages ({} of {} slots per {} per step; {} pages of {} tokens), the first {} attend all",
            self.opts.dense_layers,
            self.opts.dense_layers + self.sparse_layers(),
            per_unit,
            len,
            if self.opts.shared { "KV head" } else { "query head" },
            s.budget_pages,
            s.page,
            self.opts.dense_layers
        )
    }
}
