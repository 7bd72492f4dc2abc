//! The `mustafar` storage part (Mustafar, arXiv 2505.22913): every token but
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
//! The pool of non-zeros grows with what the blocks really hold: each
//! compression takes a free run of the pool sized for the worst case, its
//! blocks reserve their units in it with an atomic bump, and the host reads
//! back where the run ended (8 bytes per layer, once per 64 tokens). A pool
//! without a large enough free run is reallocated larger and copied;
//! `generation` then changes and recorded plans are rebuilt.
//!
//! Under an eviction part (`streaming`), its sinks stay dense at the head of
//! the window and are never compressed, and a call that would pass the
//! budget first drops the oldest compressed blocks: the blocks form a ring
//! of `budget / 64` store blocks, and a pool run is freed (reused by later
//! compressions) once every block it holds is gone, so memory stays flat.
//!
//! The blocks are pages: with `page_meta` (a selection part wants page
//! summaries) compression also writes each block's per-channel key max /
//! min (of the pruned keys) and [`Mustafar::pages`] hands them out; a decode
//! step given a page list attends the listed blocks plus the whole dense
//! window.
//!
//! Decode: `attn_decode` over the window writes its chunks' partial states
//! and `mustafar_attn` one per (head, live block) into the same buffers;
//! `attn_merge` makes them one softmax. Prefill: the live blocks are
//! expanded into a dense scratch cache of the whole context (one layer's
//! worth, shared by all layers), the window is placed behind them, and the
//! dense prefill kernels run on it. So a prompt's later chunks see its
//! earlier chunks pruned, as later decode steps do.

use super::super::attend::{AttnScratch, LayerIo, MAX_CHUNK};
use super::super::seam::{Cut, PageList, Pages};
use super::super::spec::Part;
use super::dense::Slots;
use crate::gpu::{Gpu, storage_size, uniform_size};
use crate::kernels::Dispatch;
use crate::ops::Step;
use crate::ops::attention::{self as attn, AttnShape};
use crate::ops::mustafar::{self as ops, MustafarShape, Store};
use crate::ops::mustafar::{T, keep_count};
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

    /// Dense window slots per layer and KV head when at most `cap` tokens
    /// are cached: the sinks, the window, a block waiting to be compressed,
    /// and one call's tokens.
    pub fn window_slots(&self, cap: usize, sinks: usize) -> usize {
        (sinks + self.window + T + MAX_CHUNK).min(cap)
    }
}

/// A run of one layer's pool taken by one compression: units
/// `start .. end`, holding blocks with ids below `end_block`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Run {
    end_block: u64,
    start: u32,
    end: u32,
}

/// Mustafar's state for one model.
pub struct Mustafar {
    pub opts: MustafarOptions,
    /// The compressed stores' geometry (`max_seq`: the most tokens cached,
    /// the context or an eviction budget).
    pub shape: MustafarShape,
    /// The dense window (`shape.max_seq`: `window_slots`).
    pub slots: Slots,
    /// Leading window slots never compressed (an eviction policy's sinks).
    pub sinks: usize,
    /// Per layer: the compressed blocks.
    pub stores: Vec<Store>,
    /// Per layer: the pool runs of the live blocks, oldest first.
    runs: Vec<Vec<Run>>,
    /// Id of the oldest live block (ids count blocks since the last reset;
    /// block id `i` lives in store block `i % max_blocks`).
    pub first: u64,
    /// Live compressed blocks per KV head (the same in every layer).
    pub blocks: u32,
    /// Uniform `[blocks, first % max_blocks, 0, 0]` the kernels read.
    pub live: wgpu::Buffer,
    /// The window's [`Step`] uniform (slots counted within the window).
    pub win_step: wgpu::Buffer,
    /// With page metadata: a [`Step`] uniform whose `kv_len` is the
    /// compressed slots, so a selection part scores the blocks as pages.
    pub pages_step: wgpu::Buffer,
    /// One layer's dense K/V of every cached token, for prefill.
    pub dense_k: wgpu::Buffer,
    pub dense_v: wgpu::Buffer,
    /// Per layer the pool state `(top, overflow)`, gathered for one readback.
    states: wgpu::Buffer,
    /// Bumped whenever a buffer the recorded plans bind is replaced.
    pub generation: u64,
}

