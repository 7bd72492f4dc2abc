//! Architecture recipes: what each model family is made of, in one place.
//!
//! Each block topology's file holds its one tensor table: every tensor's
//! role, its GGUF name, its Hugging Face name, its shape in config
//! dimensions and when it is present. Weight validation, the upload to the
//! GPU, the CPU reference forward and the tests' tiny model generator all
//! read that table, so a family's tensors are listed once. Differences that
//! are data (RoPE pairing, biases, QK-norm, RoPE frequency factors) are
//! fields of the recipe and of the config it fills; differences of control
//! flow get a table of their own.

mod gemma;
mod llama;
mod phi3;
mod qwen;

/// Which elements RoPE rotates together. Choosing wrong corrupts output
/// silently, so the recipe says it ([`Arch::rope_style`]):
/// - GGUF llama files: llama.cpp's converter permutes the rows of Q and K so
///   each head's pairs are adjacent, `(2j, 2j+1)`.
/// - HF checkpoints, and GGUF files of the NeoX-style families (qwen2,
///   qwen3, whose rows the converter leaves alone): pairs are
///   `(j, j + head_dim/2)` ("rotate_half").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    HalfSplit,
}

/// A supported model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama, Mistral, SmolLM and other Llama-layout models (Llama 3's RoPE
    /// frequency factors included).
    Llama,
    /// Qwen2 and Qwen2.5: Llama's block with Q/K/V biases, NeoX RoPE.
    Qwen2,
    /// Qwen3 (dense): Llama's block with per-head QK-norm, NeoX RoPE.
    Qwen3,
    /// Gemma 2: the sandwich block ([`Block::Sandwich`]), sliding-window
    /// layers, attention and final-logit softcaps.
    Gemma2,
    /// Gemma 3 (text): the sandwich block, sliding-window layers, QK-norm.
    Gemma3,
    /// Phi-3: Llama's block with NeoX RoPE, its GGUF files' QKV and gate/up fused.
    Phi3,
}

/// A layer's control flow: which dispatches it records, in which order.
/// The one difference between families that is not data; the forward (GPU
/// and reference) picks its layer builder by it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Llama's: `x += attn(norm(x)); x += down(silu(gate) * up)(norm(x))`.
    PreNorm,
    /// Gemma 2/3's: each sublayer's output normed again before the residual
    /// add (`x += post_norm(attn(norm(x)))`, the same around the FFN), a
    /// GELU(tanh)-gated FFN, embeddings scaled by `sqrt(dim)`.
    Sandwich,
}

/// What a family is, as data: the names files give it, its tensor table and
/// the block's variations. One per [`Arch`], in the family's file.
#[derive(Debug)]
pub struct Recipe {
    pub arch: Arch,
    /// `general.architecture` of its GGUF files.
    pub gguf: &'static str,
    /// Hugging Face `architectures` classes.
    pub hf: &'static [&'static str],
    /// The family's name in messages.
    pub title: &'static str,
    pub table: &'static [TensorSpec],
    /// RoPE pairing of its GGUF files (HF checkpoints are always half-split).
    pub gguf_rope: RopeStyle,
    /// Q, K and V projections add a bias (`attn_q.bias`, ...).
    pub qkv_bias: bool,
    /// Q and K are RMS-normed per head (`attn_q_norm`, `attn_k_norm`) before RoPE.
    pub qk_norm: bool,
    /// The layer's control flow.
    pub block: Block,
    /// Its Hugging Face checkpoints store each RMSNorm weight as `w` for a
    /// scale of `1 + w` (Gemma); the loader adds the one, as llama.cpp's
    /// converter does for GGUF files.
    pub hf_norm_plus_one: bool,
    /// Tensors its GGUF files may store fused, split into the table's rows
    /// on load (Phi-3's QKV and gate/up).
    pub fused: &'static [Fused],
}

/// A GGUF tensor holding several of the table's matrices stacked by rows:
/// its name (after `blk.N.`) and, in row order, each part's name and rows.
#[derive(Debug)]
pub struct Fused {
    pub gguf: &'static str,
    pub parts: &'static [(&'static str, Dim)],
}

/// Every supported family, in the order messages list them.
pub static RECIPES: &[&Recipe] = &[&llama::LLAMA, &qwen::QWEN2, &qwen::QWEN3, &gemma::GEMMA2, &gemma::GEMMA3, &phi3::PHI3];

