//! One `ModelConfig` for the Llama family, from GGUF metadata or an HF config.json.

pub use crate::arch::RopeStyle;
use crate::arch::{Arch, Dim, Needed, Presence, TensorSpec};
use crate::error::{Error, Result, show};
use crate::gguf::{Gguf, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The file's name for the architecture (`llama`, `mistral`).
    pub arch: String,
    /// The recipe that runs it.
    pub family: Arch,
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_seq: usize,
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub rope_style: RopeStyle,
    pub tied_embeddings: bool,
}

/// Sanity caps: sizes beyond these are a corrupt or hostile file, not a model.
const MAX_DIM: usize = 1 << 16;
const MAX_HIDDEN: usize = 1 << 18;
const MAX_LAYERS: usize = 1024;
const MAX_HEADS: usize = 1024;
const MAX_HEAD_DIM: usize = 1024;
const MAX_VOCAB: usize = 1 << 22;
const MAX_SEQ: usize = 1 << 24;

/// head_dim when the file does not give it: the embedding split evenly over the heads.
fn even_split(dim: usize, n_heads: usize) -> std::result::Result<usize, String> {
    if n_heads == 0 || !dim.is_multiple_of(n_heads) {
        return Err(format!("embedding size {dim} is not a multiple of {n_heads} heads"));
    }
    Ok(dim / n_heads)
}

impl ModelConfig {
    /// Width of K and V rows: `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// A tensor dimension of the family's table, in elements.
    pub fn size(&self, d: Dim) -> u64 {
        (match d {
            Dim::Embd => self.dim,
            Dim::Hidden => self.hidden_dim,
            Dim::Q => self.q_dim(),
            Dim::Kv => self.kv_dim(),
            Dim::Vocab => self.vocab_size,
        }) as u64
    }

    /// Every tensor this model needs, in file order: its family's tensor
    /// table over this config (a run of per-layer rows repeats per layer).
    pub fn tensors(&self) -> Vec<Needed> {
        let mut out = Vec::new();
        let table = self.family.table();
        let push = |out: &mut Vec<Needed>, t: &TensorSpec, layer: Option<usize>| {
            if t.presence == Presence::UnlessTied && self.tied_embeddings {
                return;
            }
            let dims = t.dims.iter().map(|&d| self.size(d)).collect();
            out.push(Needed { name: t.name(layer), dims, role: t.role, layer });
        };
        let mut i = 0;
        while i < table.len() {
            let run = table[i..].iter().take_while(|t| t.per_layer).count();
            if run == 0 {
                push(&mut out, &table[i], None);
                i += 1;
                continue;
            }
            for l in 0..self.n_layers {
                table[i..i + run].iter().for_each(|t| push(&mut out, t, Some(l)));
            }
            i += run;
        }
        out
    }

    /// Width of Q rows and of the attention output: `n_heads * head_dim`
    /// (equals `dim` unless the checkpoint sets head_dim explicitly).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig> {
        let err = |m: String| Error::format(&g.path, m);
        let arch = g.get_str("general.architecture")?;
        // llama.cpp writes Mistral and other Llama-layout models as "llama".
        let Some(family) = Arch::from_gguf(arch) else {
            return Err(err(format!("architecture '{}' is not supported (this build runs {})", show(arch), Arch::GGUF_NAMES)));
        };
        let key = |k: &str| format!("{arch}.{k}");
        let size = |k: &str| -> Result<usize> {
            let v = g.get_u64(&key(k))?;
            usize::try_from(v).map_err(|_| err(format!("'{}' = {v} is too large", key(k))))
        };
        let opt_size = |k: &str, default: usize| if g.get(&key(k)).is_some() { size(k) } else { Ok(default) };

        match g.get(&key("rope.scaling.type")) {
            None => {}
            Some(Value::Str(s)) if s == "none" => {}
            Some(Value::Str(s)) => return Err(err(format!("RoPE scaling '{}' is not supported", show(s)))),
            Some(v) => return Err(err(format!("'{}' is {}, expected a string", key("rope.scaling.type"), v.type_name()))),
        }
        if g.get(&key("rope.scale_linear")).is_some() && g.get_f32(&key("rope.scale_linear"))? != 1.0 {
            return Err(err("linear RoPE scaling (rope.scale_linear) is not supported".into()));
        }
        // Llama 3.1-style frequency factors ride in a tensor, not in metadata.
        if g.tensor("rope_freqs.weight").is_some() {
            return Err(err("RoPE frequency factors (rope_freqs.weight, Llama 3 style scaling) are not supported".into()));
        }

