//! The KV cache: storage shared by every policy, and the `--kv` spec.
//! Which parts combine, and what a spec resolves to before anything is
//! allocated, is `compose.rs`; one layer's attention is `attend.rs`.
//!
//! Dense storage: per layer one K and one V buffer of `kv_t` (f16 where the
//! adapter has SHADER_F16, else f32), laid out `[n_kv_heads][max_seq][head_dim]`,
//! allocated once: the whole context, an eviction policy's budget, or under
//! `mustafar` storage the dense window of recent tokens (older ones live in
//! its compressed stores). Keys are stored post-RoPE, so a slot need not
//! equal a position (eviction compacts slots; `pos` counts positions, `len`
//! cached tokens).

pub mod attend;
pub mod compose;
pub mod mustafar;
pub mod quest;
pub mod scored;
pub mod snapshot;
pub mod spec;
pub mod streaming;

use crate::Result;
use crate::config::ModelConfig;
use crate::gpu::{Caps, Gpu, storage_size};
use crate::kernels::Dispatch;
use crate::ops::attention::{AttnKind, AttnShape};
use crate::ops::evict;
use crate::ops::mustafar::T as BLOCK;
pub use attend::{AttnScratch, LayerIo, MAX_CHUNK};
use compose::Layout;
pub use mustafar::{Mustafar, MustafarOptions};
pub use quest::{Quest, QuestOptions};
pub use scored::{Scored, ScoredOptions};
pub use spec::{Budget, Kind, KvSpec};
pub use streaming::{Streaming, StreamingOptions};

pub struct KvCache {
    /// Per layer: `[n_kv_heads][max_seq][head_dim]` keys (post-RoPE).
    pub k: Vec<wgpu::Buffer>,
    /// Per layer: `[n_kv_heads][max_seq][head_dim]` values.
    pub v: Vec<wgpu::Buffer>,
    /// Slots of `k` / `v` per layer and head (the context size, the eviction
    /// budget, or Mustafar's dense window).
    pub max_seq: usize,
    /// Most tokens cached at once (`max_seq`, or the context under Mustafar).
    pub capacity: usize,
    /// The context the cache was made for (`--ctx`: what a percentage budget is of).
    pub ctx: usize,
    /// Cached tokens (the same in every layer).
    pub len: usize,
    /// Position of the next token (= len until something is evicted).
    pub pos: usize,
    pub spec: KvSpec,
    /// The `quest` selection part, when the spec has one.
    pub quest: Option<Quest>,
    /// The `streaming` eviction part, when the spec has one.
    pub streaming: Option<Streaming>,
    /// The `mustafar` storage part, when the spec has one.
    pub mustafar: Option<Mustafar>,
    /// A scored eviction part (h2o, snapkv, ...), when the spec has one.
    pub scored: Option<Scored>,
    /// Per layer: the compaction to the slots in `keep` / `counts`.
    compact: Vec<Dispatch>,
    keep: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// Tokens evicted since the last reset.
    pub evicted: usize,
    /// The attention's shape over the dense slots (`max_seq`).
    pub attn: AttnShape,
    /// Scratch the attention kernels of every layer reuse.
    pub scratch: AttnScratch,
    elem_bytes: usize,
    n_layers: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl KvCache {
    /// Bytes `new` allocates on an adapter with `caps` for `spec` over
    /// `ctx` tokens: the dense K/V slots, the keep lists, every part's
    /// buffers (scored eviction's scores, Quest's metadata and scratch,
    /// Mustafar's stores and dense scratch) and the attention scratch.
    /// Mustafar's pools grow later with what they hold: only their first
    /// size is counted.
    pub fn bytes_for(spec: &KvSpec, cfg: &ModelConfig, ctx: usize, caps: &Caps) -> Result<u64> {
        let l = KvCache::layout(spec, cfg, ctx, caps.f16)?;
        let dense = 2 * l.n_layers as u64 * storage_size(l.layer_bytes());
        let keep = if l.keep { l.keep_buffers().iter().map(|&(_, b)| storage_size(b)).sum() } else { 0 };
        let quest = match &l.quest {
            Some((o, shape, own)) => Quest::bytes_for(o, *shape, l.n_layers, *own, *own, caps.f16)?,
            None => 0,
        };
        let (mustafar, extra) = match &l.mustafar {
            Some(o) => (Mustafar::bytes_for(o, l.context, l.n_layers, l.quest.is_some(), caps.f16)?, Mustafar::decode_parts_for(o, l.context)?),
            None => (0, 0),
        };
        let scored = l.scored.as_ref().map_or(0, |o| Scored::bytes_for(o, &l.attn, l.n_layers));
        let scratch = AttnScratch::bytes_for(&l.attn, &l.context, extra, AttnKind::for_caps(caps));
        Ok(dense + keep + quest + mustafar + scored + scratch)
    }

    /// `ctx`: the context in tokens (what a percentage budget is of).
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, ctx: usize, spec: KvSpec) -> Result<KvCache> {
        let lay = KvCache::layout(&spec, cfg, ctx, gpu.caps.f16)?;
        let Layout { streaming, max_seq, capacity, attn, context, elem_bytes, kv_dim, .. } = lay;
        // The binding limit was checked by `AttnShape::check` before this.
        let per_layer = lay.layer_bytes();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for l in 0..cfg.n_layers {
            k.push(gpu.buffer(&format!("kv.k{l}"), per_layer));
            v.push(gpu.buffer(&format!("kv.v{l}"), per_layer));
        }
        let quest = match lay.quest {
            Some((o, shape, false)) => Some(Quest::new(gpu, o, shape, cfg.n_layers, false)?),
            Some((o, shape, true)) => {
                let q = Quest::new(gpu, o, shape, cfg.n_layers, true)?;
                // Rebuilt after each compaction, and after a saved cache is restored.
                Some(q.with_rebuild(gpu, &k))
            }
            None => None,
        };
        let mustafar = match lay.mustafar {
            Some(o) => Some(Mustafar::new(gpu, o, context, cfg.n_layers, lay.sinks, quest.is_some())?),
            None => None,
        };
        // Eviction gathers kept slots; Mustafar shifts its window down the same way.
        let (mut compact, mut keep) = (Vec::new(), None);
        if lay.keep {
            let [list, counts] = lay.keep_buffers().map(|(label, bytes)| gpu.buffer(label, bytes));
            for l in 0..cfg.n_layers {
                compact.push(evict::kv_compact(gpu, &attn, &k[l], &v[l], &list, &counts, None, max_seq as u32)?);
            }
            keep = Some((list, counts));
        }
        let scored = match lay.scored {
            Some(o) => Some(Scored::new(gpu, o, attn, ctx, &k, &v)?),
            None => None,
        };
        let scratch = AttnScratch::new(gpu, &attn, &context, mustafar.as_ref().map_or(0, |m| m.decode_parts()))?;
        Ok(KvCache {
            k,
            v,
            max_seq,
            capacity,
            ctx,
            len: 0,
            pos: 0,
            spec,
            quest,
            streaming,
            mustafar,
            scored,
            compact,
            keep,
            evicted: 0,
            attn,
            scratch,
            elem_bytes,
            n_layers: cfg.n_layers,
            kv_dim,
            head_dim: cfg.head_dim,
        })
    }