/// Families this build knows and does not run yet, with what each needs
/// that the house lacks: (GGUF name, HF classes, missing pieces).
const NOT_YET: &[(&str, &[&str], &str)] = &[
    ("gemma", &["GemmaForCausalLM"], "GELU FFN, scaled embeddings"),
    // Gemma3ForCausalLM runs (`gemma::GEMMA3`); the multimodal class nests it.
    ("", &["Gemma3ForConditionalGeneration"], "the vision tower and language_model.* names (Gemma3ForCausalLM checkpoints and GGUF files run)"),
    ("phi2", &["PhiForCausalLM"], "LayerNorm, GELU FFN, parallel attention, partial RoPE"),
    // GGUF phi3 files run (`phi3::PHI3`).
    ("", &["Phi3ForCausalLM"], "Phi-3's fused qkv_proj and gate_up_proj in safetensors (its GGUF files run)"),
    ("qwen2moe", &["Qwen2MoeForCausalLM"], "mixture-of-experts FFN"),
    ("qwen3moe", &["Qwen3MoeForCausalLM"], "mixture-of-experts FFN"),
    ("qwen2vl", &["Qwen2VLForConditionalGeneration"], "multimodal RoPE sections"),
    ("deepseek2", &["DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"], "multi-head latent attention, mixture-of-experts FFN"),
    ("starcoder2", &["Starcoder2ForCausalLM"], "LayerNorm, GELU FFN, output and FFN biases"),
    ("falcon", &["FalconForCausalLM"], "LayerNorm, GELU FFN, parallel attention"),
    ("gpt2", &["GPT2LMHeadModel"], "LayerNorm, GELU FFN, learned position embeddings"),
    ("stablelm", &["StableLmForCausalLM"], "LayerNorm, partial RoPE"),
    ("olmo2", &["Olmo2ForCausalLM"], "post-norms, QK-norm over all heads at once"),
    ("granite", &["GraniteForCausalLM"], "embedding, attention, residual and logit multipliers"),
    ("command-r", &["CohereForCausalLM"], "LayerNorm, parallel attention, logit scale"),
    ("mamba", &["MambaForCausalLM"], "state-space layers instead of attention"),
];

/// What a tensor is for, whatever a file calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Embed,
    /// Llama 3's per-pair RoPE frequency divisors.
    RopeFreqs,
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Bq,
    Bk,
    Bv,
    /// Per-head RMSNorm weights of Q and K.
    QNorm,
    KNorm,
    Wo,
    /// Gemma's norm of the attention output before the residual add.
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
    /// Gemma's norm of the FFN output before the residual add.
    PostFfnNorm,
    OutputNorm,
    Output,
}

/// A tensor dimension, in terms of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// `dim`: the residual stream.
    Embd,
    /// `hidden_dim`: the feed-forward width.
    Hidden,
    /// `n_heads * head_dim`.
    Q,
    /// `n_kv_heads * head_dim`.
    Kv,
    /// `head_dim`.
    Head,
    /// `head_dim / 2`: RoPE's rotated pairs per head.
    RopePairs,
    Vocab,
}

/// When a tensor is in the file: always, or when a config field says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Always,
    /// Absent when the LM head shares the embedding (`tied_embeddings`).
    UnlessTied,
    /// With Q/K/V biases (`qkv_bias`).
    IfQkvBias,
    /// With QK-norm (`qk_norm`).
    IfQkNorm,
    /// With RoPE frequency factors (`rope_freqs`).
    IfRopeFreqs,
}

/// One row of a family's tensor table.
#[derive(Clone, Copy, Debug)]
pub struct TensorSpec {
    pub role: Role,
    /// GGUF name without `.weight` / `.bias` (after `blk.N.` for a layer's tensor).
    pub gguf: &'static str,
    /// Hugging Face name without `.weight` / `.bias` (after `model.layers.N.`
    /// for a layer's tensor); `None` when checkpoints carry no such tensor
    /// (the loader derives it from config.json).
    pub hf: Option<&'static str>,
    /// A bias vector (`.bias`) rather than a weight (`.weight`).
    pub bias: bool,
    /// Shape, ne0 (the row length) first.
    pub dims: &'static [Dim],
    /// One per layer (else one per model).
    pub per_layer: bool,
    pub presence: Presence,
}

/// A tensor a model needs (`ModelConfig::tensors`): canonical (GGUF) name, shape, role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    pub name: String,
    pub dims: Vec<u64>,
    pub role: Role,
    pub layer: Option<usize>,
}

/// Why a file's architecture is refused, as one line: what a family this
/// build knows still needs, or the families it runs.
fn refusal(named: &str, not_yet: Option<&str>, runs: &str) -> String {
    match not_yet {
        Some(needs) => format!("{named} not supported yet (needs: {needs})"),
        None => format!("{named} not supported (this build runs {runs})"),
    }
}

