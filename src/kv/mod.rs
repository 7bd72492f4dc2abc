//! The KV cache: storage shared by every policy, and the `--kv` spec.
//!
//! Dense storage: per layer one K and one V buffer of `kv_t` (f16 where the
//! adapter has SHADER_F16, else f32), laid out `[n_kv_heads][max_seq][head_dim]`,
//! allocated once for the whole context. Keys are stored post-RoPE, so a slot
//! need not equal a position (eviction policies compact slots).

pub mod spec;

use crate::config::ModelConfig;
use crate::gpu::Gpu;
use crate::{Error, Result};
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
    elem_bytes: usize,
    n_layers: usize,
    kv_dim: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, max_seq: usize, spec: KvSpec) -> Result<KvCache> {
        if !spec.is_full() {
            return Err(Error::msg(format!(
                "--kv {spec}: only `full` is available in this build; the compression policies are being implemented"
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
        Ok(KvCache { k, v, max_seq, len: 0, spec, elem_bytes, n_layers: cfg.n_layers, kv_dim })
    }

    /// Bytes one token occupies across all layers (K and V).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim * self.elem_bytes
    }

    /// Bytes of KV holding valid tokens now.
    pub fn bytes_resident(&self) -> usize {
        self.len * self.bytes_per_token()
    }

    /// Bytes allocated on the device for the cache.
    pub fn bytes_allocated(&self) -> usize {
        self.max_seq * self.bytes_per_token()
    }

    /// KV bytes one decode step reads (all valid slots of every layer).
    pub fn bytes_read_per_step(&self) -> usize {
        self.bytes_resident()
    }

    /// Tokens kept per layer.
    pub fn tokens_per_layer(&self) -> Vec<usize> {
        vec![self.len; self.n_layers]
    }

    pub fn reset(&mut self) {
        self.len = 0;
    }
}
