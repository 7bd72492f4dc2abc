//! Phi-3: Llama's block (RMSNorm, SwiGLU, no biases) with NeoX RoPE. Its
//! GGUF files store Q, K and V as one `attn_qkv` matrix and the gate and up
//! projections as one `ffn_up` of twice the hidden rows (gate first, as
//! llama.cpp's SwiGLU splits it); the loader splits both into the table's
//! rows ([`super::Fused`]), so the forward is Llama's. llama.cpp runs Phi-3
//! without its sliding window and so does this recipe; LongRoPE files
//! (`rope_factors_long`) are refused by the config.

use super::{Arch, Block, Dim::*, Fused, Recipe, RopeStyle, llama};

pub static PHI3: Recipe = Recipe {
    arch: Arch::Phi3,
    gguf: "phi3",
    hf: &[],
    title: "Phi-3",
    table: llama::TENSORS,
    gguf_rope: RopeStyle::HalfSplit,
    qkv_bias: false,
    qk_norm: false,
    block: Block::PreNorm,
    hf_norm_plus_one: false,
    fused: &[
        Fused { gguf: "attn_qkv", parts: &[("attn_q", Q), ("attn_k", Kv), ("attn_v", Kv)] },
        Fused { gguf: "ffn_up", parts: &[("ffn_gate", Hidden), ("ffn_up", Hidden)] },
    ],
};