impl Arch {
    /// The family's recipe: the one place an `Arch` is matched.
    pub fn recipe(self) -> &'static Recipe {
        match self {
            Arch::Llama => &llama::LLAMA,
            Arch::Qwen2 => &qwen::QWEN2,
            Arch::Qwen3 => &qwen::QWEN3,
            Arch::Gemma2 => &gemma::GEMMA2,
            Arch::Gemma3 => &gemma::GEMMA3,
            Arch::Phi3 => &phi3::PHI3,
        }
    }

    /// The family of a GGUF `general.architecture`; else the one-line refusal
    /// (`named` is how the message quotes the name).
    pub fn from_gguf(name: &str, named: &str) -> Result<Arch, String> {
        if let Some(r) = RECIPES.iter().find(|r| r.gguf == name).filter(|_| !name.is_empty()) {
            return Ok(r.arch);
        }
        let not_yet = NOT_YET.iter().find(|n| n.0 == name && !name.is_empty()).map(|n| n.2);
        let runs = RECIPES.iter().map(|r| format!("'{}'", r.gguf)).collect::<Vec<_>>().join(", ");
        Err(refusal(&format!("architecture {named} is"), not_yet, &runs))
    }

    /// The family of an HF config's `architectures` list; else the one-line
    /// refusal (`named` is how the message quotes the list).
    pub fn from_hf(architectures: &[&str], named: &str) -> Result<Arch, String> {
        if let Some(r) = architectures.iter().find_map(|a| RECIPES.iter().find(|r| r.hf.contains(a))) {
            return Ok(r.arch);
        }
        let not_yet = architectures.iter().find_map(|a| NOT_YET.iter().find(|n| n.1.contains(a))).map(|n| n.2);
        let runs = RECIPES.iter().flat_map(|r| r.hf.iter().copied()).collect::<Vec<_>>().join(", ");
        Err(refusal(&format!("architectures [{named}]"), not_yet, &runs))
    }

    /// `general.architecture` of the family's GGUF files.
    pub fn name(self) -> &'static str {
        self.recipe().gguf
    }

    /// The family's name in messages.
    pub fn title(self) -> &'static str {
        self.recipe().title
    }

    /// The family's tensor table, in file order.
    pub fn table(self) -> &'static [TensorSpec] {
        self.recipe().table
    }

    /// The layer's control flow.
    pub fn block(self) -> Block {
        self.recipe().block
    }

    /// Which elements RoPE rotates together for weights from a GGUF file
    /// (`gguf`) or a Hugging Face checkpoint: a recipe fact, since llama.cpp's
    /// converter permutes Llama's Q and K rows into adjacent pairs and leaves
    /// other families in the checkpoints' half-split order.
    pub fn rope_style(self, gguf: bool) -> RopeStyle {
        if gguf { self.recipe().gguf_rope } else { RopeStyle::HalfSplit }
    }

    /// The table row of `role` (`None` when the family has no such tensor).
    pub fn spec(self, role: Role) -> Option<&'static TensorSpec> {
        self.table().iter().find(|t| t.role == role)
    }

    /// The canonical (GGUF) name of `role`'s tensor (in `layer` for a layer's).
    pub fn tensor_name(self, role: Role, layer: Option<usize>) -> String {
        self.spec(role).expect("every role used is in the table").name(layer)
    }

    /// HF tensor name to canonical name; `None` when it is not one of the family's.
    pub fn hf_to_canonical(self, hf: &str) -> Option<String> {
        let (base, bias) = match hf.rsplit_once('.')? {
            (b, "weight") => (b, false),
            (b, "bias") => (b, true),
            _ => return None,
        };
        let table = self.table();
        let is = |t: &&TensorSpec, per_layer: bool, name: &str| t.per_layer == per_layer && t.bias == bias && t.hf == Some(name);
        if let Some(t) = table.iter().find(|t| is(t, false, base)) {
            return Some(t.name(None));
        }
        let (layer, rest) = base.strip_prefix("model.layers.")?.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
            return None;
        }
        let t = table.iter().find(|t| is(t, true, rest))?;
        Some(t.name(Some(layer.parse().ok()?)))
    }

    /// Canonical name to HF name (for messages about HF folders); `None`
    /// for names that are not the family's or have no HF spelling.
    pub fn canonical_to_hf(self, name: &str) -> Option<String> {
        let (base, bias) = match name.rsplit_once('.')? {
            (b, "weight") => (b, false),
            (b, "bias") => (b, true),
            _ => return None,
        };
        let table = self.table();
        if let Some(t) = table.iter().find(|t| !t.per_layer && t.bias == bias && t.gguf == base) {
            return Some(format!("{}.{}", t.hf?, t.suffix()));
        }
        let (layer, rest) = base.strip_prefix("blk.")?.split_once('.')?;
        let t = table.iter().find(|t| t.per_layer && t.bias == bias && t.gguf == rest)?;
        Some(format!("model.layers.{layer}.{}.{}", t.hf?, t.suffix()))
    }
}

