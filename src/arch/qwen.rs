//! Qwen2 and Qwen3 (dense): Llama's block ([`super::llama::TENSORS`]) as
//! data. Both pair RoPE NeoX-style (`(j, j + head_dim/2)`) in GGUF files
//! too: llama.cpp's converter does not permute their Q/K rows.

use super::{Arch, Block, Recipe, RopeStyle, llama::TENSORS};

/// Qwen2 / Qwen2.5: biases on Q, K and V (not on the output projection).
pub static QWEN2: Recipe = Recipe {
    arch: Arch::Qwen2,
    gguf: "qwen2",
    hf: &["Qwen2ForCausalLM"],
    title: "Qwen2",
    table: TENSORS,
    gguf_rope: RopeStyle::HalfSplit,
    qkv_bias: true,
    qk_norm: false,
    block: Block::PreNorm,
    hf_norm_plus_one: false,
    fused: &[],
};

/// Qwen3: no biases; Q and K RMS-normed per head before RoPE.
pub static QWEN3: Recipe = Recipe {
    arch: Arch::Qwen3,
    gguf: "qwen3",
    hf: &["Qwen3ForCausalLM"],
    title: "Qwen3",
    table: TENSORS,
    gguf_rope: RopeStyle::HalfSplit,
    qkv_bias: false,
    qk_norm: true,
    block: Block::PreNorm,
    hf_norm_plus_one: false,
    fused: &[],
};
