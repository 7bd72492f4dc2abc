//! The eviction axis: which cached tokens are dropped, and when. `keep`
//! (nothing is dropped: the cache holds the context), `streaming` (sinks
//! and the most recent tokens within a budget) or a `scored` policy (h2o,
//! snapkv, ... with per-layer budgets). An eviction part asks the storage
//! for a [`Cut`] before a call, or cuts the dense slots itself (scored), and
//! observes each layer's attention; it knows no storage or selection part.

pub mod scored;
pub mod streaming;

use super::attend::AttnScratch;
use super::seam::Cut;
use crate::Result;
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
pub use scored::{Scored, ScoredOptions};
pub use streaming::{Streaming, StreamingOptions};

/// A cache's eviction part.
pub enum Eviction {
    Keep,
    Streaming(Streaming),
    Scored(Box<Scored>),
}

impl Eviction {
    /// Tokens the next calls may still add to `len` of `capacity`: None
    /// when the part makes room as needed.
    pub fn room(&self, len: usize, capacity: usize) -> Option<usize> {
        match self {
            Eviction::Keep => Some(capacity - len),
            _ => None,
        }
    }

    /// Most tokens one call may carry under this part.
    pub fn max_call(&self) -> usize {
        match self {
            Eviction::Streaming(s) => s.max_call(),
            _ => usize::MAX,
        }
    }

    /// Before a call of `n` tokens at `pos` with `len` cached: the cut the
    /// storage should apply (streaming), or a scored part's own cuts of the
    /// dense slots. Returns the cut and the tokens a scored part evicted.
    pub fn before_call(&mut self, gpu: &Gpu, len: usize, pos: usize, n: usize) -> (Option<Cut>, usize) {
        match self {
            Eviction::Keep => (None, 0),
            Eviction::Streaming(s) => (s.plan(len, n), 0),
            Eviction::Scored(s) => (None, s.before_call(gpu, pos, n)),
        }
    }

    /// Count `n` appended tokens.
    pub fn advance(&mut self, n: usize) {
        if let Eviction::Scored(s) = self {
            s.advance(n);
        }
    }

    /// After a call of `n` tokens whose last chunk carried `last`: a scored
    /// part cuts every layer to its budget. Returns the tokens evicted per
    /// layer on average.
    pub fn after_call(&mut self, gpu: &Gpu, n: usize, last: usize) -> Result<usize> {
        match self {
            Eviction::Scored(s) => s.after_call(gpu, n, last),
            _ => Ok(0),
        }
    }

    /// Tokens per layer when they differ by layer (a scored part), else None.
    pub fn lens(&self) -> Option<&[usize]> {
        match self {
            Eviction::Scored(s) => Some(&s.lens),
            _ => None,
        }
    }

    /// Layer `l`'s own step uniform, when layers hold different counts.
    pub fn layer_step(&self, l: usize) -> Option<&wgpu::Buffer> {
        match self {
            Eviction::Scored(s) => Some(s.step(l)),
            _ => None,
        }
    }

    /// Layer `l`'s observation of a call of `n` tokens: the attention each
    /// slot got (queries `q`, keys `k`, the attention's log-sum-exp in `s`).
    pub fn observe(&self, g: &Gpu, l: usize, n: usize, q: &wgpu::Buffer, k: &wgpu::Buffer, s: &AttnScratch) -> Option<Dispatch> {
        let Eviction::Scored(sc) = self else { return None };
        let lse = if n == 1 { &s.lse } else { &s.prefill.lse };
        sc.accumulate(g, l, n, q, k, lse)
    }

    /// Fewest tokens the last chunk of a multi-token call should carry.
    pub fn min_last_chunk(&self) -> usize {
        match self {
            Eviction::Scored(s) => s.min_last_chunk(),
            _ => 1,
        }
    }

    /// Bytes allocated.
    pub fn allocated(&self) -> u64 {
        match self {
            Eviction::Scored(s) => s.allocated(),
            _ => 0,
        }
    }

    /// The sinks a storage keeps dense for good.
    pub fn sinks(&self) -> usize {
        match self {
            Eviction::Streaming(s) => s.sinks,
            _ => 0,
        }
    }

    /// Forget every token.
    pub fn reset(&mut self, gpu: &Gpu) {
        if let Eviction::Scored(s) = self {
            s.reset(gpu);
        }
    }

    /// One line for `/kv` after `pos` tokens run and `evicted` dropped.
    pub fn describe(&self, pos: usize, evicted: usize) -> Option<String> {
        match self {
            Eviction::Keep => None,
            Eviction::Streaming(st) => {
                Some(format!("streaming: {} sinks + the most recent tokens in {} slots per layer; {pos} tokens run, {evicted} evicted", st.sinks, st.budget))
            }
            Eviction::Scored(sc) => Some(format!("{}; {pos} tokens run, {evicted} evicted per layer on average", sc.describe())),
        }
    }

    pub fn scored(&self) -> Option<&Scored> {
        match self {
            Eviction::Scored(s) => Some(s),
            _ => None,
        }
    }

    pub fn scored_mut(&mut self) -> Option<&mut Scored> {
        match self {
            Eviction::Scored(s) => Some(s),
            _ => None,
        }
    }
}
