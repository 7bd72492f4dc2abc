//! The storage axis: how cached K/V rows are held and read. `dense` slots
//! (every policy's default), or `mustafar`'s bitmap-sparse blocks behind a
//! dense window. A storage appends a call's rows, attends them (all, or a
//! selection part's [`PageList`]), offers page metadata where it keeps it
//! ([`Pages`]) and applies an eviction part's [`Cut`]; it knows no
//! eviction or selection part.
//!
//! A new storage (one offloading cold rows to host memory, say) is a file here, a variant of
//! [`Storage`] and its arms below, plus its options in `spec.rs` and its
//! combination rules in `compose.rs`.

pub mod dense;
pub mod mustafar;

use super::attend::{AttnScratch, LayerIo};
use super::seam::{Cut, PageList, Pages};
use crate::Result;
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
use crate::ops::attention::AttnShape;
pub use dense::Slots;
pub use mustafar::{Mustafar, MustafarOptions};

/// A cache's storage.
pub enum Storage {
    Dense(Slots),
    Mustafar(Box<Mustafar>),
}

/// Which storage a spec resolved to, with its options (`compose.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StorageOptions {
    Dense,
    Mustafar(MustafarOptions),
}

/// The shapes a storage is made for (`compose.rs` fills them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// The dense slots' shape (`max_seq`: slots per layer and KV head).
    pub slots: AttnShape,
    /// The most tokens cached at once, as an attention shape.
    pub context: AttnShape,
    pub n_layers: usize,
    /// Leading tokens an eviction part never drops.
    pub sinks: usize,
    /// Slots move (an eviction part cuts them).
    pub gather: bool,
    /// An eviction part compacts the slots with lists of its own.
    pub cuts: bool,
    /// A selection part wants the storage's page metadata where it keeps any.
    pub page_meta: bool,
    pub f16: bool,
}

/// One layer's bytes as a storage holds them: rows outside any page
/// (Mustafar's window), and the tokens and bytes its pages cover.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerBytes {
    pub unpaged: u64,
    pub paged_tokens: usize,
    pub paged: u64,
}

impl Storage {
    pub fn new(gpu: &Gpu, o: &StorageOptions, g: &Geometry) -> Result<Storage> {
        Ok(match o {
            StorageOptions::Dense => Storage::Dense(Slots::new_with(gpu, g.slots, g.n_layers, g.gather, g.cuts)?),
            StorageOptions::Mustafar(m) => Storage::Mustafar(Box::new(Mustafar::new(gpu, *m, g.context, g.n_layers, g.sinks, g.page_meta)?)),
        })
    }

    /// Bytes `new` allocates, and the extra decode partial states per query
    /// head the attention scratch needs.
    pub fn bytes_for(o: &StorageOptions, g: &Geometry) -> Result<(u64, u32)> {
        Ok(match o {
            StorageOptions::Dense => (Slots::bytes_for_with(&g.slots, g.n_layers, g.gather, g.cuts, g.f16), 0),
            StorageOptions::Mustafar(m) => {
                (Mustafar::bytes_for(m, g.context, g.n_layers, g.sinks, g.page_meta, g.f16)?, Mustafar::decode_parts_for(m, g.context)?)
            }
        })
    }

    /// Bytes the storage may allocate later, as it fills.
    pub fn growth_for(o: &StorageOptions, g: &Geometry) -> Result<u64> {
        match o {
            StorageOptions::Dense => Ok(0),
            StorageOptions::Mustafar(m) => Mustafar::growth_for(m, g.context, g.n_layers),
        }
    }

    /// Layer `l`'s bytes when it keeps `len` tokens.
    pub fn layer_bytes(&self, l: usize, len: usize) -> LayerBytes {
        let token = self.slots().token_bytes();
        match self {
            Storage::Dense(s) => LayerBytes { unpaged: 0, paged_tokens: len, paged: s.held_bytes(len) },
            Storage::Mustafar(m) => {
                let c = m.compressed();
                LayerBytes { unpaged: (len - c) as u64 * token, paged_tokens: c, paged: m.layer_compressed_bytes(l) }
            }
        }
    }

