//! The model's own sliding-window layers (Gemma 3's local layers, Mistral):
//! a query there sees its `W` most recent positions, so such a layer never
//! needs more than its window. They are not a `--kv` policy: every policy
//! acts on the global layers, and the windowed ones keep their last tokens
//! in slots of their own, sized to the window plus one call:
//! `min(ctx, W - 1 + MAX_CHUNK)` per layer and KV head.
//!
//! Before a call that would not fit, the last `W - 1` tokens are gathered
//! to the front (`kv_compact`), so slots stay positions in order shifted by
//! a constant and the attention kernels' window bound (`AttnShape::window`,
//! over slots) is the position window. Between compactions the slots fill
//! up, so a decode step compacts once every `MAX_CHUNK` tokens.

use super::attend::{AttnScratch, LayerIo, MAX_CHUNK};
use super::storage::Slots;
use crate::Result;
use crate::config::ModelConfig;
use crate::gpu::{Gpu, uniform_size};
use crate::kernels::Dispatch;
use crate::ops::Step;
use crate::ops::attention::{AttnKind, AttnShape};

/// Where a model layer's K/V live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The policy's cache, its `i`-th layer.
    Global(usize),
    /// The windowed slots, their `i`-th layer.
    Local(usize),
}

/// Each model layer's place: the windowed layers numbered apart from the
/// global ones (the policy sees only those, as layers `0 ..`).
pub fn places(cfg: &ModelConfig) -> Vec<Place> {
    let (mut g, mut w) = (0, 0);
    (0..cfg.n_layers)
        .map(|l| match cfg.layer_window(l) {
            Some(_) => (Place::Local(w), w += 1).0,
            None => (Place::Global(g), g += 1).0,
        })
        .collect()
}

/// The windowed layers' slots, step and attention scratch.
pub struct Local {
    pub slots: Slots,
    /// The window `W` in tokens.
    pub size: usize,
    /// Tokens each windowed layer holds (the same in all).
    pub len: usize,
    /// The slots' step: the call's positions, `kv_len = len + n`.
    step: wgpu::Buffer,
    scratch: AttnScratch,
}

impl Local {
    /// The windowed layers' attention shape over a context of `ctx` tokens
    /// (None when the model has none).
    pub fn shape(cfg: &ModelConfig, ctx: usize) -> Option<(AttnShape, usize)> {
        let w = cfg.window.as_ref().filter(|w| w.local.contains(&true))?;
        let n = w.local.iter().filter(|&&l| l).count();
        let max_seq = ctx.min(w.size - 1 + MAX_CHUNK);
        let shape = AttnShape { window: w.size as u32, ..super::attn_shape(cfg, max_seq) };
        Some((shape, n))
    }

    pub fn new(gpu: &Gpu, cfg: &ModelConfig, ctx: usize) -> Result<Option<Local>> {
        let Some((shape, n)) = Local::shape(cfg, ctx) else { return Ok(None) };
        shape.check(gpu)?;
        Ok(Some(Local {
            slots: Slots::new(gpu, shape, n, true)?,
            size: shape.window as usize,
            len: 0,
            step: gpu.uniform("kv.local_step", bytemuck::bytes_of(&Step::default())),
            scratch: AttnScratch::new(gpu, &shape, &shape, 0)?,
        }))
    }

    /// Bytes `new` allocates on an adapter whose kernels are `kind`.
    pub fn bytes_for(cfg: &ModelConfig, ctx: usize, f16: bool, kind: AttnKind, limit: u64) -> u64 {
        let Some((shape, n)) = Local::shape(cfg, ctx) else { return 0 };
        Slots::bytes_for(&shape, n, true, f16) + AttnScratch::bytes_for(&shape, &shape, 0, kind, limit) + uniform_size(size_of::<Step>() as u64)
    }

    /// Before a call of `n` tokens at position `pos`: keep the last
    /// `W - 1` tokens if the call would not fit, then write the step.
    pub fn before_call(&mut self, gpu: &Gpu, pos: usize, n: usize) {
        let cap = self.slots.shape.max_seq as usize;
        if self.len + n > cap {
            let keep = self.len.min(self.size - 1);
            self.slots.gather(gpu, &(self.len - keep..self.len).collect::<Vec<_>>());
            self.len = keep;
        }
        let step = Step { pos: pos as u32, n_tokens: n as u32, kv_len: (self.len + n) as u32, _pad: 0 };
        gpu.write(&self.step, 0, bytemuck::bytes_of(&step));
    }

    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Windowed layer `i`'s append and attention for a call of `n` tokens.
    pub fn record_layer(&self, g: &Gpu, i: usize, n: usize, io: &LayerIo) -> Vec<Dispatch> {
        let mut d = vec![self.slots.append(g, i, io, &self.step, n as u32)];
        d.extend(self.slots.attend(g, i, n, io, &self.scratch, &self.step, None));
        d
    }

    /// Most tokens one call may carry.
    pub fn max_call(&self) -> usize {
        self.scratch.prefill.max_tokens as usize
    }

    /// Tokens a windowed layer attends at the next decode step.
    pub fn visible(&self) -> usize {
        self.len.min(self.size - 1) + 1
    }

    /// Bytes held on the device: the slots, scratch and step.
    pub fn allocated(&self) -> u64 {
        self.slots.allocated() + self.scratch.allocated() + self.step.size()
    }
}
