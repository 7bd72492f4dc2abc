//! The KV cache: storage shared by every policy, and the `--kv` spec.
//!
//! Dense storage: per layer one K and one V buffer of `kv_t` (f16 where the
//! adapter has SHADER_F16, else f32), laid out `[n_kv_heads][max_seq][head_dim]`,
//! allocated once for the whole context. Keys are stored post-RoPE, so a slot
//! need not equal a position (eviction policies compact slots).

pub mod quest;
pub mod spec;

use crate::config::ModelConfig;
use crate::gpu::Gpu;
use crate::ops::attention::AttnShape;
use crate::{Error, Result};
pub use quest::{Quest, QuestOptions};
pub use spec::{Budget, Kind, KvSpec};

pub struct KvCache {
    /// Per layer: `[n_kv_heads][max_seq][head_dim]` keys (post-RoPE).
    pub k: Vec<wgpu::Buffer>,
    /// Per layer: `[n_kv_heads][max_seq][head_dim]` values.
    pub v: Vec<wgpu::Buffer>,
    /// Slots allocated per layer and head (the context size).
    pub max_seq: usize,
    /// Valid slots (the same in every layer for the dense cache).
    pub len: usize,
    pub spec: KvSpec,
    /// The `quest` selection part, when the spec has one.
    pub quest: Option<Quest>,
    elem_bytes: usize,
    n_layers: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, max_seq: usize, spec: KvSpec) -> Result<KvCache> {
        if let Some(p) = spec.parts.iter().find(|p| matches!(p.kind, Kind::Eviction | Kind::Storage)) {
            return Err(Error::msg(format!(
                "--kv {spec}: `{}` is not available in this build yet (available: full, quest)",
                p.name
            )));
        }
        let elem_bytes = if gpu.caps.f16 { 2 } else { 4 };
        let kv_dim = cfg.n_kv_heads * cfg.head_dim;
        // The binding limit was checked by `AttnShape::check` before this.
        let per_layer = (max_seq * kv_dim * elem_bytes) as u64;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for l in 0..cfg.n_layers {
            k.push(gpu.buffer(&format!("kv.k{l}"), per_layer));
            v.push(gpu.buffer(&format!("kv.v{l}"), per_layer));
        }
        let quest = match spec.part(Kind::Selection) {
            Some(p) => {
                let attn = AttnShape { n_heads: cfg.n_heads as u32, n_kv_heads: cfg.n_kv_heads as u32, head_dim: cfg.head_dim as u32, max_seq: max_seq as u32 };
                Some(Quest::new(gpu, QuestOptions::from_part(p)?, attn, cfg.n_layers)?)
            }
            None => None,
        };
        Ok(KvCache { k, v, max_seq, len: 0, spec, quest, elem_bytes, n_layers: cfg.n_layers, kv_dim, head_dim: cfg.head_dim })
    }

    /// Bytes one token occupies across all layers (K and V).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim * self.elem_bytes
    }

    /// Bytes of one head's K (or V) row.
    fn row_bytes(&self) -> usize {
        self.head_dim * self.elem_bytes
    }

    /// Bytes of KV holding valid tokens now, Quest's page metadata included.
    pub fn bytes_resident(&self) -> usize {
        let meta = self.quest.as_ref().map_or(0, |q| q.sparse_layers() * q.meta_rows(self.len) * self.row_bytes());
        self.len * self.bytes_per_token() + meta
    }

    /// Bytes allocated on the device for the cache and its metadata.
    pub fn bytes_allocated(&self) -> usize {
        let meta = self.quest.as_ref().map_or(0, |q| q.sparse_layers() * q.meta_rows(self.max_seq) * self.row_bytes());
        self.max_seq * self.bytes_per_token() + meta
    }

    /// KV bytes the next decode step reads: every valid slot of a dense
    /// layer; under Quest, a sparse layer reads each unit's selected K/V rows
    /// and the metadata of the pages it scores.
    pub fn bytes_read_per_step(&self) -> usize {
        let len = self.len;
        let dense_layer = len * 2 * self.kv_dim * self.elem_bytes;
        match &self.quest {
            None => self.n_layers * dense_layer,
            Some(q) => {
                let (rows, meta) = q.rows_read(len);
                let sparse = q.sparse_layers();
                (self.n_layers - sparse) * dense_layer + sparse * (2 * rows + meta) * self.row_bytes()
            }
        }
    }

    /// Tokens kept per layer.
    pub fn tokens_per_layer(&self) -> Vec<usize> {
        vec![self.len; self.n_layers]
    }

    pub fn reset(&mut self) {
        self.len = 0;
    }
}
