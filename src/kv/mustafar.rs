//! The `mustafar` storage part (research/algorithms.md §2): every token but
//! the most recent stays in Mustafar's bitmap-sparse form, and decode
//! attention reads that form directly.
//!
//! `mustafar:k=0.5,v=0.5,window=32`
//! - `k`, `v`: the sparsity of keys and values, in [0, 1): per token and KV
//!   head, `d - floor(s d)` largest-magnitude elements are kept.
//! - `window`: recent tokens kept dense (the paper's `R`, 32).
//!
//! Layout per layer: the cache's dense K/V buffers become the *window*
//! (`window + 64 + MAX_CHUNK` slots), and a [`Store`] holds the compressed
//! 64-token blocks. Before a call, once the window holds `window + 64`
//! tokens or more, its oldest whole blocks are pruned and compressed (one
//! dispatch per layer) and the cache shifts the window down (`kv_compact`,
//! as eviction gathers its kept slots): the window then holds
//! `window .. window + 63` tokens, the paper's kernel-path cadence with
//! 64-token blocks instead of 256.
//!
//! The pool of non-zeros grows with what the blocks really hold: after each
//! compression the host reads back each layer's pool top (8 bytes per
//! layer, once per 64 tokens), and a pool that could not take the next
//! blocks is reallocated larger and copied; `generation` then changes and
//! recorded plans are rebuilt.
//!
//! Decode: `attn_decode` over the window writes its chunks' partial states
//! and `mustafar_attn` one per (head, live block) into the same buffers;
//! `attn_merge` makes them one softmax. Prefill: the live blocks are
//! expanded into a dense scratch cache of the whole context (one layer's
//! worth, shared by all layers), the window is placed behind them, and the
//! dense prefill kernels run on it. So a prompt's later chunks see its
//! earlier chunks pruned, as later decode steps do.

use super::spec::Part;
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
use crate::model::MAX_CHUNK;
use crate::ops::attention::{AttnShape, DecodeScratch};
use crate::ops::mustafar::{self as ops, MustafarShape, Store};
use crate::ops::Step;
use crate::reference::mustafar::{keep_count, T};
use crate::{Error, Result};

pub const DEFAULT_SPARSITY: f64 = 0.5;
pub const DEFAULT_WINDOW: usize = 32;
/// Blocks a new pool has room for (it grows as blocks arrive).
const FIRST_POOL_BLOCKS: u32 = 2;

/// Parsed `mustafar` options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MustafarOptions {
    pub k: f64,
    pub v: f64,
    pub window: usize,
}

impl MustafarOptions {
    pub fn from_part(p: &Part) -> Result<MustafarOptions> {
        let sparsity = |key: &str| -> Result<f64> {
            match p.get(key) {
                None => Ok(DEFAULT_SPARSITY),
                Some(v) => match v.parse::<f64>() {
                    Ok(s) if (0.0..1.0).contains(&s) => Ok(s),
                    _ => Err(Error::msg(format!("--kv mustafar: {key}={v} is not a sparsity in [0, 1)"))),
                },
            }
        };
        let window = match p.get("window") {
            None => DEFAULT_WINDOW,
            Some(v) => match v.parse::<usize>() {
                Ok(w) if w <= 4096 => w,
                _ => return Err(Error::msg(format!("--kv mustafar: window={v} is not a token count in 0..=4096"))),
            },
        };
        Ok(MustafarOptions { k: sparsity("k")?, v: sparsity("v")?, window })
    }

    /// Dense window slots per layer and KV head for a context of `ctx`: the
    /// window, a block waiting to be compressed, and one call's tokens.
    pub fn window_slots(&self, ctx: usize) -> usize {
        (self.window + T + MAX_CHUNK).min(ctx)
    }
}