impl Mustafar {
    /// `cap`: the most tokens cached (`max_seq`); `sinks`: leading tokens
    /// the window keeps dense for good; `page_meta`: compression also
    /// writes each block's key max / min (pages for a selection part).
    pub fn new(gpu: &Gpu, opts: MustafarOptions, cap: AttnShape, n_layers: usize, sinks: usize, page_meta: bool) -> Result<Mustafar> {
        let (shape, first) = Mustafar::shape_of(&opts, cap)?;
        let window = Mustafar::window_of(&opts, cap, sinks);
        let stores = (0..n_layers).map(|_| Store::with_meta(gpu, &shape, first, page_meta)).collect();
        let dense = cap.cache_bytes(gpu.caps.f16);
        Ok(Mustafar {
            opts,
            shape,
            slots: Slots::new(gpu, window, n_layers, true)?,
            sinks,
            stores,
            runs: vec![Vec::new(); n_layers],
            first: 0,
            blocks: 0,
            live: gpu.uniform("mustafar.live", bytemuck::cast_slice(&[0u32; 4])),
            win_step: gpu.uniform("mustafar.win_step", bytemuck::bytes_of(&Step::default())),
            pages_step: gpu.uniform("mustafar.pages_step", bytemuck::bytes_of(&Step::default())),
            dense_k: gpu.buffer("mustafar.dense_k", dense),
            dense_v: gpu.buffer("mustafar.dense_v", dense),
            states: gpu.buffer("mustafar.states", 8 * n_layers as u64),
            generation: 0,
        })
    }

    /// Bytes `new` allocates for the same arguments: the dense window,
    /// every layer's store (its first pool, the bitmaps and offsets of every
    /// block, the block metadata), the dense prefill scratch, the uniforms.
    /// The pools grow later, as compressed blocks arrive (see `place_run`),
    /// up to [`Mustafar::growth_for`] more.
    pub fn bytes_for(opts: &MustafarOptions, cap: AttnShape, n_layers: usize, sinks: usize, page_meta: bool, f16: bool) -> Result<u64> {
        let (shape, first) = Mustafar::shape_of(opts, cap)?;
        let window = Slots::bytes_for(&Mustafar::window_of(opts, cap, sinks), n_layers, true, f16);
        let stores = n_layers as u64 * Store::bytes_for(&shape, first, page_meta, f16);
        let uniforms = 3 * uniform_size(size_of::<Step>() as u64);
        Ok(window + stores + 2 * storage_size(cap.cache_bytes(f16)) + storage_size(8 * n_layers as u64) + uniforms)
    }

    /// Bytes the pools may grow by past their first size: every block the
    /// cache can hold compressed at its worst case, and half again for the
    /// step a pool grows by (and room lost between freed runs). What the
    /// memory check adds; the pools' real size is in `allocated`.
    pub fn growth_for(opts: &MustafarOptions, cap: AttnShape, n_layers: usize) -> Result<u64> {
        let (shape, first) = Mustafar::shape_of(opts, cap)?;
        let most = shape.units_bound(shape.max_blocks()) * 3 / 2;
        Ok(n_layers as u64 * 16 * most.saturating_sub(first as u64))
    }

    /// The dense window's shape.
    fn window_of(opts: &MustafarOptions, cap: AttnShape, sinks: usize) -> AttnShape {
        AttnShape { max_seq: opts.window_slots(cap.max_seq as usize, sinks) as u32, ..cap }
    }

