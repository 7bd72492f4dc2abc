//! Gemma 2 and Gemma 3 (text): the sandwich block. Each sublayer's output is
//! RMS-normed again (`post_attention_norm`, `post_ffw_norm`) before the
//! residual add; the feed-forward is GELU(tanh)-gated; embeddings are scaled
//! by `sqrt(dim)`; RoPE is NeoX-style; every other layer (Gemma 2) or five of
//! every six (Gemma 3) attend a sliding window. Gemma 2 softcaps the
//! attention scores and the final logits (`c * tanh(x / c)`); Gemma 3
//! RMS-norms Q and K per head instead and gives its local layers their own
//! RoPE base.
//! GGUF norm weights already hold Gemma's `1 + w` (llama.cpp's converter
//! adds the one) and the HF loader adds it to checkpoints' `w`
//! (`hf_norm_plus_one`), so every norm is a plain RMSNorm.

use super::{Arch, Block, Dim::*, Presence::*, Recipe, Role, RopeStyle, TensorSpec};

const fn t(role: Role, gguf: &'static str, hf: &'static str, dims: &'static [super::Dim], per_layer: bool) -> TensorSpec {
    TensorSpec { role, gguf, hf: Some(hf), bias: false, dims, per_layer, presence: Always }
}

/// In file order (the order llama.cpp's converter writes).
pub const TENSORS: &[TensorSpec] = &[
    t(Role::Embed, "token_embd", "model.embed_tokens", &[Embd, Vocab], false),
    t(Role::AttnNorm, "attn_norm", "input_layernorm", &[Embd], true),
    t(Role::Wq, "attn_q", "self_attn.q_proj", &[Embd, Q], true),
    t(Role::Wk, "attn_k", "self_attn.k_proj", &[Embd, Kv], true),
    t(Role::Wv, "attn_v", "self_attn.v_proj", &[Embd, Kv], true),
    TensorSpec { presence: IfQkNorm, ..t(Role::QNorm, "attn_q_norm", "self_attn.q_norm", &[Head], true) },
    TensorSpec { presence: IfQkNorm, ..t(Role::KNorm, "attn_k_norm", "self_attn.k_norm", &[Head], true) },
    t(Role::Wo, "attn_output", "self_attn.o_proj", &[Q, Embd], true),
    t(Role::PostAttnNorm, "post_attention_norm", "post_attention_layernorm", &[Embd], true),
    t(Role::FfnNorm, "ffn_norm", "pre_feedforward_layernorm", &[Embd], true),
    t(Role::Gate, "ffn_gate", "mlp.gate_proj", &[Embd, Hidden], true),
    t(Role::Up, "ffn_up", "mlp.up_proj", &[Embd, Hidden], true),
    t(Role::Down, "ffn_down", "mlp.down_proj", &[Hidden, Embd], true),
    t(Role::PostFfnNorm, "post_ffw_norm", "post_feedforward_layernorm", &[Embd], true),
    t(Role::OutputNorm, "output_norm", "model.norm", &[Embd], false),
    TensorSpec { presence: UnlessTied, ..t(Role::Output, "output", "lm_head", &[Embd, Vocab], false) },
];

/// Gemma 2.
pub static GEMMA2: Recipe = Recipe {
    arch: Arch::Gemma2,
    gguf: "gemma2",
    hf: &["Gemma2ForCausalLM"],
    title: "Gemma 2",
    table: TENSORS,
    gguf_rope: RopeStyle::HalfSplit,
    qkv_bias: false,
    qk_norm: false,
    block: Block::Sandwich,
    hf_norm_plus_one: true,
    fused: &[],
};

/// Gemma 3 (text).
pub static GEMMA3: Recipe = Recipe {
    arch: Arch::Gemma3,
    gguf: "gemma3",
    hf: &["Gemma3ForCausalLM"],
    title: "Gemma 3",
    table: TENSORS,
    gguf_rope: RopeStyle::HalfSplit,
    qkv_bias: false,
    qk_norm: true,
    block: Block::Sandwich,
    hf_norm_plus_one: true,
    fused: &[],
};
