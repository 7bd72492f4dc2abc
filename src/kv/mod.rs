//! The KV cache: a policy on three closed axes behind one seam.
//!
//! - `storage/`: how K/V rows are held and read (`Storage`: dense slots,
//!   Mustafar's compressed blocks behind a dense window);
//! - `eviction/`: which tokens are dropped and when (`Eviction`: keep,
//!   streaming, a scored policy);
//! - `selection/`: which pages a decode step attends (`Selection`: none,
//!   Quest).
//!
//! None knows the others: they exchange only the types in `seam.rs`.
//! They meet here (`before_call`, `after_call`), in `attend.rs` (one
//! layer's append → page metadata → select → attend → observe) and in
//! `report.rs` (bytes and the `/kv` lines). Which parts combine, and what a
//! spec resolves to before anything is allocated, is `compose.rs`.
//!
//! Keys are stored post-RoPE, so a slot need not equal a position (a cut
//! compacts slots; `pos` counts positions, `len` cached tokens).
//!
//! The model's own sliding-window layers are not the policy's: `window.rs`
//! keeps their last tokens apart, and the three axes see only the global
//! layers (numbered `0 ..` among themselves, [`Place`]).

pub mod attend;
pub mod compose;
pub mod eviction;
pub mod report;
pub mod seam;
pub mod selection;
pub mod snapshot;
pub mod spec;
pub mod storage;
pub mod window;

use crate::Result;
use crate::config::ModelConfig;
use crate::gpu::{Caps, Gpu};
use crate::ops::attention::{AttnKind, AttnShape};
pub use attend::{AttnScratch, LayerIo, MAX_CHUNK};
use compose::Layout;
pub use eviction::{Eviction, Scored, ScoredOptions, Streaming, StreamingOptions};
pub use report::KvReport;
pub use selection::{Quest, QuestOptions, Selection};
pub use spec::{Budget, Kind, KvSpec};
pub use storage::{Mustafar, MustafarOptions, Slots, Storage};
pub use window::{Local, Place};

/// A global layer's attention shape for `cfg` over `max_seq` slots: its
/// heads and its attention softcap (no window: windowed layers set theirs).
pub fn attn_shape(cfg: &ModelConfig, max_seq: usize) -> AttnShape {
    AttnShape {
        n_heads: cfg.n_heads as u32,
        n_kv_heads: cfg.n_kv_heads as u32,
        head_dim: cfg.head_dim as u32,
        max_seq: max_seq as u32,
        softcap: cfg.attn_softcap.unwrap_or(0.0),
        window: 0,
        ..Default::default()
    }
}

pub struct KvCache {
    pub storage: Storage,
    pub eviction: Eviction,
    pub selection: Selection,
    /// Most tokens cached at once (an eviction budget, else the context).
    pub capacity: usize,
    /// The context the cache was made for (`--ctx`: what a percentage budget is of).
    pub ctx: usize,
    /// Cached tokens (the most any layer holds).
    pub len: usize,
    /// Position of the next token (= len until something is evicted).
    pub pos: usize,
    pub spec: KvSpec,
    /// Tokens evicted since the last reset.
    pub evicted: usize,
    /// Scratch the attention kernels of every global layer reuse.
    pub scratch: AttnScratch,
    /// The model's sliding-window layers, when it has them.
    pub local: Option<Local>,
    /// Each model layer's place: the policy's (global) or windowed.
    places: Vec<Place>,
    elem_bytes: usize,
    /// Global layers (those the policy holds).
    n_layers: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl KvCache {
    /// Bytes `new` allocates on an adapter with `caps` for `spec` over
    /// `ctx` tokens: the storage, every part's buffers and the attention
    /// scratch. Mustafar's pools grow later: [`KvCache::growth_for`].
    pub fn bytes_for(spec: &KvSpec, cfg: &ModelConfig, ctx: usize, caps: &Caps) -> Result<u64> {
        let l = KvCache::layout(spec, cfg, ctx, caps.f16)?;
        let (storage, extra) = Storage::bytes_for(&l.storage, &l.geometry())?;
        let selection = match &l.quest {
            Some((o, shape, own)) => Quest::bytes_for(o, *shape, l.n_layers, *own, *own, caps.f16)?,
            None => 0,
        };
        let eviction = l.scored.as_ref().map_or(0, |o| Scored::bytes_for(o, &l.attn, l.n_layers));
        let (kind, limit) = (AttnKind::for_caps(caps), caps.max_storage_binding);
        let scratch = AttnScratch::bytes_for(&l.attn, &l.context, extra, kind, limit);
        let local = Local::bytes_for(cfg, ctx, caps.f16, kind, limit);
        Ok(storage + selection + eviction + scratch + local)
    }

    /// Bytes the cache may allocate after `new` as it fills: Mustafar's
    /// pools growing to hold every block at its worst case.
    pub fn growth_for(spec: &KvSpec, cfg: &ModelConfig, ctx: usize, caps: &Caps) -> Result<u64> {
        let l = KvCache::layout(spec, cfg, ctx, caps.f16)?;
        Storage::growth_for(&l.storage, &l.geometry())
    }

    /// `ctx`: the context in tokens (what a percentage budget is of).
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, ctx: usize, spec: KvSpec) -> Result<KvCache> {
        let lay = KvCache::layout(&spec, cfg, ctx, gpu.caps.f16)?;
        let Layout { streaming, attn, context, n_layers, .. } = lay;
        // The binding limit was checked by `AttnShape::check` before this.
        let storage = Storage::new(gpu, &lay.storage, &lay.geometry())?;
        let selection = match lay.quest {
            Some((o, shape, false)) => Selection::Quest(Box::new(Quest::new(gpu, o, shape, n_layers, false)?)),
            // Rebuilt after each compaction, and after a saved cache is restored.
            Some((o, shape, true)) => Selection::Quest(Box::new(Quest::new(gpu, o, shape, n_layers, true)?.with_rebuild(gpu, &storage.slots().k))),
            None => Selection::None,
        };
        let eviction = match (lay.scored, streaming) {
            (Some(o), _) => Eviction::Scored(Box::new(Scored::new(gpu, o, attn, ctx, &storage.slots().k, &storage.slots().v, &|l, keep, counts, acc| {
                storage.slots().compaction(gpu, l, keep, counts, acc)
            })?)),
            (None, Some(s)) => Eviction::Streaming(s),
            (None, None) => Eviction::Keep,
        };
        let scratch = AttnScratch::new(gpu, &attn, &context, storage.decode_parts())?;
        let local = Local::new(gpu, cfg, ctx)?;
        Ok(KvCache {
            storage,
            eviction,
            selection,
            capacity: lay.capacity,
            ctx,
            len: 0,
            pos: 0,
            spec,
            evicted: 0,
            scratch,
            local,
            places: window::places(cfg),
            elem_bytes: lay.elem_bytes,
            n_layers,
            kv_dim: lay.kv_dim,
            head_dim: cfg.head_dim,
        })
    }

