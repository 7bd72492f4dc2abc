//! A KV cache's state as bytes, for `/save` and `/load` in `wgkv chat`:
//! the K/V rows of the tokens each layer keeps (not the allocated slots),
//! in the cache's element type, plus the counts that say what they are.
//! An eviction policy's cache is saved at its resident size; Quest's page
//! metadata is rebuilt from the keys on load; h2o's and vatp's carried
//! attention scores are saved beside their rows. Mustafar's compressed
//! stores and quantized (`q8`, `q4`) rows are not saved, nor a model's sliding-window layers:
//! `KvCache::can_save` says so and the chat keeps only
//! the messages then.

use super::KvCache;
use super::eviction::scored::ScoredState;
use super::storage::Storage;
use crate::gpu::Gpu;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The counts of a saved cache; the bytes follow it (see [`KvCache::save`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    /// The `--kv` policy, canonical.
    pub spec: String,
    /// The context it was loaded with (`--ctx`).
    pub ctx: usize,
    pub n_layers: usize,
    pub kv_dim: usize,
    pub head_dim: usize,
    /// Bytes per stored element: 2 (f16) or 4 (f32).
    pub elem_bytes: usize,
    pub len: usize,
    pub pos: usize,
    pub evicted: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<ScoredState>,
    /// Whether per-slot carried scores (f32) follow each layer's rows.
    #[serde(default)]
    pub carried_scores: bool,
}

impl KvState {
    /// Tokens kept per layer.
    fn lens(&self) -> Vec<usize> {
        match &self.scored {
            Some(s) => s.lens.clone(),
            None => vec![self.len; self.n_layers],
        }
    }

    /// Bytes of the data that follows, from the counts alone.
    pub fn data_bytes(&self) -> u64 {
        let heads = (self.kv_dim / self.head_dim.max(1)) as u64;
        let per_token = 2 * self.kv_dim as u64 * self.elem_bytes as u64 + if self.carried_scores { 4 * heads } else { 0 };
        self.lens().iter().map(|&n| n as u64 * per_token).sum()
    }
}

impl KvCache {
    /// Whether `save` can hold this cache's state (not under Mustafar, nor
    /// for a model with sliding-window layers).
    pub fn can_save(&self) -> bool {
        matches!(&self.storage, Storage::Dense(s) if s.shape.kvq == 0 && s.shape.kivi == 0) && self.local.is_none()
    }

    /// The cache's counts and, layer by layer, every KV head's kept K rows,
    /// then V rows, then (h2o, vatp) their carried scores.
    pub fn save(&self, gpu: &Gpu) -> Result<(KvState, Vec<u8>)> {
        if !self.can_save() {
            let what = match &self.storage {
                _ if self.local.is_some() => "a cache with sliding-window layers",
                Storage::Dense(_) => "a quantized cache",
                Storage::Mustafar(_) => "mustafar's compressed cache",
            };
            return Err(Error::msg(format!("--kv {}: saving {what} is not available", self.spec)));
        }
        let carried = self.eviction.scored().is_some_and(|s| s.carried_scores(0).is_some());
        let state = KvState {
            spec: self.spec.to_string(),
            ctx: self.ctx,
            n_layers: self.n_layers,
            kv_dim: self.kv_dim,
            head_dim: self.head_dim,
            elem_bytes: self.elem_bytes,
            len: self.len,
            pos: self.pos,
            evicted: self.evicted,
            scored: self.eviction.scored().map(|s| s.state()),
            carried_scores: carried,
        };
        let mut data = Vec::with_capacity(state.data_bytes() as usize);
        let (heads, row) = (self.kv_dim / self.head_dim, self.row_bytes() as u64);
        for (l, &n) in state.lens().iter().enumerate() {
            let rows = |bytes: u64, stride: u64| (0..heads as u64).map(|h| (h * stride, n as u64 * bytes)).collect::<Vec<_>>();
            let slot_stride = self.max_seq() as u64 * row;
            let slots = self.storage.slots();
            data.extend(gpu.read_ranges(&slots.k[l], &rows(row, slot_stride)));
            data.extend(gpu.read_ranges(&slots.v[l], &rows(row, slot_stride)));
            if let Some(acc) = self.eviction.scored().and_then(|s| s.carried_scores(l)) {
                data.extend(gpu.read_ranges(acc, &rows(4, 4 * self.max_seq() as u64)));
            }
        }
        Ok((state, data))
    }

    /// Take a state `save` wrote for the same policy, context and model
    /// shape (f16 and f32 elements convert). The cache is reset first.
    pub fn restore(&mut self, gpu: &Gpu, st: &KvState, data: &[u8]) -> Result<()> {
        let spec = self.spec.to_string();
        if st.spec != spec || st.ctx != self.ctx {
            return Err(Error::msg(format!("the saved cache is for --kv {} --ctx {}; this run has --kv {spec} --ctx {}", st.spec, st.ctx, self.ctx)));
        }
        if (st.n_layers, st.kv_dim, st.head_dim) != (self.n_layers, self.kv_dim, self.head_dim) || !matches!(st.elem_bytes, 2 | 4) {
            return Err(Error::msg("the saved cache is for a model of another shape"));
        }
        let lens = st.lens();
        let carried = self.eviction.scored().is_some_and(|s| s.carried_scores(0).is_some());
        let scored_ok = match (self.eviction.scored(), &st.scored) {
            (None, None) => true,
            (Some(_), Some(s)) => [&s.lens, &s.scored, &s.budgets].iter().all(|v| v.len() == self.n_layers),
            _ => false,
        };
        let ms = self.max_seq();
        let fits = lens.iter().all(|&n| n <= ms) && st.len <= ms && st.len <= st.pos;
        if !scored_ok || carried != st.carried_scores || !fits || data.len() as u64 != st.data_bytes() {
            return Err(Error::msg("the saved cache does not match its own counts (a damaged or edited file)"));
        }
        self.reset(gpu);
        let (heads, row) = (self.kv_dim / self.head_dim, self.row_bytes());
        let saved_row = self.head_dim * st.elem_bytes;
        let mut at = 0usize;
        let mut take = |bytes: usize| {
            let part = &data[at..at + bytes];
            at += bytes;
            part
        };
        for (l, &n) in lens.iter().enumerate() {
            let slots = self.storage.slots();
            for buf in [&slots.k[l], &slots.v[l]] {
                for h in 0..heads {
                    let rows = convert(take(n * saved_row), st.elem_bytes, self.elem_bytes);
                    gpu.write(buf, (h * ms * row) as u64, &rows);
                }
            }
            if let Some(acc) = self.eviction.scored().and_then(|s| s.carried_scores(l)) {
                for h in 0..heads {
                    gpu.write(acc, (4 * h * ms) as u64, take(4 * n));
                }
            }
        }
        if let (Some(s), Some(saved)) = (self.eviction.scored_mut(), &st.scored) {
            s.set_state(saved);
        }
        (self.len, self.pos, self.evicted) = (st.len, st.pos, st.evicted);
        self.selection.rebuild(gpu, &lens);
        gpu.wait();
        Ok(())
    }
}

impl KvCache {
    /// Dense slots per layer and KV head.
    fn max_seq(&self) -> usize {
        self.storage.slots().shape.max_seq as usize
    }
}

/// Elements of `from` bytes (2: f16, 4: f32) as elements of `to` bytes.
fn convert(data: &[u8], from: usize, to: usize) -> Vec<u8> {
    match (from, to) {
        (2, 4) => data.chunks_exact(2).flat_map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32().to_le_bytes()).collect(),
        (4, 2) => data.chunks_exact(4).flat_map(|b| half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()).collect(),
        _ => data.to_vec(),
    }
}