impl TensorSpec {
    /// `bias` or `weight`.
    pub fn suffix(&self) -> &'static str {
        if self.bias { "bias" } else { "weight" }
    }

    /// The canonical (GGUF) name, in `layer` for a layer's tensor.
    pub fn name(&self, layer: Option<usize>) -> String {
        match layer {
            Some(l) => format!("blk.{l}.{}.{}", self.gguf, self.suffix()),
            None => format!("{}.{}", self.gguf, self.suffix()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_between_gguf_and_hf() {
        for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
            for (gguf, hf) in [
                ("token_embd.weight", "model.embed_tokens.weight"),
                ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
                ("blk.17.ffn_down.weight", "model.layers.17.mlp.down_proj.weight"),
                ("output.weight", "lm_head.weight"),
                ("blk.3.attn_v.bias", "model.layers.3.self_attn.v_proj.bias"),
                ("blk.12.attn_k_norm.weight", "model.layers.12.self_attn.k_norm.weight"),
            ] {
                assert_eq!(arch.hf_to_canonical(hf).as_deref(), Some(gguf), "{arch:?}");
                assert_eq!(arch.canonical_to_hf(gguf).as_deref(), Some(hf), "{arch:?}");
            }
            for bad in [
                "model.layers.01.mlp.up_proj.weight",
                "model.layers..mlp.up_proj.weight",
                "model.layers.0.mlp.up_proj.bias",
                "model.layers.0.self_attn.q_norm.bias",
                "model.layers.0.self_attn.o_proj.bias",
                "model.layers.0.self_attn.q_proj.scale",
                "rotary.weight",
                "rope_freqs.weight",
            ] {
                assert_eq!(arch.hf_to_canonical(bad), None, "{bad}");
            }
            // Frequency factors have no HF spelling: config.json's rope_scaling makes them.
            assert_eq!(arch.canonical_to_hf("rope_freqs.weight"), None);
        }
    }

    #[test]
    fn recipes_and_refusals() {
        for r in RECIPES {
            assert!(std::ptr::eq(r.arch.recipe(), *r), "{:?}", r.arch);
            assert_eq!(Arch::from_gguf(r.gguf, "x"), Ok(r.arch));
            for hf in r.hf {
                assert_eq!(Arch::from_hf(&["Other", hf], "x"), Ok(r.arch));
            }
        }
        assert_eq!(Arch::Qwen2.rope_style(true), RopeStyle::HalfSplit);
        assert_eq!(Arch::Llama.rope_style(true), RopeStyle::Interleaved);
        assert_eq!(Arch::Llama.rope_style(false), RopeStyle::HalfSplit);
        assert_eq!(Arch::from_gguf("gemma3", "'gemma3'"), Ok(Arch::Gemma3));
        assert_eq!(Arch::Gemma3.rope_style(true), RopeStyle::HalfSplit);
        assert_eq!(Arch::from_hf(&["Gemma3ForCausalLM"], "x"), Ok(Arch::Gemma3));
        let e = Arch::from_hf(&["Gemma3ForConditionalGeneration"], "Gemma3ForConditionalGeneration").unwrap_err();
        assert!(e.contains("not supported yet (needs: the vision tower"), "{e}");
        assert_eq!(Arch::from_gguf("gemma2", "'gemma2'"), Ok(Arch::Gemma2));
        assert_eq!(
            Arch::from_gguf("phi2", "'phi2'").unwrap_err(),
            "architecture 'phi2' is not supported yet (needs: LayerNorm, GELU FFN, parallel attention, partial RoPE)"
        );
        assert!(Arch::from_gguf("", "''").unwrap_err().contains("not supported (this build runs"));
        assert_eq!(
            Arch::from_gguf("bloom", "'bloom'").unwrap_err(),
            "architecture 'bloom' is not supported (this build runs 'llama', 'qwen2', 'qwen3', 'gemma2', 'gemma3', 'phi3')"
        );
        let e = Arch::from_hf(&["Phi3ForCausalLM"], "Phi3ForCausalLM").unwrap_err();
        assert!(e.starts_with("architectures [Phi3ForCausalLM] not supported yet (needs: Phi-3's fused qkv_proj"), "{e}");
        assert_eq!(Arch::from_gguf("phi3", "'phi3'"), Ok(Arch::Phi3));
        let e = Arch::from_hf(&[], "none").unwrap_err();
        assert!(
            e.contains(
                "not supported (this build runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM)"
            ),
            "{e}"
        );
        // No family is both run and refused.
        for n in NOT_YET {
            assert!(RECIPES.iter().all(|r| r.gguf != n.0 && n.1.iter().all(|h| !r.hf.contains(h))), "{}", n.0);
        }
    }
}