    /// Tokens the next calls may still add: None when an eviction policy makes
    /// room as needed (`max_call` tokens per call at most).
    pub fn room(&self) -> Option<usize> {
        self.eviction.room(self.len, self.capacity)
    }

    /// Most tokens one forward call may carry: the parts' limits and the
    /// prefill scratch's chunk.
    pub fn max_call(&self) -> usize {
        let cuts = matches!(self.eviction, Eviction::Streaming(_));
        let scratch = (self.scratch.prefill.max_tokens as usize).min(self.local.as_ref().map_or(usize::MAX, Local::max_call));
        self.storage.max_call(cuts).min(self.eviction.max_call()).min(scratch)
    }

    /// Before a call of `n` tokens: the eviction part's cut (streaming: the
    /// storage drops the oldest tokens after the sinks; a scored part cuts
    /// the layers that would pass their budget), the storage's own work
    /// between calls (Mustafar compresses what left its window), and the
    /// selection part's metadata rebuilt where slots moved.
    pub fn before_call(&mut self, gpu: &Gpu, n: usize) -> Result<()> {
        let before = self.global_lens();
        self.storage.slots().mark_lens(gpu, &self.global_lens());
        let (cut, scored) = self.eviction.before_call(gpu, self.len, self.pos, n);
        if let Some(lens) = self.eviction.lens() {
            self.len = lens.iter().copied().max().unwrap_or(0);
        }
        let dropped = self.storage.before_call(gpu, self.len, self.pos, n, cut.as_ref())?;
        self.len -= dropped;
        self.evicted += scored + dropped;
        self.rebuild_if_moved(gpu, &before);
        if let Some(w) = &mut self.local {
            w.before_call(gpu, self.pos, n);
        }
        Ok(())
    }