    /// Tokens the next calls may still add: None when an eviction policy makes
    /// room as needed (`max_call` tokens per call at most).
    pub fn room(&self) -> Option<usize> {
        match (self.streaming, &self.scored) {
            (None, None) => Some(self.capacity - self.len),
            _ => None,
        }
    }

    /// Most tokens one forward call may carry.
    pub fn max_call(&self) -> usize {
        match (&self.mustafar, self.streaming) {
            // The window holds the sinks and up to `window + 63` tokens between calls.
            (Some(m), Some(_)) => (self.max_seq - m.sinks - m.opts.window - (BLOCK - 1)).min(MAX_CHUNK),
            (None, Some(s)) => s.max_call(),
            _ => self.max_seq,
        }
    }

    /// Before a call of `n` tokens: under Mustafar, compress what left the
    /// window, evict the oldest blocks the call would push past an eviction
    /// budget, and set the window's step; under eviction alone, compact to
    /// the policy's kept slots when the call would pass the budget. Returns
    /// the kept slots when it compacted the dense cache for eviction.
    pub fn make_room(&mut self, gpu: &Gpu, n: usize) -> Result<Option<Vec<usize>>> {
        if let Some(s) = &mut self.scored {
            let before = s.lens.clone();
            self.evicted += s.before_call(gpu, self.pos, n);
            self.len = s.max_len();
            if let (Some(q), true) = (&self.quest, s.lens != before) {
                q.rebuild(gpu, &s.lens);
            }
            return Ok(None);
        }
        if let Some(m) = &mut self.mustafar {
            let w = self.len - m.compressed();
            let moved = m.compress(gpu, &self.k, &self.v, w)?;
            let sinks = m.sinks.min(w);
            if let Some(s) = self.streaming {
                let over = (self.len + n).saturating_sub(s.budget);
                let blocks = over.div_ceil(BLOCK) as u32;
                debug_assert!(blocks <= m.blocks, "max_call keeps a call within the budget");
                m.evict(blocks);
                self.len -= blocks as usize * BLOCK;
                self.evicted += blocks as usize * BLOCK;
            }
            m.begin_call(gpu, w - moved, self.pos, n);
            if moved > 0 {
                self.gather(gpu, &(0..sinks).chain(sinks + moved..w).collect::<Vec<_>>());
            }
            return Ok(None);
        }
        let Some(keep) = self.streaming.and_then(|s| s.plan(self.len, n)) else {
            return Ok(None);
        };
        self.gather(gpu, &keep);
        if let Some(q) = &self.quest {
            q.rebuild(gpu, &vec![keep.len(); self.n_layers]);
        }
        self.evicted += self.len - keep.len();
        self.len = keep.len();
        Ok(Some(keep))
    }

