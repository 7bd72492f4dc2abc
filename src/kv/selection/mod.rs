//! The selection axis: which cached pages a decode step attends. `none`
//! (every cached token) or `quest` (the pages whose key bounds promise the
//! largest scores). A selection part scores pages (the storage's
//! [`Pages`] where it keeps them, else its own metadata) and hands the
//! storage a [`PageList`]; it knows no storage or eviction part.

pub mod quest;

use super::seam::{PageList, Pages};
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
pub use quest::{Quest, QuestOptions};

/// A cache's selection part.
pub enum Selection {
    None,
    Quest(Box<Quest>),
}

impl Selection {
    /// After layer `l`'s append into `k_cache`: the part's own page
    /// metadata update, if it keeps any.
    pub fn record_meta(&self, g: &Gpu, l: usize, k_cache: &wgpu::Buffer, step: &wgpu::Buffer, n: u32) -> Option<Dispatch> {
        match self {
            Selection::None => None,
            Selection::Quest(q) => q.record_meta(g, l, k_cache, step, n),
        }
    }

    /// Layer `l`'s selection at a decode step; None where the layer attends
    /// every cached token.
    pub fn select<'a>(&'a self, g: &Gpu, l: usize, q: &wgpu::Buffer, pages: Option<Pages>, step: &wgpu::Buffer) -> Option<([Dispatch; 2], PageList<'a>)> {
        match self {
            Selection::None => None,
            Selection::Quest(qu) => qu.select(g, l, q, pages, step),
        }
    }

    /// After slots moved (a cut left `lens[l]` in layer `l`): recompute the
    /// part's own page metadata.
    pub fn rebuild(&self, gpu: &Gpu, lens: &[usize]) {
        if let Selection::Quest(q) = self {
            q.rebuild(gpu, lens);
        }
    }

    /// Bytes layer `l` reads at a decode step from pages covering `tokens`
    /// tokens that hold `bytes`.
    pub fn read(&self, l: usize, tokens: usize, bytes: u64) -> u64 {
        match self {
            Selection::None => bytes,
            Selection::Quest(q) => q.read(l, tokens, bytes),
        }
    }

    /// Bytes of layer `l`'s own page metadata over `tokens` tokens.
    pub fn meta_resident(&self, l: usize, tokens: usize) -> u64 {
        match self {
            Selection::None => 0,
            Selection::Quest(q) => q.meta_resident(l, tokens),
        }
    }

    /// One line for `/kv` over pages covering `tokens` tokens.
    pub fn describe(&self, tokens: usize) -> Option<String> {
        match self {
            Selection::None => None,
            Selection::Quest(q) => Some(q.describe(tokens)),
        }
    }

    /// Bytes allocated.
    pub fn allocated(&self) -> u64 {
        match self {
            Selection::None => 0,
            Selection::Quest(q) => q.allocated(),
        }
    }

    pub fn quest(&self) -> Option<&Quest> {
        match self {
            Selection::Quest(q) => Some(q),
            Selection::None => None,
        }
    }
}