    /// Count a chunk of `n` tokens the forward pass appended.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        self.pos += n;
        self.eviction.advance(n);
        if let Some(w) = &mut self.local {
            w.advance(n);
        }
    }

    /// After a call of `n` tokens whose last chunk carried `last`: a scored
    /// eviction policy cuts each layer to its budget after a prompt.
    pub fn after_call(&mut self, gpu: &Gpu, n: usize, last: usize) -> Result<()> {
        let before = self.global_lens();
        self.storage.slots().mark_lens(gpu, &before);
        self.evicted += self.eviction.after_call(gpu, n, last)?;
        if let Some(lens) = self.eviction.lens() {
            self.len = lens.iter().copied().max().unwrap_or(0);
        }
        self.rebuild_if_moved(gpu, &before);
        Ok(())
    }

    /// Any layer that lost slots has moved keys (the average evicted count
    /// can round to 0): the selection part's own metadata follows them.
    fn rebuild_if_moved(&self, gpu: &Gpu, before: &[usize]) {
        let now = self.global_lens();
        if now != before {
            self.selection.rebuild(gpu, &now);
        }
    }

    /// Fewest tokens the last chunk of a multi-token call should carry: at
    /// least 2, so every chunk of a prompt attends densely (a 1-token chunk
    /// is a decode step, where Quest selects), whatever the prompt's length.
    pub fn min_last_chunk(&self) -> usize {
        self.eviction.min_last_chunk().max(2)
    }

    /// Bytes one token occupies across the global layers (K and V).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim * self.elem_bytes
    }

    /// Bytes of one head's K (or V) row.
    fn row_bytes(&self) -> usize {
        self.head_dim * self.elem_bytes
    }

    /// Tokens kept per global layer (the policy's layers, in order).
    pub fn global_lens(&self) -> Vec<usize> {
        match self.eviction.lens() {
            Some(lens) => lens.to_vec(),
            None => vec![self.len; self.n_layers],
        }
    }

    /// Tokens kept per model layer (a windowed layer's own count).
    pub fn tokens_per_layer(&self) -> Vec<usize> {
        let global = self.global_lens();
        let local = self.local.as_ref().map_or(0, |w| w.len);
        self.places
            .iter()
            .map(|p| match *p {
                Place::Global(i) => global[i],
                Place::Local(_) => local,
            })
            .collect()
    }

    /// Model layer `l`'s place.
    pub fn place(&self, l: usize) -> Place {
        self.places[l]
    }

    /// Bumped when a buffer the recorded forward plans bind is replaced.
    pub fn generation(&self) -> u64 {
        self.storage.generation()
    }

    /// The Mustafar storage, when the cache has it.
    pub fn mustafar(&self) -> Option<&Mustafar> {
        self.storage.mustafar()
    }

    /// The scored eviction part, when the cache has it.
    pub fn scored(&self) -> Option<&Scored> {
        self.eviction.scored()
    }

    /// The Quest selection part, when the cache has it.
    pub fn quest(&self) -> Option<&Quest> {
        self.selection.quest()
    }

    /// Equal for caches that hold the same state after the same
    /// multi-token call from empty, up to a scored policy's cut (its budget
    /// and allocation) and Quest's page metadata (a prefill attends densely,
    /// so the metadata is rebuilt from the copied keys): the dense cache
    /// alone, with a scored eviction part whose accumulators match, or with
    /// Quest, over the same context. None under streaming or a storage part.
    pub fn prefill_key_of(spec: &KvSpec, ctx: usize) -> Result<Option<(usize, (u8, usize))>> {
        if spec.parts.iter().any(|p| p.name == "streaming" || p.kind == Kind::Storage) {
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
        self.storage.slots().copy_prefix_from(gpu, &mut enc, src.storage.slots(), src.len);
        if let Some(s) = self.eviction.scored_mut() {
            s.copy_from(gpu, &mut enc, src.eviction.scored(), src.len);
        }
        // Equal keys mean equal contexts, so the windowed slots have one shape.
        if let (Some(w), Some(s)) = (&mut self.local, &src.local) {
            w.slots.copy_prefix_from(gpu, &mut enc, &s.slots, s.len);
            w.len = s.len;
        }
        gpu.submit(enc);
        (self.len, self.pos, self.evicted) = (src.len, src.pos, src.evicted);
        // Quest's own page metadata, from the keys now in the slots.
        self.selection.rebuild(gpu, &self.global_lens());
    }

    pub fn reset(&mut self, gpu: &Gpu) {
        self.storage.reset();
        self.eviction.reset(gpu);
        if let Some(w) = &mut self.local {
            w.reset();
        }
        self.len = 0;
        self.pos = 0;
        self.evicted = 0;
    }

    /// Whether `truncate` can cut this cache: every token in a plain slot at its position.
    pub fn can_truncate(&self) -> bool {
        // KIVI's staging rows past the cut may be gone (quantized, then reused).
        matches!(&self.storage, Storage::Dense(s) if s.shape.kivi == 0)
            && matches!(self.eviction, Eviction::Keep)
            && matches!(self.selection, Selection::None)
            && self.local.is_none()
            && self.evicted == 0
    }

    /// Keep only the first `n` tokens, where the cache holds every token at
    /// its position in plain slots (dense storage, no eviction, no page
    /// metadata, no window): true when it did, false when it cannot.
    pub fn truncate(&mut self, n: usize) -> bool {
        if !self.can_truncate() || n > self.len {
            return false;
        }
        self.len = n;
        self.pos = n;
        true
    }

    /// The dense slots' attention shape.
    pub fn attn(&self) -> AttnShape {
        self.storage.slots().shape
    }
}