    /// Count a chunk of `n` tokens the forward pass appended.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        self.pos += n;
        if let Some(s) = &mut self.scored {
            s.advance(n);
        }
    }

    /// After a call of `n` tokens whose last chunk carried `last`: a scored
    /// eviction policy cuts each layer to its budget after a prompt.
    pub fn after_call(&mut self, gpu: &Gpu, n: usize, last: usize) -> Result<()> {
        if let Some(s) = &mut self.scored {
            let before = s.lens.clone();
            self.evicted += s.after_call(gpu, n, last)?;
            self.len = s.max_len();
            // Any layer that lost slots has moved keys (the average evicted
            // count can round to 0).
            if let (Some(q), true) = (&self.quest, s.lens != before) {
                q.rebuild(gpu, &s.lens);
            }
        }
        Ok(())
    }

    /// Fewest tokens the last chunk of a multi-token call should carry.
    pub fn min_last_chunk(&self) -> usize {
        self.scored.as_ref().map_or(1, |s| s.min_last_chunk())
    }

    /// The step uniform layer `l`'s cache kernels read, if it has its own.
    pub fn layer_step(&self, l: usize) -> Option<&wgpu::Buffer> {
        self.scored.as_ref().map(|s| s.step(l))
    }

    /// Gather the slots `keep` (increasing) of every layer and KV head to
    /// slots `0 .. keep.len()` of the dense buffers (`kv_compact`).
    fn gather(&self, gpu: &Gpu, keep: &[usize]) {
        let (list, counts) = self.keep.as_ref().expect("evicting and Mustafar caches have keep buffers");
        let heads = self.kv_dim / self.head_dim;
        let words: Vec<u32> = (0..heads)
            .flat_map(|_| {
                let mut row: Vec<u32> = keep.iter().map(|&s| s as u32).collect();
                row.resize(self.max_seq, 0);
                row
            })
            .collect();
        gpu.write(list, 0, bytemuck::cast_slice(&words));
        gpu.write(counts, 0, bytemuck::cast_slice(&vec![keep.len() as u32; heads]));
        let mut enc = gpu.encoder();
        gpu.record(&mut enc, "kv_compact", &self.compact);
        gpu.submit(enc);
    }

    /// Bytes one token occupies across all layers (K and V).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim * self.elem_bytes
    }

    /// Bytes of one head's K (or V) row.
    fn row_bytes(&self) -> usize {
        self.head_dim * self.elem_bytes
    }

    /// Bytes of KV holding valid tokens now, Quest's page metadata included;
    /// under Mustafar the dense window's tokens plus the compressed blocks.
    pub fn bytes_resident(&self) -> usize {
        if let Some(s) = &self.scored {
            let meta = self.quest.as_ref().map_or(0, |q| (0..self.n_layers).filter(|&l| q.is_sparse(l)).map(|l| q.meta_rows(s.lens[l])).sum::<usize>());
            return s.lens.iter().sum::<usize>() * self.bytes_per_token() / self.n_layers + meta * self.row_bytes();
        }
        if let Some(m) = &self.mustafar {
            let meta = self.quest.as_ref().map_or(0, |q| q.sparse_layers() * q.meta_rows(m.compressed()) * self.row_bytes());
            return (self.len - m.compressed()) * self.bytes_per_token() + m.compressed_bytes() + meta;
        }
        let meta = self.quest.as_ref().map_or(0, |q| q.sparse_layers() * q.meta_rows(self.len) * self.row_bytes());
        self.len * self.bytes_per_token() + meta
    }

    /// Bytes allocated on the device for the cache and its metadata (under
    /// Mustafar: the window, the pools, the bitmaps and offsets of every
    /// block the context can hold, and the one-layer prefill scratch).
    pub fn bytes_allocated(&self) -> usize {
        if let Some(s) = &self.scored {
            return self.max_seq * self.bytes_per_token() + s.allocated_bytes();
        }
        if let Some(m) = &self.mustafar {
            return self.max_seq * self.bytes_per_token() + m.allocated_bytes();
        }
        let meta = self.quest.as_ref().map_or(0, |q| q.sparse_layers() * q.meta_rows(self.max_seq) * self.row_bytes());
        self.max_seq * self.bytes_per_token() + meta
    }

    /// KV bytes the next decode step reads: every valid slot of a dense
    /// layer; under Quest, a sparse layer reads each unit's selected K/V rows
    /// and the metadata of the pages it scores.
    pub fn bytes_read_per_step(&self) -> usize {
        let len = self.len;
        if let Some(s) = &self.scored {
            let Some(q) = &self.quest else { return self.bytes_resident() };
            let layer = |(l, &n): (usize, &usize)| match q.is_sparse(l) {
                true => {
                    let (rows, meta) = q.rows_read(n);
                    (2 * rows + meta) * self.row_bytes()
                }
                false => n * 2 * self.kv_dim * self.elem_bytes,
            };
            return s.lens.iter().enumerate().map(layer).sum();
        }
        if let Some(m) = &self.mustafar {
            let window = (len - m.compressed()) * self.bytes_per_token();
            let Some(q) = &self.quest else {
                return window + m.compressed_bytes();
            };
            // Sparse layers read the selected blocks (their share of the
            // layer's average block bytes) and every block's metadata.
            let (nb, per_layer) = (m.blocks as usize, m.compressed_bytes() / self.n_layers);
            let selected = nb.min(q.shape.budget_pages as usize);
            let sparse = q.sparse_layers();
            let meta = q.meta_rows(m.compressed()) * self.row_bytes();
            return window + (self.n_layers - sparse) * per_layer + sparse * (per_layer * selected / nb.max(1) + meta);
        }
        let dense_layer = len * 2 * self.kv_dim * self.elem_bytes;
        match &self.quest {
            None => self.n_layers * dense_layer,
            Some(q) => {
                let (rows, meta) = q.rows_read(len);
                let sparse = q.sparse_layers();
                (self.n_layers - sparse) * dense_layer + sparse * (2 * rows + meta) * self.row_bytes()
            }
        }
    }

    /// Tokens kept per layer.
    pub fn tokens_per_layer(&self) -> Vec<usize> {
        match &self.scored {
            Some(s) => s.lens.clone(),
            None => vec![self.len; self.n_layers],
        }
    }

    /// Bumped when a buffer the recorded forward plans bind is replaced.
    pub fn generation(&self) -> u64 {
        self.mustafar.as_ref().map_or(0, |m| m.generation)
    }

    /// Equal for caches that hold the same state after the same
    /// multi-token call from empty, up to a scored policy's cut (its budget
    /// and allocation): the dense cache alone or with a scored eviction part
    /// whose accumulators match, over the same context. None under quest,
    /// streaming or mustafar.
    pub fn prefill_key_of(spec: &KvSpec, ctx: usize) -> Result<Option<(usize, (u8, usize))>> {
        if spec.parts.iter().any(|p| p.name == "streaming" || matches!(p.kind, Kind::Storage | Kind::Selection)) {
            return Ok(None);
        }
        let accum = KvCache::scored_of(spec)?.map_or((0, 0), |o| o.accum_key());
        Ok(Some((KvCache::slots(spec, ctx)?, accum)))
    }

    /// This cache's `prefill_key_of`.
    pub fn prefill_key(&self) -> Option<(usize, (u8, usize))> {
        KvCache::prefill_key_of(&self.spec, self.capacity).ok().flatten()
    }

    /// Take `src`'s state after a multi-token call (before its cut): the K/V
    /// slots, lengths, positions and a scored policy's accumulators. The
    /// prefill keys must be equal.
    pub fn copy_prefill_from(&mut self, gpu: &Gpu, src: &KvCache) {
        debug_assert_eq!(self.prefill_key(), src.prefill_key());
        let mut enc = gpu.encoder();
        let used = (src.len * self.row_bytes()) as u64;
        let heads = self.kv_dim / self.head_dim;
        let stride = (self.max_seq * self.row_bytes()) as u64;
        for (d, s) in self.k.iter().chain(&self.v).zip(src.k.iter().chain(&src.v)) {
            for h in 0..heads as u64 {
                gpu.copy(&mut enc, s, h * stride, d, h * stride, used);
            }
        }
        if let Some(s) = &mut self.scored {
            s.copy_from(gpu, &mut enc, src.scored.as_ref(), src.len);
        }
        gpu.submit(enc);
        (self.len, self.pos, self.evicted) = (src.len, src.pos, src.evicted);
    }

    pub fn reset(&mut self, gpu: &Gpu) {
        if let Some(m) = &mut self.mustafar {
            m.reset();
        }
        if let Some(s) = &mut self.scored {
            s.reset(gpu);
        }
        self.len = 0;
        self.pos = 0;
        self.evicted = 0;
    }
}