    /// The stores' geometry and a new pool's units.
    fn shape_of(opts: &MustafarOptions, cap: AttnShape) -> Result<(MustafarShape, u32)> {
        let d = cap.head_dim as usize;
        let (keep_k, keep_v) = (keep_count(d, opts.k) as u32, keep_count(d, opts.v) as u32);
        let shape = MustafarShape::new(cap, keep_k, keep_v).map_err(|e| Error::msg(format!("--kv {e}")))?;
        let first = shape.units_bound(FIRST_POOL_BLOCKS.min(shape.max_blocks()).max(1));
        let first = u32::try_from(first).map_err(|_| Error::msg("--kv mustafar: pool too large"))?;
        Ok((shape, first))
    }

    /// Forget every block (the pools stay allocated).
    pub fn reset(&mut self) {
        self.blocks = 0;
        self.first = 0;
        self.runs.iter_mut().for_each(Vec::clear);
    }

    /// Slots held compressed.
    pub fn compressed(&self) -> usize {
        self.blocks as usize * T
    }

    /// `decode_parts` of a `new` over `cap`.
    pub fn decode_parts_for(opts: &MustafarOptions, cap: AttnShape) -> Result<u32> {
        Ok(Mustafar::shape_of(opts, cap)?.0.max_blocks())
    }

    /// Extra partial states per query head the decode scratch needs.
    pub fn decode_parts(&self) -> u32 {
        self.shape.max_blocks()
    }

    /// Most tokens one call may carry. Where cuts make room (`cuts`), they
    /// drop compressed blocks, never window tokens, and the window holds the
    /// sinks and up to `window + 63` tokens between calls; otherwise the
    /// cached tokens, the window's included, never pass its slots.
    pub fn max_call(&self, cuts: bool) -> usize {
        let slots = self.slots.shape.max_seq as usize;
        match cuts {
            true => (slots - self.sinks - self.opts.window - (T - 1)).min(MAX_CHUNK),
            false => slots,
        }
    }

    /// Before a call of `n` tokens at position `pos` with `len` tokens
    /// cached: compress what left the window, drop the oldest blocks an
    /// eviction part's `cut` asks for (whole blocks covering `at_least`),
    /// set the live blocks and the window's step, and shift the window
    /// down past what was compressed. Returns the tokens dropped.
    pub fn before_call(&mut self, gpu: &Gpu, len: usize, pos: usize, n: usize, cut: Option<&Cut>) -> Result<usize> {
        let w = len - self.compressed();
        let moved = self.compress(gpu, w)?;
        let sinks = self.sinks.min(w);
        let dropped = match cut {
            Some(c) => {
                let blocks = c.at_least.div_ceil(T) as u32;
                debug_assert!(blocks <= self.blocks, "max_call keeps a call within the budget");
                self.evict(blocks);
                blocks as usize * T
            }
            None => 0,
        };
        self.begin_call(gpu, w - moved, pos, n);
        if moved > 0 {
            self.slots.gather(gpu, &(0..sinks).chain(sinks + moved..w).collect::<Vec<_>>());
        }
        Ok(dropped)
    }