/// Mustafar's state for one model.
pub struct Mustafar {
    pub opts: MustafarOptions,
    /// The compressed stores' geometry (`max_seq`: the context).
    pub shape: MustafarShape,
    /// The dense window's geometry (`max_seq`: `window_slots`).
    pub window: AttnShape,
    /// Per layer: the compressed blocks.
    pub stores: Vec<Store>,
    /// Per layer: pool units handed out (read back after each compression).
    pub tops: Vec<u32>,
    /// Live compressed blocks per KV head (the same in every layer); slots
    /// `0 .. 64 * blocks` of the context are compressed.
    pub blocks: u32,
    /// Uniform `[blocks, 0, 0, 0]` the kernels read.
    pub live: wgpu::Buffer,
    /// The window's [`Step`] uniform (slots counted within the window).
    pub win_step: wgpu::Buffer,
    /// One layer's dense K/V of the whole context, for prefill.
    pub dense_k: wgpu::Buffer,
    pub dense_v: wgpu::Buffer,
    /// Per layer the pool state `(top, overflow)`, gathered for one readback.
    states: wgpu::Buffer,
    /// Bumped whenever a buffer the recorded plans bind is replaced.
    pub generation: u64,
    /// The stores' GPU state still holds a run from before a reset.
    stale: bool,
}

impl Mustafar {
    pub fn new(gpu: &Gpu, opts: MustafarOptions, ctx: AttnShape, n_layers: usize) -> Result<Mustafar> {
        let d = ctx.head_dim as usize;
        let (keep_k, keep_v) = (keep_count(d, opts.k) as u32, keep_count(d, opts.v) as u32);
        let shape = MustafarShape::new(ctx, keep_k, keep_v).map_err(|e| Error::msg(format!("--kv {e}")))?;
        let window = AttnShape { max_seq: opts.window_slots(ctx.max_seq as usize) as u32, ..ctx };
        let first = shape.units_bound(FIRST_POOL_BLOCKS.min(shape.max_blocks()).max(1));
        let first = u32::try_from(first).map_err(|_| Error::msg("--kv mustafar: pool too large"))?;
        let stores = (0..n_layers).map(|_| Store::new(gpu, &shape, first)).collect();
        let dense = ctx.cache_bytes(gpu.caps.f16);
        Ok(Mustafar {
            opts,
            shape,
            window,
            stores,
            tops: vec![0; n_layers],
            blocks: 0,
            live: gpu.uniform("mustafar.live", bytemuck::cast_slice(&[0u32; 4])),
            win_step: gpu.uniform("mustafar.win_step", bytemuck::bytes_of(&Step::default())),
            dense_k: gpu.buffer("mustafar.dense_k", dense),
            dense_v: gpu.buffer("mustafar.dense_v", dense),
            states: gpu.buffer("mustafar.states", 8 * n_layers as u64),
            generation: 0,
            stale: false,
        })
    }

    /// Forget every block (the pools stay allocated).
    pub fn reset(&mut self) {
        self.blocks = 0;
        self.tops.iter_mut().for_each(|t| *t = 0);
        self.stale = true; // the stores' GPU-side tops restart at the next call
    }

    /// Slots held compressed.
    pub fn compressed(&self) -> usize {
        self.blocks as usize * T
    }

    /// Extra partial states per query head the decode scratch needs.
    pub fn decode_parts(&self) -> u32 {
        self.shape.max_blocks()
    }