        let dim = size("embedding_length")?;
        let n_heads = size("attention.head_count")?;
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => size("attention.key_length")?,
            None => even_split(dim, n_heads).map_err(err)?,
        };
        if opt_size("attention.value_length", head_dim)? != head_dim {
            return Err(err("attention.value_length differs from attention.key_length (not supported)".into()));
        }
        let vocab_size = if g.get(&key("vocab_size")).is_some() {
            size("vocab_size")?
        } else if let Some(Value::Array(toks)) = g.get("tokenizer.ggml.tokens") {
            toks.len()
        } else {
            let t = g.tensor("token_embd.weight").ok_or_else(|| err("no vocab_size, tokenizer.ggml.tokens or token_embd.weight".into()))?;
            t.dims.get(1).map_or(0, |&d| d as usize)
        };
        let cfg = ModelConfig {
            arch: arch.to_string(),
            family,
            dim,
            hidden_dim: size("feed_forward_length")?,
            n_layers: size("block_count")?,
            n_heads,
            n_kv_heads: opt_size("attention.head_count_kv", n_heads)?,
            head_dim,
            vocab_size,
            max_seq: size("context_length")?,
            rope_theta: if g.get(&key("rope.freq_base")).is_some() { g.get_f32(&key("rope.freq_base"))? } else { 10000.0 },
            norm_eps: g.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_style: family.rope_style(true),
            tied_embeddings: g.tensor("output.weight").is_none(),
        };
        cfg.check().map_err(err)?;
        let rope_dims = opt_size("rope.dimension_count", head_dim)?;
        if rope_dims != head_dim {
            return Err(err(format!("partial RoPE (rope.dimension_count {rope_dims} != head_dim {head_dim}) is not supported")));
        }
        Ok(cfg)
    }

    /// From the text of an HF `config.json`; `path` names it in errors.
    pub fn from_hf_json(path: &str, text: &str) -> Result<ModelConfig> {
        let err = |m: String| Error::format(path, m);
        let j: serde_json::Value = serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let j = j.as_object().ok_or_else(|| err("not a JSON object".into()))?;
        let archs: Vec<&str> = j.get("architectures").and_then(|a| a.as_array()).map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        let Some(family) = Arch::from_hf(&archs) else {
            let named = if archs.is_empty() { "none".to_string() } else { archs.iter().map(|a| show(a)).collect::<Vec<_>>().join(", ") };
            return Err(err(format!("architectures [{named}] not supported ({} are)", Arch::HF_NAMES)));
        };
        let arch = if archs.contains(&"MistralForCausalLM") && !archs.contains(&"LlamaForCausalLM") { "mistral" } else { family.name() };
        let int = |k: &str| -> Result<Option<usize>> {
            match j.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_u64().and_then(|u| usize::try_from(u).ok()).map(Some).ok_or_else(|| err(format!("'{k}' is not a non-negative integer"))),
            }
        };
        let need = |k: &str| int(k)?.ok_or_else(|| err(format!("missing key '{k}'")));
        let float = |k: &str, default: f64| -> Result<f32> {
            match j.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default as f32),
                Some(v) => v.as_f64().map(|x| x as f32).ok_or_else(|| err(format!("'{k}' is not a number"))),
            }
        };
        let flag = |k: &str| j.get(k).and_then(|v| v.as_bool()).unwrap_or(false);

        if let Some(rs) = j.get("rope_scaling").filter(|v| !v.is_null()) {
            let ty = rs.get("rope_type").or_else(|| rs.get("type")).and_then(|t| t.as_str()).unwrap_or("unknown");
            if ty != "default" {
                return Err(err(format!("rope_scaling '{}' is not supported", show(ty))));
            }
        }
        if flag("attention_bias") || flag("mlp_bias") {
            return Err(err("attention_bias / mlp_bias are not supported".into()));
        }
        if let Some(act) = j.get("hidden_act").and_then(|v| v.as_str()).filter(|a| *a != "silu") {
            return Err(err(format!("hidden_act '{}' is not supported (silu is)", show(act))));
        }
        let max_seq = need("max_position_embeddings")?;
        if let Some(w) = int("sliding_window")?.filter(|&w| w < max_seq) {
            return Err(err(format!("sliding_window {w} is not supported")));
        }
        let dim = need("hidden_size")?;
        let n_heads = need("num_attention_heads")?;
        let cfg = ModelConfig {
            arch: arch.to_string(),
            family,
            dim,
            hidden_dim: need("intermediate_size")?,
            n_layers: need("num_hidden_layers")?,
            n_heads,
            n_kv_heads: int("num_key_value_heads")?.unwrap_or(n_heads),
            head_dim: match int("head_dim")? {
                Some(h) => h,
                None => even_split(dim, n_heads).map_err(err)?,
            },
            vocab_size: need("vocab_size")?,
            max_seq,
            rope_theta: float("rope_theta", 10000.0)?,
            norm_eps: float("rms_norm_eps", 1e-6)?,
            rope_style: family.rope_style(false),
            tied_embeddings: flag("tie_word_embeddings"),
        };
        cfg.check().map_err(err)?;
        Ok(cfg)
    }

    /// Sizes within the caps, heads that divide, finite positive constants.
    fn check(&self) -> std::result::Result<(), String> {
        let caps = [
            ("embedding size", self.dim, MAX_DIM),
            ("feed-forward size", self.hidden_dim, MAX_HIDDEN),
            ("layer count", self.n_layers, MAX_LAYERS),
            ("head count", self.n_heads, MAX_HEADS),
            ("KV head count", self.n_kv_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ("vocab size", self.vocab_size, MAX_VOCAB),
            ("context length", self.max_seq, MAX_SEQ),
        ];
        for (what, v, cap) in caps {
            if v == 0 || v > cap {
                return Err(format!("{what} {v} is outside 1..={cap}"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!("{} heads are not a multiple of {} KV heads", self.n_heads, self.n_kv_heads));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd (RoPE rotates pairs)", self.head_dim));
        }
        if self.q_dim() > MAX_DIM * 4 {
            return Err(format!("{} heads of {} is too large", self.n_heads, self.head_dim));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("RoPE base {} is not a positive number", self.rope_theta));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(format!("RMS norm epsilon {} is outside (0, 1)", self.norm_eps));
        }
        Ok(())
    }
}
