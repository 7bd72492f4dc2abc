//! Dense storage: per layer one K and one V buffer of `kv_t` (f16 where the
//! adapter has SHADER_F16, else f32), laid out `[n_kv_heads][max_seq][head_dim]`,
//! or with `q8` / `q4` (`shape.kvq`) rows of 32-element blocks with f16
//! scales (`shaders/kv_format.wgsl`), quantized as they are appended and
//! dequantized in registers by every kernel that reads them;
//! allocated once: the whole context, an eviction policy's budget, or under
//! `mustafar` the dense window of recent tokens. Keys are stored post-RoPE,
//! so a slot need not equal a position: a cut gathers the kept slots to the
//! front (`kv_compact`). With `kivi` (`shape.kivi`), keys per channel and
//! values per token in 2 or 4 bits, the recent slots in f16 staging rows
//! until a residual's worth of them is quantized after an attention
//! (`shaders/kivi_format.wgsl`).

use super::super::attend::{AttnScratch, LayerIo};
use super::super::seam::{Cut, PageList};
use crate::Result;
use crate::gpu::{Gpu, storage_size, uniform_size};
use crate::kernels::Dispatch;
use crate::ops::attention::{self as attn, AttnShape, DecodeAttn};
use crate::ops::{evict, quest};

/// The dense slots of every layer.
pub struct Slots {
    /// Per layer: `[n_kv_heads][max_seq][head_dim]` keys (post-RoPE).
    pub k: Vec<wgpu::Buffer>,
    /// Per layer: `[n_kv_heads][max_seq][head_dim]` values.
    pub v: Vec<wgpu::Buffer>,
    /// The slots' attention shape (`max_seq`: slots per layer and KV head).
    pub shape: AttnShape,
    /// Bytes of one K (or V) element: 2 (f16) or 4.
    pub elem: usize,
    /// Per layer: the compaction to the slots in `keep`, when slots move.
    compact: Vec<Vec<Dispatch>>,
    keep: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// KIVI under an eviction part: what its compactions need.
    kivi_cuts: Option<Box<KiviCuts>>,
}

/// KIVI's compactions (`evict::kivi_compaction`): the dense rows they
/// gather in (one pair serves every layer) and each layer's step holding
/// its cached length before a cut.
struct KiviCuts {
    temp: [wgpu::Buffer; 2],
    steps: Vec<wgpu::Buffer>,
}

impl Slots {
    /// `n_layers` layers of `shape`; `gather`: slots move (a cut, a window
    /// shifting down), so the gather list and its dispatches are made too.
    pub fn new(gpu: &Gpu, shape: AttnShape, n_layers: usize, gather: bool) -> Result<Slots> {
        Slots::new_with(gpu, shape, n_layers, gather, gather)
    }

    /// As `new`; `cuts`: an eviction part will compact the slots (its own
    /// lists, through [`Slots::compaction`]), which KIVI needs room for.
    pub fn new_with(gpu: &Gpu, shape: AttnShape, n_layers: usize, gather: bool, cuts: bool) -> Result<Slots> {
        let [kb, vb] = shape.kv_cache_bytes(gpu.caps.f16);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for l in 0..n_layers {
            k.push(gpu.buffer(&format!("kv.k{l}"), kb));
            v.push(gpu.buffer(&format!("kv.v{l}"), vb));
        }
        let kivi_cuts = (shape.kivi > 0 && (cuts || gather)).then(|| {
            let bytes = shape.compacted().cache_bytes(gpu.caps.f16);
            let step = crate::ops::Step::default();
            let step = bytemuck::bytes_of(&step);
            Box::new(KiviCuts {
                temp: [gpu.buffer("kivi.tk", bytes), gpu.buffer("kivi.tv", bytes)],
                steps: (0..n_layers).map(|l| gpu.uniform(&format!("kivi.step{l}"), step)).collect(),
            })
        });
        let mut slots = Slots { k, v, shape, elem: if gpu.caps.f16 { 2 } else { 4 }, compact: Vec::new(), keep: None, kivi_cuts };
        if gather {
            let [list, counts] = Slots::keep_buffers(&shape).map(|(label, bytes)| gpu.buffer(label, bytes));
            for l in 0..n_layers {
                let c = slots.compaction(gpu, l, &list, &counts, None)?;
                slots.compact.push(c);
            }
            slots.keep = Some((list, counts));
        }
        Ok(slots)
    }