    /// One line for `/kv` when `len` tokens are cached, and what a
    /// selection part's pages are here.
    pub fn describe(&self, len: usize) -> (Option<String>, Option<&'static str>) {
        match self {
            Storage::Dense(s) if s.shape.kvq > 0 => {
                let (q, f16) = (s.shape.kvq, 2 * s.shape.head_dim as u64);
                let row = s.shape.row_bytes(true);
                (Some(format!("storage: q{q}, {row} bytes per row of {} ({:.0}% of f16)", s.shape.head_dim, 100.0 * row as f64 / f16 as f64)), None)
            }
            Storage::Dense(s) if s.shape.kivi > 0 => {
                let a = &s.shape;
                let (k, v) = a.kivi_slot_bytes();
                let f16 = 2.0 * a.head_dim as f64;
                let line = format!(
                    "storage: kivi {}-bit, keys per channel over {} tokens, values per token over {} channels; {k:.1} + {v:.1} bytes per quantized token and KV head ({:.1}% of f16); the first {} tokens and the newest past the last multiple of {} in f16 ({} of {len} now)",
                    a.kivi,
                    a.kivi_group,
                    a.kivi_gv(),
                    100.0 * (k + v) / (2.0 * f16),
                    a.kivi_sink,
                    a.kivi_res,
                    len - a.kivi_quantized(len)
                );
                (Some(line), None)
            }
            Storage::Dense(_) => (None, None),
            Storage::Mustafar(m) => (Some(m.describe(len - m.compressed())), Some("pages: mustafar's compressed blocks; its dense window is always attended")),
        }
    }

    /// The dense slots: all of them, or Mustafar's window.
    pub fn slots(&self) -> &Slots {
        match self {
            Storage::Dense(s) => s,
            Storage::Mustafar(m) => &m.slots,
        }
    }

    /// The step uniform the storage's kernels read when it counts its own
    /// slots (Mustafar's window), else None (the call's).
    pub fn step(&self) -> Option<&wgpu::Buffer> {
        match self {
            Storage::Dense(_) => None,
            Storage::Mustafar(m) => Some(&m.win_step),
        }
    }

    /// Layer `l`'s page metadata, when the storage keeps it itself.
    pub fn pages(&self, l: usize) -> Option<Pages<'_>> {
        match self {
            Storage::Dense(_) => None,
            Storage::Mustafar(m) => m.pages(l),
        }
    }

    /// Most tokens one call may carry; `cuts`: an eviction part makes room
    /// with cuts before calls.
    pub fn max_call(&self, cuts: bool) -> usize {
        match self {
            Storage::Dense(s) => s.shape.max_seq as usize,
            Storage::Mustafar(m) => m.max_call(cuts),
        }
    }

    /// Before a call of `n` tokens at `pos` with `len` cached: apply `cut`
    /// and whatever the storage does between calls. Returns the tokens dropped.
    pub fn before_call(&mut self, gpu: &Gpu, len: usize, pos: usize, n: usize, cut: Option<&Cut>) -> Result<usize> {
        match self {
            Storage::Dense(s) => Ok(s.cut(gpu, len, cut)),
            Storage::Mustafar(m) => m.before_call(gpu, len, pos, n, cut),
        }
    }

    /// Layer `l`'s append of the call's K/V rows (`step`: the slots' step).
    pub fn append(&self, g: &Gpu, l: usize, io: &LayerIo, step: &wgpu::Buffer, n: u32) -> Dispatch {
        self.slots().append(g, l, io, step, n)
    }

    /// Layer `l`'s attention for a call of `n` tokens: everything cached, or
    /// at a decode step the pages in `pages` (`step`: the slots' step).
    #[allow(clippy::too_many_arguments)]
    pub fn attend(&self, g: &Gpu, l: usize, n: usize, io: &LayerIo, s: &AttnScratch, step: &wgpu::Buffer, pages: Option<PageList>) -> Vec<Dispatch> {
        match self {
            Storage::Dense(d) => d.attend(g, l, n, io, s, step, pages),
            Storage::Mustafar(m) => m.attend(g, l, n, io, s, pages),
        }
    }

    /// Extra decode partial states per query head the attention scratch needs.
    pub fn decode_parts(&self) -> u32 {
        match self {
            Storage::Dense(_) => 0,
            Storage::Mustafar(m) => m.decode_parts(),
        }
    }

    /// Bytes allocated now.
    pub fn allocated(&self) -> u64 {
        match self {
            Storage::Dense(s) => s.allocated(),
            Storage::Mustafar(m) => m.allocated(),
        }
    }

    /// Bumped when a buffer the recorded forward plans bind is replaced.
    pub fn generation(&self) -> u64 {
        match self {
            Storage::Dense(_) => 0,
            Storage::Mustafar(m) => m.generation,
        }
    }

    /// Forget every token.
    pub fn reset(&mut self) {
        if let Storage::Mustafar(m) = self {
            m.reset();
        }
    }

    pub fn mustafar(&self) -> Option<&Mustafar> {
        match self {
            Storage::Mustafar(m) => Some(m),
            Storage::Dense(_) => None,
        }
    }
}
