//! Llama's tensors (also Mistral's, SmolLM's, TinyLlama's): RMSNorm, Q/K/V
//! and output projections without bias, a SwiGLU feed-forward, an LM head
//! that may share the embedding.

use super::{Dim::*, Presence::*, Role, TensorSpec};

const fn t(role: Role, gguf: &'static str, hf: &'static str, dims: &'static [super::Dim], per_layer: bool) -> TensorSpec {
    TensorSpec { role, gguf, hf, dims, per_layer, presence: Always }
}

/// In file order (the order llama.cpp's converter writes).
pub const TENSORS: &[TensorSpec] = &[
    t(Role::Embed, "token_embd", "model.embed_tokens", &[Embd, Vocab], false),
    t(Role::AttnNorm, "attn_norm", "input_layernorm", &[Embd], true),
    t(Role::Wq, "attn_q", "self_attn.q_proj", &[Embd, Q], true),
    t(Role::Wk, "attn_k", "self_attn.k_proj", &[Embd, Kv], true),
    t(Role::Wv, "attn_v", "self_attn.v_proj", &[Embd, Kv], true),
    t(Role::Wo, "attn_output", "self_attn.o_proj", &[Q, Embd], true),
    t(Role::FfnNorm, "ffn_norm", "post_attention_layernorm", &[Embd], true),
    t(Role::Gate, "ffn_gate", "mlp.gate_proj", &[Embd, Hidden], true),
    t(Role::Up, "ffn_up", "mlp.up_proj", &[Embd, Hidden], true),
    t(Role::Down, "ffn_down", "mlp.down_proj", &[Hidden, Embd], true),
    t(Role::OutputNorm, "output_norm", "model.norm", &[Embd], false),
    TensorSpec { role: Role::Output, gguf: "output", hf: "lm_head", dims: &[Embd, Vocab], per_layer: false, presence: UnlessTied },
];