    /// When the window holds `w` tokens: once it holds `sinks + window + 64`
    /// or more, prune and compress its oldest whole blocks after the sinks
    /// into the stores and read back where their pool runs end. Returns the
    /// slots compressed; the window is then shifted down by as many.
    fn compress(&mut self, gpu: &Gpu, w: usize) -> Result<usize> {
        let free = w.saturating_sub(self.sinks).saturating_sub(self.opts.window);
        let nb = ((free / T) as u32).min(self.shape.max_blocks() - self.blocks);
        if nb == 0 {
            return Ok(0);
        }
        let need = u32::try_from(self.shape.units_bound(nb)).map_err(|_| Error::msg("--kv mustafar: pool too large"))?;
        let dst = ((self.first + self.blocks as u64) % self.shape.max_blocks() as u64) as u32;
        let mut d = Vec::new();
        let mut starts = Vec::new();
        for l in 0..self.stores.len() {
            let (start, end) = self.place_run(gpu, l, need)?;
            let store = &self.stores[l];
            gpu.write(&store.state, 0, bytemuck::cast_slice(&[start, 0u32]));
            let (k, v) = (&self.slots.k[l], &self.slots.v[l]);
            d.push(ops::compress(gpu, store, k, v, self.slots.shape.max_seq, self.sinks as u32, nb, dst, end));
            starts.push(start);
        }
        let mut enc = gpu.encoder();
        gpu.record(&mut enc, "mustafar_compress", &d);
        for (l, store) in self.stores.iter().enumerate() {
            gpu.copy(&mut enc, &store.state, 0, &self.states, 8 * l as u64, 8);
        }
        let bytes = gpu.readback_with(Some(enc), &self.states, 0, 8 * self.stores.len() as u64);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let end_block = self.first + (self.blocks + nb) as u64;
        for (l, pair) in words.chunks(2).enumerate() {
            if pair[1] != 0 {
                return Err(Error::msg(format!("mustafar: layer {l}'s pool overflowed (internal error: the run was sized for the worst case)")));
            }
            self.runs[l].push(Run { end_block, start: starts[l], end: pair[0] });
        }
        self.blocks += nb;
        Ok(nb as usize * T)
    }

    /// Drop the `n` oldest live blocks (eviction); a pool run is freed once
    /// every block it holds is gone.
    fn evict(&mut self, n: u32) {
        let n = n.min(self.blocks);
        self.first += n as u64;
        self.blocks -= n;
        let first = self.first;
        self.runs.iter_mut().for_each(|r| r.retain(|run| run.end_block > first));
    }

    /// Write the live blocks and the window's step for a call of `n` tokens
    /// at position `pos`, the window holding `w` tokens before it.
    fn begin_call(&self, gpu: &Gpu, w: usize, pos: usize, n: usize) {
        let ring = (self.first % self.shape.max_blocks() as u64) as u32;
        gpu.write(&self.live, 0, bytemuck::cast_slice(&[self.blocks, ring, 0, 0]));
        let step = Step { pos: pos as u32, n_tokens: n as u32, kv_len: (w + n) as u32, _pad: 0 };
        gpu.write(&self.win_step, 0, bytemuck::bytes_of(&step));
        if self.stores.first().is_some_and(|s| s.meta) {
            let pages = Step { pos: pos as u32, n_tokens: 1, kv_len: self.compressed() as u32, _pad: 0 };
            gpu.write(&self.pages_step, 0, bytemuck::bytes_of(&pages));
        }
    }

    /// A free run of `need` units in layer `l`'s pool, as `(start, end)`:
    /// the first gap between live runs that is large enough, else the pool
    /// grows (by half again, or to what is needed) and the run goes after
    /// the last live one. Growing copies the live units to a new buffer at
    /// the same offsets.
    fn place_run(&mut self, gpu: &Gpu, l: usize, need: u32) -> Result<(u32, u32)> {
        let mut live: Vec<(u32, u32)> = self.runs[l].iter().map(|r| (r.start, r.end)).collect();
        live.sort_unstable();
        let mut at = 0u32;
        for &(s, e) in &live {
            if s >= at && s - at >= need {
                return Ok((at, s));
            }
            at = at.max(e);
        }
        let store = &mut self.stores[l];
        if store.units - at >= need {
            return Ok((at, store.units));
        }
        let units = (at as u64 + need as u64).max(store.units as u64 * 3 / 2);
        if units * 16 > gpu.caps.max_storage_binding {
            return Err(Error::msg(format!(
                "--kv mustafar: layer {l}'s pool would need {} MiB, above this adapter's storage binding limit of {} MiB (lower --ctx or the budget, or raise k= / v=)",
                (units * 16) >> 20,
                gpu.caps.max_storage_binding >> 20
            )));
        }
        let pool = gpu.buffer("mustafar.pool", units * 16);
        let mut enc = gpu.encoder();
        gpu.copy(&mut enc, &store.pool, 0, &pool, 0, at as u64 * 16);
        gpu.submit(enc);
        store.pool = pool;
        store.units = units as u32;
        self.generation += 1;
        Ok((at, units as u32))
    }