    /// Layer `l`'s compaction to the slots `keep` lists per KV head
    /// (`counts` of them), moving `acc`'s scores along: `kv_compact`, or
    /// under KIVI `evict::kivi_compaction` (run [`Slots::mark_lens`] first).
    pub fn compaction(&self, gpu: &Gpu, l: usize, keep: &wgpu::Buffer, counts: &wgpu::Buffer, acc: Option<&wgpu::Buffer>) -> Result<Vec<Dispatch>> {
        let (s, ms) = (&self.shape, self.shape.max_seq);
        match &self.kivi_cuts {
            Some(c) if s.kivi > 0 => {
                let temp = [&c.temp[0], &c.temp[1]];
                evict::kivi_compaction(gpu, s, &self.k[l], &self.v[l], temp, keep, counts, acc, &c.steps[l], ms)
            }
            _ => Ok(vec![evict::kv_compact(gpu, s, &self.k[l], &self.v[l], keep, counts, acc, ms)?]),
        }
    }

    /// Before any cut of a call: every layer's cached length (`lens`), which
    /// KIVI's compaction reads to find its boundary. Nothing otherwise.
    pub fn mark_lens(&self, gpu: &Gpu, lens: &[usize]) {
        if let Some(c) = &self.kivi_cuts {
            for (b, &n) in c.steps.iter().zip(lens) {
                let st = crate::ops::Step { pos: 0, n_tokens: 0, kv_len: n as u32, _pad: 0 };
                gpu.write(b, 0, bytemuck::bytes_of(&st));
            }
        }
    }

    /// Bytes `new` allocates for the same arguments.
    pub fn bytes_for(shape: &AttnShape, n_layers: usize, gather: bool, f16: bool) -> u64 {
        Slots::bytes_for_with(shape, n_layers, gather, gather, f16)
    }

    /// Bytes `new_with` allocates for the same arguments.
    pub fn bytes_for_with(shape: &AttnShape, n_layers: usize, gather: bool, cuts: bool, f16: bool) -> u64 {
        let keep = if gather { Slots::keep_buffers(shape).iter().map(|&(_, b)| storage_size(b)).sum() } else { 0 };
        let kivi = match shape.kivi > 0 && (cuts || gather) {
            true => 2 * storage_size(shape.compacted().cache_bytes(f16)) + n_layers as u64 * uniform_size(size_of::<crate::ops::Step>() as u64),
            false => 0,
        };
        n_layers as u64 * shape.kv_cache_bytes(f16).iter().map(|&b| storage_size(b)).sum::<u64>() + keep + kivi
    }

    /// Bytes one token takes in one layer (K and V); KIVI's quantized ones
    /// are [`Slots::held_bytes`]'s.
    pub fn token_bytes(&self) -> u64 {
        2 * self.shape.n_kv_heads as u64 * self.shape.row_bytes(self.elem == 2)
    }

    /// Bytes one layer holds for `len` cached tokens (K and V).
    pub fn held_bytes(&self, len: usize) -> u64 {
        self.shape.held_bytes(len, self.elem == 2)
    }

    /// Bytes these slots hold on the device.
    pub fn allocated(&self) -> u64 {
        let keep = self.keep.as_ref().map_or(0, |(l, c)| l.size() + c.size());
        let kivi = self.kivi_cuts.as_ref().map_or(0, |c| c.temp.iter().chain(&c.steps).map(|b| b.size()).sum());
        self.k.iter().chain(&self.v).map(|b| b.size()).sum::<u64>() + keep + kivi
    }