    /// Before a call, when the window holds `w` tokens (in the buffers `k` /
    /// `v`, one per layer): once it holds `window + 64` or more, prune and
    /// compress its oldest whole blocks into the stores and read back the
    /// pools' tops. Returns the slots compressed; the caller then shifts the
    /// window down by as many (`KvCache::gather`).
    pub fn compress(&mut self, gpu: &Gpu, k: &[wgpu::Buffer], v: &[wgpu::Buffer], w: usize) -> Result<usize> {
        if self.stale {
            for store in &self.stores {
                gpu.write(&store.state, 0, bytemuck::cast_slice(&[0u32, 0]));
            }
            self.stale = false;
        }
        let nb = ((w.saturating_sub(self.opts.window) / T) as u32).min(self.shape.max_blocks() - self.blocks);
        if nb == 0 {
            return Ok(0);
        }
        self.grow_pools(gpu, nb);
        let d: Vec<Dispatch> = (0..self.stores.len())
            .map(|l| ops::compress(gpu, &self.stores[l], &k[l], &v[l], self.window.max_seq, 0, nb, self.blocks))
            .collect();
        let mut enc = gpu.encoder();
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mustafar_compress"), timestamp_writes: None });
            for x in &d {
                x.record(&mut pass);
            }
        }
        for (l, store) in self.stores.iter().enumerate() {
            enc.copy_buffer_to_buffer(&store.state, 0, &self.states, 8 * l as u64, 8);
        }
        let bytes = gpu.readback_with(Some(enc), &self.states, 0, 8 * self.stores.len() as u64);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        for (l, pair) in words.chunks(2).enumerate() {
            if pair[1] != 0 {
                return Err(Error::msg(format!("mustafar: layer {l}'s pool overflowed (internal error: the pool was sized for the worst case)")));
            }
            self.tops[l] = pair[0];
        }
        self.blocks += nb;
        Ok(nb as usize * T)
    }

    /// Write the live block count and the window's step for a call of `n`
    /// tokens at position `pos`, the window holding `w` tokens before it.
    pub fn begin_call(&self, gpu: &Gpu, w: usize, pos: usize, n: usize) {
        gpu.write(&self.live, 0, bytemuck::cast_slice(&[self.blocks, 0, 0, 0]));
        let step = Step { pos: pos as u32, n_tokens: n as u32, kv_len: (w + n) as u32, _pad: 0 };
        gpu.write(&self.win_step, 0, bytemuck::bytes_of(&step));
    }

    /// Make every layer's pool able to take `nb` more blocks at the worst
    /// case (every tile padded by 7 halves): grow by half again or to what is
    /// needed, copying the old units over.
    fn grow_pools(&mut self, gpu: &Gpu, nb: u32) {
        let need_more = self.shape.units_bound(nb);
        let cap = self.shape.units_bound(self.shape.max_blocks());
        for (l, store) in self.stores.iter_mut().enumerate() {
            let need = self.tops[l] as u64 + need_more;
            if need <= store.units as u64 {
                continue;
            }
            let units = need.max(store.units as u64 * 3 / 2).min(cap) as u32;
            let pool = gpu.buffer("mustafar.pool", units as u64 * 16);
            let mut enc = gpu.encoder();
            enc.copy_buffer_to_buffer(&store.pool, 0, &pool, 0, self.tops[l] as u64 * 16);
            gpu.submit(enc);
            store.pool = pool;
            store.units = units;
            self.generation += 1;
        }
    }

    /// The decode dispatches between the window's `attn_decode` partial and
    /// its merge: every layer's compressed blocks into the same scratch.
    pub fn decode_partial(&self, gpu: &Gpu, l: usize, q: &wgpu::Buffer, scratch: &DecodeScratch) -> Dispatch {
        let base = scratch.n_split * scratch.parts;
        ops::attn_partial(gpu, &self.stores[l], q, &scratch.part_o, &scratch.part_ml, scratch.stride, base, &self.live)
    }

    /// Prefill: layer `l`'s blocks expanded and its window (`k`, `v`) placed
    /// behind them in the dense scratch, which the prefill kernels then read.
    pub fn prefill_dense(&self, gpu: &Gpu, l: usize, k: &wgpu::Buffer, v: &wgpu::Buffer, step: &wgpu::Buffer) -> [Dispatch; 2] {
        let s = &self.shape;
        let expand = ops::expand(gpu, &self.stores[l], &self.dense_k, &self.dense_v, s.attn.max_seq, 0, 0, s.max_blocks(), &self.live);
        let place = ops::place(gpu, &self.window, &s.attn, k, v, &self.dense_k, &self.dense_v, step, &self.win_step);
        [expand, place]
    }

    /// Bytes the compressed blocks take: the pool units handed out plus each
    /// live block's bitmaps (8 bytes) and offsets (4 bytes) per tile.
    pub fn compressed_bytes(&self) -> usize {
        let meta = self.blocks as usize * self.shape.attn.n_kv_heads as usize * self.shape.tiles() as usize * 12;
        self.tops.iter().map(|&t| t as usize * 16 + meta).sum()
    }

    /// Bytes allocated beyond the dense window: pools, full-size bitmaps and
    /// offsets, the prefill scratch.
    pub fn allocated_bytes(&self) -> usize {
        let meta = self.shape.max_blocks() as usize * self.shape.attn.n_kv_heads as usize * self.shape.tiles() as usize * 12;
        let dense = (self.dense_k.size() + self.dense_v.size()) as usize;
        self.stores.iter().map(|s| s.units as usize * 16 + meta).sum::<usize>() + dense
    }

    /// One line for `/kv`.
    pub fn describe(&self, window_len: usize) -> String {
        format!(
            "mustafar: {} tokens compressed (keeping {} of {} key and {} value elements each), {} dense in the window (window={})",
            self.compressed(),
            self.shape.keep_k,
            self.shape.attn.head_dim,
            self.shape.keep_v,
            window_len,
            self.opts.window
        )
    }
}
