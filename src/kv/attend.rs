//! One layer's attention against the cache, recorded in one place:
//! (rotate the queries) → append → page metadata → select → attend →
//! (rotate the output back) → observe → (KIVI: pack). The forward pass
//! calls [`KvCache::record_layer`] between RoPE and the output projection
//! and knows nothing of the policy; the scratch the attention kernels share
//! across layers lives here too.

use super::KvCache;
use crate::Result;
use crate::gpu::{Gpu, storage_size};
use crate::kernels::Dispatch;
use crate::ops::attention::{AttnKind, AttnShape, DecodeScratch, PrefillScratch};

/// Most tokens one forward call carries in one chunk; longer prompts are
/// prefilled in chunks of this size.
pub const MAX_CHUNK: usize = crate::ops::attention::MAX_CALL as usize;

/// One layer's inputs and output: the call's post-RoPE rows and the
/// attention result, with the call's step uniform.
pub struct LayerIo<'a> {
    /// `[n_tokens, n_heads * head_dim]` queries.
    pub q: &'a wgpu::Buffer,
    /// `[n_tokens, kv_dim]` keys and values to append.
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    /// `[n_tokens, n_heads * head_dim]` attention output.
    pub out: &'a wgpu::Buffer,
    /// The call's [`crate::ops::Step`] (positions, tokens, cached length).
    pub step: &'a wgpu::Buffer,
}

/// Scratch every layer's attention reuses: decode partials (one more part
/// per Mustafar block), prefill partials for a chunk, decode log-sum-exp.
pub struct AttnScratch {
    pub decode: DecodeScratch,
    pub prefill: PrefillScratch,
    /// `[n_heads]` decode attention log-sum-exp (eviction scores read it).
    pub lse: wgpu::Buffer,
}

impl AttnScratch {
    /// For a cache of `slots` dense slots whose prefill attends `context`
    /// tokens, with `extra` more decode parts. A prefill chunk carries
    /// [`AttnScratch::chunk`] tokens at most.
    pub fn new(gpu: &Gpu, slots: &AttnShape, context: &AttnShape, extra: u32) -> Result<AttnScratch> {
        let kind = AttnKind::for_gpu(gpu);
        let chunk = AttnScratch::chunk(context, kind, gpu.caps.max_storage_binding);
        Ok(AttnScratch {
            decode: DecodeScratch::with_extra(gpu, slots, kind, extra),
            prefill: PrefillScratch::with_kind(gpu, context, kind, chunk)?,
            lse: gpu.buffer("attn.lse", AttnScratch::lse_bytes(slots)),
        })
    }

    /// Bytes `new` allocates for the same shapes on an adapter whose
    /// kernels are `kind` ([`AttnKind::for_caps`]) and whose storage
    /// bindings hold `limit` bytes.
    pub fn bytes_for(slots: &AttnShape, context: &AttnShape, extra: u32, kind: AttnKind, limit: u64) -> u64 {
        let chunk = AttnScratch::chunk(context, kind, limit);
        DecodeScratch::bytes_for(slots, kind, extra) + PrefillScratch::bytes_for(context, kind, chunk) + storage_size(AttnScratch::lse_bytes(slots))
    }

    /// Most tokens one prefill chunk over `context` carries: [`MAX_CHUNK`],
    /// or fewer where the lanes kernel's partials would pass `limit`.
    pub fn chunk(context: &AttnShape, kind: AttnKind, limit: u64) -> u32 {
        PrefillScratch::tokens_within(context, kind, MAX_CHUNK as u32, limit)
    }

    fn lse_bytes(slots: &AttnShape) -> u64 {
        4 * slots.n_heads as u64
    }
}

impl AttnScratch {
    /// Bytes allocated (what `bytes_for` counts).
    pub fn allocated(&self) -> u64 {
        let (d, p) = (&self.decode, &self.prefill);
        let partials = [&p.part_o, &p.part_ml].iter().filter_map(|b| b.as_ref()).map(|b| b.size()).sum::<u64>();
        d.part_o.size() + d.part_ml.size() + p.lse.size() + partials + self.lse.size()
    }
}

impl KvCache {
    /// Layer `l`'s attention for a call of `n` tokens (1: decode), in the
    /// order every policy follows: the storage appends the call's K/V, the
    /// selection part writes its page metadata, at a decode step selects
    /// pages (the storage's own, or its metadata's), the storage attends
    /// (everything, or the page list), and the eviction part observes the
    /// attention each slot got.
    /// A windowed layer attends its own slots ([`super::Local`]).
    pub fn record_layer(&self, g: &Gpu, l: usize, n: usize, io: &LayerIo) -> Vec<Dispatch> {
        let l = match (self.place(l), &self.local) {
            (super::Place::Global(i), _) => i,
            (super::Place::Local(i), Some(w)) => return w.record_layer(g, i, n, io),
            (super::Place::Local(_), None) => unreachable!("a windowed layer without windowed slots"),
        };
        let nt = n as u32;
        // The slots' step: a scored layer's own length, Mustafar's window, or the call's.
        let step = self.eviction.layer_step(l).or(self.storage.step()).unwrap_or(io.step);
        let keys = &self.storage.slots().k[l];
        // A rotated quantized cache holds H k and H v: the queries turn by H
        // first (for the selection, the attention and the scores alike) and
        // the output turns back after the attention.
        let shape = self.storage.slots().shape;
        let row = shape.n_heads * shape.head_dim;
        let rotate = |buf| (shape.kvrot > 0).then(|| crate::ops::attention::kv_rotate(g, buf, row, shape.kvrot, io.step, nt));
        let mut d: Vec<Dispatch> = rotate(io.q).into_iter().collect();
        d.push(self.storage.append(g, l, io, step, nt));
        d.extend(self.selection.record_meta(g, l, keys, step, nt));
        let pages = match n {
            1 => self.selection.select(g, l, io.q, self.storage.pages(l), step).map(|(select, list)| {
                d.extend(select);
                list
            }),
            _ => None,
        };
        d.extend(self.storage.attend(g, l, n, io, &self.scratch, step, pages));
        d.extend(rotate(io.out));
        d.extend(self.eviction.observe(g, l, n, io.q, keys, &self.scratch));
        // KIVI: quantize what the boundary passed, now that nothing of this
        // call reads the staged rows any more.
        d.extend(self.storage.slots().settle(g, l, step, nt));
        d
    }

    /// Layer `l`'s K and V buffers when a decode step's attention there is
    /// exactly the plain dense kernels' (append, attend, nothing between or
    /// after), with the slots' shape: a dense unquantized cache of a global
    /// layer, no selection part, and an eviction part, if any, that only cuts
    /// between calls (`streaming`). A batched decode step serves such layers
    /// of several caches in one dispatch set (`ops::attention_batch`); None
    /// where the layer's record holds more.
    pub fn plain_decode(&self, l: usize) -> Option<(&wgpu::Buffer, &wgpu::Buffer, AttnShape)> {
        let super::Place::Global(i) = self.place(l) else { return None };
        let super::storage::Storage::Dense(s) = &self.storage else { return None };
        let plain = s.shape.kvq == 0 && s.shape.kivi == 0 && s.shape.kvrot == 0;
        let cuts_only = matches!(self.eviction, super::eviction::Eviction::Keep | super::eviction::Eviction::Streaming(_));
        (plain && cuts_only && matches!(self.selection, super::selection::Selection::None)).then(|| (&s.k[i], &s.v[i], s.shape))
    }
}