    /// The gather list and counts: (label, requested bytes).
    fn keep_buffers(shape: &AttnShape) -> [(&'static str, u64); 2] {
        let heads = shape.n_kv_heads as u64;
        [("kv.keep", 4 * heads * shape.max_seq as u64), ("kv.keep_counts", 4 * heads)]
    }

    /// Before a call: apply an eviction part's cut by keeping exactly its
    /// slots. Returns the tokens dropped.
    pub fn cut(&self, gpu: &Gpu, len: usize, cut: Option<&Cut>) -> usize {
        match cut {
            Some(c) => {
                self.gather(gpu, &c.keep);
                len - c.keep.len()
            }
            None => 0,
        }
    }

    /// Gather the slots `keep` (increasing) of every layer and KV head to
    /// slots `0 .. keep.len()` (`kv_compact`).
    pub fn gather(&self, gpu: &Gpu, keep: &[usize]) {
        let (list, counts) = self.keep.as_ref().expect("slots that move were made with a gather list");
        let heads = self.shape.n_kv_heads as usize;
        let ms = self.shape.max_seq as usize;
        let words: Vec<u32> = (0..heads)
            .flat_map(|_| {
                let mut row: Vec<u32> = keep.iter().map(|&s| s as u32).collect();
                row.resize(ms, 0);
                row
            })
            .collect();
        gpu.write(list, 0, bytemuck::cast_slice(&words));
        gpu.write(counts, 0, bytemuck::cast_slice(&vec![keep.len() as u32; heads]));
        let mut enc = gpu.encoder();
        gpu.record(&mut enc, "kv_compact", self.compact.iter().flatten());
        gpu.submit(enc);
    }

    /// Layer `l`'s append of a call's `n` K/V rows at the slots `step` says.
    pub fn append(&self, g: &Gpu, l: usize, io: &LayerIo, step: &wgpu::Buffer, n: u32) -> Dispatch {
        attn::kv_append(g, &self.shape, io.k, io.v, &self.k[l], &self.v[l], step, n)
    }

    /// KIVI: after layer `l`'s attention to a call of `n` tokens, quantize
    /// the staged slots the boundary passes (`kivi_pack`).
    pub fn settle(&self, g: &Gpu, l: usize, step: &wgpu::Buffer, n: u32) -> Option<Dispatch> {
        (self.shape.kivi > 0).then(|| attn::kivi_pack(g, &self.shape, &self.k[l], &self.v[l], step, n))
    }

    /// Layer `l`'s attention over its valid slots (`step`'s `kv_len`): every
    /// slot, or at a decode step only the pages in `pages`.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(&self, g: &Gpu, l: usize, n: usize, io: &LayerIo, s: &AttnScratch, step: &wgpu::Buffer, pages: Option<PageList>) -> Vec<Dispatch> {
        let (k, v) = (&self.k[l], &self.v[l]);
        match (n, pages) {
            (1, Some(p)) => {
                let DecodeAttn { partial, merge } = quest::attn_decode_pages(g, p.shape, io.q, k, v, p.scratch, io.out, &s.lse, step);
                vec![partial, merge]
            }
            (1, None) => {
                let DecodeAttn { partial, merge } = attn::attn_decode(g, &self.shape, io.q, k, v, &s.decode, io.out, &s.lse, step);
                vec![partial, merge]
            }
            _ => attn::attn_prefill(g, &self.shape, io.q, k, v, &s.prefill, io.out, step),
        }
    }

    /// Copy the first `len` slots of every layer and KV head from `src`
    /// (the same shape).
    pub fn copy_prefix_from(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, src: &Slots, len: usize) {
        let row = self.shape.row_bytes(self.elem == 2);
        let stride = self.shape.max_seq as u64 * row;
        for (d, s) in self.k.iter().chain(&self.v).zip(src.k.iter().chain(&src.v)) {
            for h in 0..self.shape.n_kv_heads as u64 {
                gpu.copy(enc, s, h * stride, d, h * stride, len as u64 * row);
            }
        }
    }
}
