//! One layer's attention against the cache, recorded in one place:
//! append → page metadata → select → attend → observe. The forward pass
//! calls [`KvCache::record_layer`] between RoPE and the output projection
//! and knows nothing of the policy; the scratch the attention kernels share
//! across layers lives here too.

use super::KvCache;
use crate::Result;
use crate::gpu::{Gpu, storage_size};
use crate::kernels::Dispatch;
use crate::ops::attention::{self as attn, AttnKind, AttnShape, DecodeScratch, PrefillScratch};

/// Most tokens one forward call carries in one chunk; longer prompts are
/// prefilled in chunks of this size.
pub const MAX_CHUNK: usize = 512;

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
    /// tokens, with `extra` more decode parts.
    pub fn new(gpu: &Gpu, slots: &AttnShape, context: &AttnShape, extra: u32) -> Result<AttnScratch> {
        let kind = AttnKind::for_gpu(gpu);
        Ok(AttnScratch {
            decode: DecodeScratch::with_extra(gpu, slots, kind, extra),
            prefill: PrefillScratch::with_kind(gpu, context, kind, MAX_CHUNK as u32)?,
            lse: gpu.buffer("attn.lse", AttnScratch::lse_bytes(slots)),
        })
    }

    /// Bytes `new` allocates for the same shapes on an adapter whose
    /// kernels are `kind` ([`AttnKind::for_caps`]).
    pub fn bytes_for(slots: &AttnShape, context: &AttnShape, extra: u32, kind: AttnKind) -> u64 {
        DecodeScratch::bytes_for(slots, kind, extra) + PrefillScratch::bytes_for(context, kind, MAX_CHUNK as u32) + storage_size(AttnScratch::lse_bytes(slots))
    }

    fn lse_bytes(slots: &AttnShape) -> u64 {
        4 * slots.n_heads as u64
    }
}

impl KvCache {
    /// Layer `l`'s attention for a call of `n` tokens (1: decode): append
    /// the call's K/V, keep Quest's page metadata, select pages, attend
    /// (dense, Quest's pages, Mustafar's window and blocks), and feed a
    /// scored eviction policy the attention each slot got.
    pub fn record_layer(&self, g: &Gpu, l: usize, n: usize, io: &LayerIo) -> Vec<Dispatch> {
        let nt = n as u32;
        let (kc, vc) = (&self.k[l], &self.v[l]);
        let shape = AttnShape { max_seq: self.max_seq as u32, ..self.attn };
        let s = &self.scratch;
        // The cache's own step: Mustafar's window, or a scored layer's length.
        let must = self.mustafar.as_ref();
        let win = self.layer_step(l).or(must.map(|m| &m.win_step)).unwrap_or(io.step);
        let mut d = vec![attn::kv_append(g, &shape, io.k, io.v, kc, vc, win, nt)];
        // Quest: page metadata follows every append (under Mustafar it is
        // written at compression); decode attends the selected pages.
        let quest = self.quest.as_ref().filter(|q| q.is_sparse(l));
        if let (Some(q), None) = (quest, must) {
            d.push(q.meta(g, l, kc, win, nt));
        }
        match (n, quest, must) {
            (1, Some(q), None) => d.extend(q.decode(g, l, io.q, kc, vc, io.out, &s.lse, win)),
            (1, _, _) => {
                let da = attn::attn_decode(g, &shape, io.q, kc, vc, &s.decode, io.out, &s.lse, win);
                d.push(da.partial);
                if let Some(m) = must {
                    // The compressed blocks: all of them, or Quest's selection.
                    let list = quest.map(|q| {
                        let store = &m.stores[l];
                        d.extend(q.score_blocks(g, io.q, &store.kmax, &store.kmin, &m.quest_step));
                        q.list()
                    });
                    d.push(m.decode_partial(g, l, io.q, &s.decode, list));
                }
                d.push(da.merge);
            }
            (_, _, Some(m)) => {
                let dense = AttnShape { max_seq: self.capacity as u32, ..self.attn };
                d.extend(m.prefill_dense(g, l, kc, vc, io.step));
                d.extend(attn::attn_prefill(g, &dense, io.q, &m.dense_k, &m.dense_v, &s.prefill, io.out, io.step));
            }
            _ => d.extend(attn::attn_prefill(g, &shape, io.q, kc, vc, &s.prefill, io.out, win)),
        }
        // Scored eviction: the attention this call gave every slot.
        if let Some(sc) = &self.scored {
            let lse = if n == 1 { &s.lse } else { &s.prefill.lse };
            d.extend(sc.accumulate(g, l, n, io.q, kc, lse));
        }
        d
    }
}
