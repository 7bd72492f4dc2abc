//! Architecture recipes: what each model family is made of, in one place.
//!
//! Each family's file holds its one tensor table: every tensor's role, its
//! GGUF name, its Hugging Face name, its shape in config dimensions and
//! whether it may be absent. Weight validation, the upload to the GPU, the
//! CPU reference forward and the tests' tiny model generator all read that
//! table, so a family's tensors are listed once. Differences that are data
//! (RoPE pairing, norm epsilon, biases) are fields of the config the recipe
//! fills; differences of control flow get a recipe of their own.

mod llama;

/// Which elements RoPE rotates together. Choosing wrong corrupts output
/// silently, so the recipe says it ([`Arch::rope_style`]):
/// - GGUF llama files: llama.cpp's converter permutes the rows of Q and K so
///   each head's pairs are adjacent, `(2j, 2j+1)`.
/// - HF checkpoints (and GGUF files of the NeoX-style families): pairs are
///   `(j, j + head_dim/2)` ("rotate_half").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    HalfSplit,
}

/// A supported model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama, Mistral, SmolLM and other Llama-layout models.
    Llama,
}

/// What a tensor is for, whatever a file calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Embed,
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Wo,
    FfnNorm,
    Gate,
    Up,
    Down,
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
    Vocab,
}

/// When a tensor is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Always,
    /// Absent when the LM head shares the embedding.
    UnlessTied,
}

/// One row of a family's tensor table.
#[derive(Clone, Copy, Debug)]
pub struct TensorSpec {
    pub role: Role,
    /// GGUF name without `.weight` (after `blk.N.` for a layer's tensor).
    pub gguf: &'static str,
    /// Hugging Face name without `.weight` (after `model.layers.N.` for a layer's tensor).
    pub hf: &'static str,
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

impl Arch {
    /// The family of a GGUF `general.architecture`.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            _ => None,
        }
    }

    /// The family of an HF config's `architectures` list.
    pub fn from_hf(architectures: &[&str]) -> Option<Arch> {
        architectures.iter().find_map(|a| match *a {
            "LlamaForCausalLM" | "MistralForCausalLM" => Some(Arch::Llama),
            _ => None,
        })
    }

    /// The GGUF architectures and HF classes this build loads, for messages.
    pub const GGUF_NAMES: &'static str = "'llama'";
    pub const HF_NAMES: &'static str = "LlamaForCausalLM, MistralForCausalLM";

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
        }
    }

    /// The family's name in messages.
    pub fn title(self) -> &'static str {
        match self {
            Arch::Llama => "Llama",
        }
    }

    /// The family's tensor table, in file order.
    pub fn table(self) -> &'static [TensorSpec] {
        match self {
            Arch::Llama => llama::TENSORS,
        }
    }

    /// Which elements RoPE rotates together for weights from a GGUF file
    /// (`gguf`) or a Hugging Face checkpoint: a recipe fact, since llama.cpp's
    /// converter permutes Llama's Q and K rows into adjacent pairs and leaves
    /// other families in the checkpoints' half-split order.
    pub fn rope_style(self, gguf: bool) -> RopeStyle {
        match (self, gguf) {
            (Arch::Llama, true) => RopeStyle::Interleaved,
            (Arch::Llama, false) => RopeStyle::HalfSplit,
        }
    }

    /// The canonical (GGUF) name of `role`'s tensor (in `layer` for a layer's).
    pub fn tensor_name(self, role: Role, layer: Option<usize>) -> String {
        let t = self.table().iter().find(|t| t.role == role).expect("every role used is in the table");
        t.name(layer)
    }

    /// HF tensor name to canonical name; `None` when it is not one of the family's.
    pub fn hf_to_canonical(self, hf: &str) -> Option<String> {
        let base = hf.strip_suffix(".weight")?;
        let table = self.table();
        if let Some(t) = table.iter().find(|t| !t.per_layer && t.hf == base) {
            return Some(t.name(None));
        }
        let (layer, rest) = base.strip_prefix("model.layers.")?.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
            return None;
        }
        let t = table.iter().find(|t| t.per_layer && t.hf == rest)?;
        Some(t.name(Some(layer.parse().ok()?)))
    }

    /// Canonical name to HF name (for messages about HF folders).
    pub fn canonical_to_hf(self, name: &str) -> Option<String> {
        let base = name.strip_suffix(".weight")?;
        let table = self.table();
        if let Some(t) = table.iter().find(|t| !t.per_layer && t.gguf == base) {
            return Some(format!("{}.weight", t.hf));
        }
        let (layer, rest) = base.strip_prefix("blk.")?.split_once('.')?;
        let t = table.iter().find(|t| t.per_layer && t.gguf == rest)?;
        Some(format!("model.layers.{layer}.{}.weight", t.hf))
    }
}

impl TensorSpec {
    /// The canonical (GGUF) name, in `layer` for a layer's tensor.
    pub fn name(&self, layer: Option<usize>) -> String {
        match layer {
            Some(l) => format!("blk.{l}.{}.weight", self.gguf),
            None => format!("{}.weight", self.gguf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_between_gguf_and_hf() {
        for (gguf, hf) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
            ("blk.17.ffn_down.weight", "model.layers.17.mlp.down_proj.weight"),
            ("output.weight", "lm_head.weight"),
        ] {
            assert_eq!(Arch::Llama.hf_to_canonical(hf).as_deref(), Some(gguf));
            assert_eq!(Arch::Llama.canonical_to_hf(gguf).as_deref(), Some(hf));
        }
        for bad in ["model.layers.01.mlp.up_proj.weight", "model.layers..mlp.up_proj.weight", "model.layers.0.mlp.up_proj.bias", "rotary.weight"] {
            assert_eq!(Arch::Llama.hf_to_canonical(bad), None, "{bad}");
        }
    }
}
