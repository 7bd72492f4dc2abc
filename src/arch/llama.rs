//! The Llama block (also Mistral's, SmolLM's, TinyLlama's, and with its
//! optional rows Qwen2's and Qwen3's): RMSNorm, Q/K/V and output projections
//! (Q/K/V with a bias where the recipe says so), optional per-head QK-norm,
//! RoPE with optional Llama 3 frequency factors, a SwiGLU feed-forward, an
//! LM head that may share the embedding.

use super::{Arch, Block, Dim, Dim::*, Presence, Presence::*, Recipe, Role, RopeStyle, TensorSpec};

const fn t(role: Role, gguf: &'static str, hf: &'static str, dims: &'static [Dim], per_layer: bool) -> TensorSpec {
    TensorSpec { role, gguf, hf: Some(hf), bias: false, dims, per_layer, presence: Always }
}

/// A tensor present only when `presence` says so.
const fn when(presence: Presence, t: TensorSpec) -> TensorSpec {
    TensorSpec { presence, ..t }
}

/// A projection's bias: the matrix's names with `.bias`, one value per output row.
const fn bias(role: Role, gguf: &'static str, hf: &'static str, dims: &'static [Dim]) -> TensorSpec {
    TensorSpec { role, gguf, hf: Some(hf), bias: true, dims, per_layer: true, presence: IfQkvBias }
}

/// In file order (the order llama.cpp's converter writes).
pub const TENSORS: &[TensorSpec] = &[
    // Llama 3's frequency factors: in GGUF files only (HF: config.json's rope_scaling).
    TensorSpec { role: Role::RopeFreqs, gguf: "rope_freqs", hf: None, bias: false, dims: &[RopePairs], per_layer: false, presence: IfRopeFreqs },
    t(Role::Embed, "token_embd", "model.embed_tokens", &[Embd, Vocab], false),
    t(Role::AttnNorm, "attn_norm", "input_layernorm", &[Embd], true),
    t(Role::Wq, "attn_q", "self_attn.q_proj", &[Embd, Q], true),
    bias(Role::Bq, "attn_q", "self_attn.q_proj", &[Q]),
    t(Role::Wk, "attn_k", "self_attn.k_proj", &[Embd, Kv], true),
    bias(Role::Bk, "attn_k", "self_attn.k_proj", &[Kv]),
    t(Role::Wv, "attn_v", "self_attn.v_proj", &[Embd, Kv], true),
    bias(Role::Bv, "attn_v", "self_attn.v_proj", &[Kv]),
    when(IfQkNorm, t(Role::QNorm, "attn_q_norm", "self_attn.q_norm", &[Head], true)),
    when(IfQkNorm, t(Role::KNorm, "attn_k_norm", "self_attn.k_norm", &[Head], true)),
    t(Role::Wo, "attn_output", "self_attn.o_proj", &[Q, Embd], true),
    t(Role::FfnNorm, "ffn_norm", "post_attention_layernorm", &[Embd], true),
    t(Role::Gate, "ffn_gate", "mlp.gate_proj", &[Embd, Hidden], true),
    t(Role::Up, "ffn_up", "mlp.up_proj", &[Embd, Hidden], true),
    t(Role::Down, "ffn_down", "mlp.down_proj", &[Hidden, Embd], true),
    t(Role::OutputNorm, "output_norm", "model.norm", &[Embd], false),
    when(UnlessTied, t(Role::Output, "output", "lm_head", &[Embd, Vocab], false)),
];

/// Llama: no biases, no QK-norm; llama.cpp permutes Q/K rows into adjacent pairs.
pub static LLAMA: Recipe = Recipe {
    arch: Arch::Llama,
    gguf: "llama",
    hf: &["LlamaForCausalLM", "MistralForCausalLM"],
    title: "Llama",
    table: TENSORS,
    gguf_rope: RopeStyle::Interleaved,
    qkv_bias: false,
    qk_norm: false,
    block: Block::PreNorm,
    hf_norm_plus_one: false,
    fused: &[],
};