    /// Layer `l`'s compressed blocks as pages, when compression writes
    /// their key summaries.
    pub fn pages(&self, l: usize) -> Option<Pages<'_>> {
        let s = &self.stores[l];
        s.meta.then_some(Pages { kmax: &s.kmax, kmin: &s.kmin, step: &self.pages_step })
    }

    /// Layer `l`'s attention. Decode: `attn_decode` over the window writes
    /// its chunks' partial states, `mustafar_attn` one per (head, block) —
    /// every live block, or those in `pages` — into the same scratch, and
    /// the merge makes them one softmax. Prefill: the blocks are expanded
    /// and the window placed behind them in the dense scratch of the whole
    /// context, which the prefill kernels then read (`step`: the call's).
    pub fn attend(&self, g: &Gpu, l: usize, n: usize, io: &LayerIo, s: &AttnScratch, pages: Option<PageList>) -> Vec<Dispatch> {
        let (k, v) = (&self.slots.k[l], &self.slots.v[l]);
        if n == 1 {
            let da = attn::attn_decode(g, &self.slots.shape, io.q, k, v, &s.decode, io.out, &s.lse, &self.win_step);
            let base = s.decode.n_split * s.decode.parts;
            let list = pages.map(|p| p.list());
            let blocks = ops::attn_partial(g, &self.stores[l], io.q, &s.decode.part_o, &s.decode.part_ml, s.decode.stride, base, &self.live, list);
            return vec![da.partial, blocks, da.merge];
        }
        let sh = &self.shape;
        let expand = ops::expand(g, &self.stores[l], &self.dense_k, &self.dense_v, sh.attn.max_seq, 0, 0, sh.max_blocks(), &self.live);
        let place = ops::place(g, &self.slots.shape, &sh.attn, k, v, &self.dense_k, &self.dense_v, io.step, &self.win_step);
        let mut d = vec![expand, place];
        d.extend(attn::attn_prefill(g, &sh.attn, io.q, &self.dense_k, &self.dense_v, &s.prefill, io.out, io.step));
        d
    }

    /// Bytes the compressed blocks take: the pool units handed out plus each
    /// live block's bitmaps (8 bytes) and offsets (4 bytes) per tile.
    pub fn compressed_bytes(&self) -> usize {
        let meta = self.blocks as usize * self.shape.attn.n_kv_heads as usize * self.shape.tiles() as usize * 12;
        self.pool_units() * 16 + self.stores.len() * meta
    }

    /// Bytes layer `l`'s compressed blocks take (`compressed_bytes` is the
    /// sum over layers).
    pub fn layer_compressed_bytes(&self, l: usize) -> u64 {
        let meta = self.blocks as u64 * self.shape.attn.n_kv_heads as u64 * self.shape.tiles() as u64 * 12;
        let units: u64 = self.runs[l].iter().map(|r| (r.end - r.start) as u64).sum();
        units * 16 + meta
    }

    /// Pool units the live blocks' runs hold, summed over layers.
    pub fn pool_units(&self) -> usize {
        self.runs.iter().flatten().map(|r| (r.end - r.start) as usize).sum()
    }

    /// Bytes allocated: the window, every store as it is now (its pool
    /// grows), the prefill scratch, the uniforms.
    pub fn allocated(&self) -> u64 {
        let stores: u64 = self.stores.iter().map(Store::allocated).sum();
        let uniforms = self.live.size() + self.win_step.size() + self.pages_step.size();
        self.slots.allocated() + stores + self.dense_k.size() + self.dense_v.size() + self.states.size() + uniforms
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
