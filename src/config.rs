//! One `ModelConfig` for every supported family, from GGUF metadata or an HF
//! config.json: the family's recipe (`arch`) filled in with the file's sizes.

pub use crate::arch::RopeStyle;
use crate::arch::{Arch, Block, Dim, Needed, Presence, TensorSpec};
use crate::error::{Error, Result, show};
use crate::gguf::{Gguf, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The file's name for the architecture (`llama`, `mistral`, `qwen2`).
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
    /// Q, K and V add a bias after their projection (`Presence::IfQkvBias`).
    pub qkv_bias: bool,
    /// Q and K are RMS-normed per head before RoPE (`Presence::IfQkNorm`).
    pub qk_norm: bool,
    /// Per-pair RoPE frequency divisors (Llama 3 scaling), as the tensor
    /// `rope_freqs.weight` (`Presence::IfRopeFreqs`).
    pub rope_freqs: Option<RopeFreqs>,
    /// Embeddings are multiplied by this after the lookup (Gemma: `sqrt(dim)`).
    pub embed_scale: Option<f32>,
    /// Sliding-window attention on some layers (Gemma 2/3's local layers, Mistral).
    pub window: Option<Window>,
    /// Attention scores (scaled) become `c * tanh(s / c)` (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Final logits become `c * tanh(x / c)` (Gemma 2).
    pub final_softcap: Option<f32>,
}

/// Sliding-window (local) layers: a query at position `p` sees the keys at
/// positions `p - size + 1 ..= p` on them; the other (global) layers see
/// every earlier key.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub size: usize,
    /// Per layer: windowed (local) or not.
    pub local: Vec<bool>,
    /// RoPE base of the local layers (global ones use `rope_theta`).
    pub rope_theta: f32,
}

/// Where a model's RoPE frequency factors come from. Either way they are the
/// tensor `rope_freqs.weight` (`head_dim / 2` divisors of the pairs'
/// frequencies): a GGUF file carries it, and an HF folder's loader computes
/// it from config.json the way llama.cpp's converter does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeFreqs {
    /// The GGUF file's `rope_freqs.weight`.
    File,
    /// config.json's `rope_scaling: {rope_type: "llama3", ...}`.
    Llama3(Llama3Rope),
}

/// Llama 3.1's RoPE scaling parameters (HF `rope_scaling`, `rope_type: "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

impl Llama3Rope {
    /// The per-pair frequency divisors for `head_dim` and RoPE base `theta`:
    /// pair `j`'s wavelength `2 pi / theta^(-2j/head_dim)` below
    /// `original / high_freq_factor` keeps its frequency (1), above
    /// `original / low_freq_factor` is divided by `factor`, and in between
    /// blends the two (HF's `_compute_llama3_parameters`, as llama.cpp's
    /// converter writes it into `rope_freqs.weight`). f64, rounded once.
    pub fn factors(&self, head_dim: usize, theta: f64) -> Vec<f32> {
        let old = self.original_max_position_embeddings;
        let (low_wavelen, high_wavelen) = (old / self.low_freq_factor, old / self.high_freq_factor);
        (0..head_dim / 2)
            .map(|j| {
                let freq = theta.powf(-2.0 * j as f64 / head_dim as f64);
                let wavelen = std::f64::consts::TAU / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    self.factor as f32
                } else {
                    let smooth = (old / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor);
                    (1.0 / ((1.0 - smooth) / self.factor + smooth)) as f32
                }
            })
            .collect()
    }
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
            Dim::Head => self.head_dim,
            Dim::RopePairs => self.head_dim / 2,
            Dim::Vocab => self.vocab_size,
        }) as u64
    }

    /// Whether a table row with `p` is in this model's files.
    pub fn has(&self, p: Presence) -> bool {
        match p {
            Presence::Always => true,
            Presence::UnlessTied => !self.tied_embeddings,
            Presence::IfQkvBias => self.qkv_bias,
            Presence::IfQkNorm => self.qk_norm,
            Presence::IfRopeFreqs => self.rope_freqs.is_some(),
        }
    }

    /// Every tensor this model needs, in file order: its family's tensor
    /// table over this config (a run of per-layer rows repeats per layer).
    pub fn tensors(&self) -> Vec<Needed> {
        let mut out = Vec::new();
        let table = self.family.table();
        let push = |out: &mut Vec<Needed>, t: &TensorSpec, layer: Option<usize>| {
            if !self.has(t.presence) {
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

    /// The layer's attention window (`None`: it sees the whole context).
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        self.window.as_ref().filter(|w| w.local[layer]).map(|w| w.size)
    }

    /// The layer's RoPE base.
    pub fn layer_rope_theta(&self, layer: usize) -> f32 {
        match &self.window {
            Some(w) if w.local[layer] => w.rope_theta,
            _ => self.rope_theta,
        }
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
        let family = Arch::from_gguf(arch, &format!("'{}'", show(arch))).map_err(err)?;
        let recipe = family.recipe();
        let key = |k: &str| format!("{arch}.{k}");
        let size = |k: &str| -> Result<usize> {
            let v = g.get_u64(&key(k))?;
            usize::try_from(v).map_err(|_| err(format!("'{}' = {v} is too large", key(k))))
        };
        let opt_size = |k: &str, default: usize| if g.get(&key(k)).is_some() { size(k) } else { Ok(default) };

        match g.get(&key("rope.scaling.type")) {
            None => {}
            Some(Value::Str(s)) if s == "none" => {}
            Some(Value::Str(s)) => return Err(err(format!("RoPE scaling '{}' is not supported (Llama 3 frequency factors, rope_freqs.weight, are)", show(s)))),
            Some(v) => return Err(err(format!("'{}' is {}, expected a string", key("rope.scaling.type"), v.type_name()))),
        }
        if g.tensor("rope_factors_long.weight").is_some() || g.tensor("rope_factors_short.weight").is_some() {
            return Err(err("LongRoPE scaling (rope_factors_long / rope_factors_short) is not supported".into()));
        }
        if g.get(&key("rope.scale_linear")).is_some() && g.get_f32(&key("rope.scale_linear"))? != 1.0 {
            return Err(err("linear RoPE scaling (rope.scale_linear) is not supported".into()));
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
        let n_layers = size("block_count")?;
        let rope_theta = if g.get(&key("rope.freq_base")).is_some() { g.get_f32(&key("rope.freq_base"))? } else { 10000.0 };
        let gemma = gguf_gemma(g, arch, family, n_layers, rope_theta)?;
        let cfg = ModelConfig {
            arch: arch.to_string(),
            family,
            dim,
            hidden_dim: size("feed_forward_length")?,
            n_layers,
            n_heads,
            n_kv_heads: opt_size("attention.head_count_kv", n_heads)?,
            head_dim,
            vocab_size,
            max_seq: size("context_length")?,
            rope_theta,
            norm_eps: g.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_style: family.rope_style(true),
            tied_embeddings: g.tensor("output.weight").is_none(),
            qkv_bias: recipe.qkv_bias,
            qk_norm: recipe.qk_norm,
            // Llama 3.1-style frequency factors ride in a tensor, not in metadata.
            rope_freqs: g.tensor("rope_freqs.weight").map(|_| RopeFreqs::File),
            embed_scale: (recipe.block == Block::Sandwich).then(|| (dim as f32).sqrt()),
            window: gemma.window,
            attn_softcap: gemma.attn_softcap,
            final_softcap: gemma.final_softcap,
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
        let named = if archs.is_empty() { "none".to_string() } else { archs.iter().map(|a| show(a)).collect::<Vec<_>>().join(", ") };
        let family = Arch::from_hf(&archs, &named).map_err(err)?;
        let recipe = family.recipe();
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

        let rope_freqs = match j.get("rope_scaling").filter(|v| !v.is_null()) {
            None => None,
            Some(rs) => {
                let ty = rs.get("rope_type").or_else(|| rs.get("type")).and_then(|t| t.as_str()).unwrap_or("unknown");
                match ty {
                    "default" => None,
                    "llama3" => Some(RopeFreqs::Llama3(llama3_rope(rs).map_err(err)?)),
                    _ => return Err(err(format!("rope_scaling '{}' is not supported (default and llama3 are)", show(ty)))),
                }
            }
        };
        // Qwen2's Q/K/V biases are its recipe's; a config's attention_bias
        // also puts one on the output projection, which no recipe has.
        if flag("attention_bias") || flag("mlp_bias") {
            return Err(err("attention_bias / mlp_bias are not supported".into()));
        }
        let gemma = recipe.block == Block::Sandwich;
        let act = if gemma { "gelu_pytorch_tanh" } else { "silu" };
        for key in ["hidden_act", "hidden_activation"] {
            if let Some(a) = j.get(key).and_then(|v| v.as_str()).filter(|a| *a != act) {
                return Err(err(format!("{key} '{}' is not supported ({act} is)", show(a))));
            }
        }
        let max_seq = need("max_position_embeddings")?;
        let n_layers = need("num_hidden_layers")?;
        let rope_theta = float("rope_theta", 10000.0)?;
        let gemma_extras = if gemma { hf_gemma(j, family, n_layers, rope_theta).map_err(err)? } else { GemmaExtras::default() };
        // Qwen2/3 configs name a window they do not use unless use_sliding_window is set
        // (and then only on layers past max_window_layers, which this build does not run);
        // Mistral's window covers every layer.
        let windowed = j.get("use_sliding_window").and_then(|v| v.as_bool()).unwrap_or(true);
        let window = match int("sliding_window")?.filter(|&w| windowed && w > 0 && w < max_seq) {
            _ if gemma => gemma_extras.window,
            Some(w) if family == Arch::Llama => Some(Window { size: w, local: vec![true; n_layers], rope_theta }),
            Some(w) => return Err(err(format!("sliding_window {w} is not supported on {}", family.title()))),
            None => None,
        };
        let dim = need("hidden_size")?;
        let n_heads = need("num_attention_heads")?;
        let cfg = ModelConfig {
            arch: arch.to_string(),
            family,
            dim,
            hidden_dim: need("intermediate_size")?,
            n_layers,
            n_heads,
            n_kv_heads: int("num_key_value_heads")?.unwrap_or(n_heads),
            head_dim: match int("head_dim")? {
                Some(h) => h,
                None => even_split(dim, n_heads).map_err(err)?,
            },
            vocab_size: need("vocab_size")?,
            max_seq,
            rope_theta,
            norm_eps: float("rms_norm_eps", 1e-6)?,
            rope_style: family.rope_style(false),
            // Gemma's configs tie the head unless they say otherwise.
            tied_embeddings: j.get("tie_word_embeddings").and_then(|v| v.as_bool()).unwrap_or(gemma),
            qkv_bias: recipe.qkv_bias,
            qk_norm: recipe.qk_norm,
            rope_freqs,
            embed_scale: gemma.then(|| (dim as f32).sqrt()),
            window,
            attn_softcap: gemma_extras.attn_softcap,
            final_softcap: gemma_extras.final_softcap,
        };
        cfg.check().map_err(err)?;
        // Gemma scales queries by query_pre_attn_scalar^-1/2; the kernels by head_dim^-1/2.
        if let Some(q) = int("query_pre_attn_scalar")?.filter(|&q| gemma && q != cfg.head_dim) {
            return Err(err(format!("query_pre_attn_scalar {q} is not supported (head_dim {} is)", cfg.head_dim)));
        }
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
        if let Some(w) = &self.window {
            if w.size == 0 || w.size > MAX_SEQ {
                return Err(format!("sliding window {} is outside 1..={MAX_SEQ}", w.size));
            }
            if w.local.len() != self.n_layers {
                return Err(format!("the sliding-window pattern has {} entries for {} layers", w.local.len(), self.n_layers));
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

/// What a Gemma GGUF adds to the config: its sliding window and (Gemma 2)
/// its softcaps.
#[derive(Default)]
struct GemmaExtras {
    window: Option<Window>,
    attn_softcap: Option<f32>,
    final_softcap: Option<f32>,
}

/// A Gemma 2 or 3 GGUF's extras, read as llama.cpp reads them
/// (`load_arch_hparams`):
/// - the window `attention.sliding_window` (Gemma 3: none or 0 means every
///   layer global; Gemma 2: default 4096);
/// - which layers it covers: Gemma 2 every even one (a period of 2); Gemma 3
///   the pattern, a per-layer bool array or a period `n` (default 6) whose
///   last layer is global (`il % n < n - 1` is local; 0: all local);
/// - the local layers' RoPE base: Gemma 3's `rope.freq_base_swa` (default
///   10000), Gemma 2's global one;
/// - Gemma 2's softcaps `attn_logit_softcapping` (default 50) and
///   `final_logit_softcapping` (default 30).
///
/// Also refuses what this build lacks: a final softcap on Gemma 3, and the
/// 27B models' attention scale (llama.cpp scales their queries by
/// `1/sqrt(dim / n_heads)`, not `1/sqrt(head_dim)`).
fn gguf_gemma(g: &Gguf, arch: &str, family: Arch, n_layers: usize, rope_theta: f32) -> Result<GemmaExtras> {
    if !matches!(family, Arch::Gemma2 | Arch::Gemma3) {
        return Ok(GemmaExtras::default());
    }
    let gemma2 = family == Arch::Gemma2;
    let key = |k: &str| format!("{arch}.{k}");
    let err = |m: String| Error::format(&g.path, m);
    let float = |k: &str, default: f32| -> Result<f32> { if g.get(&key(k)).is_some() { g.get_f32(&key(k)) } else { Ok(default) } };
    let softcap = |k: &str, default: f32| -> Result<Option<f32>> {
        match float(k, default)? {
            c if c.is_finite() && c > 0.0 => Ok(Some(c)),
            c => Err(err(format!("'{}' = {c} is not a positive number", key(k)))),
        }
    };
    let (attn_softcap, final_softcap) = match gemma2 {
        true => (softcap("attn_logit_softcapping", 50.0)?, softcap("final_logit_softcapping", 30.0)?),
        false if float("final_logit_softcapping", 0.0)? != 0.0 => {
            return Err(err("final-logit soft-capping (final_logit_softcapping) is not supported on Gemma 3".into()));
        }
        false => (None, None),
    };
    if (gemma2 && n_layers == 46) || (!gemma2 && n_layers == 62) {
        return Err(err(format!("{}'s 27B attention scale 1/sqrt(dim / n_heads) is not supported (1/sqrt(head_dim) is)", family.title())));
    }
    let size = match g.get(&key("attention.sliding_window")) {
        None if gemma2 => 4096,
        None => 0,
        Some(_) => g.get_u64(&key("attention.sliding_window"))? as usize,
    };
    if size == 0 {
        return Ok(GemmaExtras { window: None, attn_softcap, final_softcap });
    }
    let pk = key("attention.sliding_window_pattern");
    let local: Vec<bool> = match g.get(&pk) {
        _ if gemma2 => (0..n_layers).map(|il| il % 2 == 0).collect(),
        Some(Value::Array(a)) => {
            let v: Option<Vec<bool>> = a.iter().map(|x| if let Value::Bool(b) = x { Some(*b) } else { None }).collect();
            let v = v.ok_or_else(|| err(format!("'{pk}' is not an array of booleans")))?;
            if v.len() != n_layers {
                return Err(err(format!("'{pk}' has {} entries for {n_layers} layers", v.len())));
            }
            v
        }
        p => {
            let n = if p.is_some() { g.get_u64(&pk)? as usize } else { 6 };
            (0..n_layers).map(|il| n == 0 || il % n < n - 1).collect()
        }
    };
    let rope_theta = if gemma2 { rope_theta } else { float("rope.freq_base_swa", 10000.0)? };
    if !(rope_theta.is_finite() && rope_theta > 0.0) {
        return Err(err(format!("local RoPE base {rope_theta} is not a positive number")));
    }
    Ok(GemmaExtras { window: Some(Window { size, local, rope_theta }), attn_softcap, final_softcap })
}

/// A Gemma 2 or 3 config.json's extras, as transformers reads them: the
/// window `sliding_window` (default 4096) on Gemma 2's even layers, or on
/// Gemma 3's `layer_types` "sliding_attention" layers (else a period
/// `sliding_window_pattern`, default 6, whose last layer is global); Gemma
/// 3's local RoPE base `rope_local_base_freq` (default 10000); both
/// softcaps where set (Gemma 2's defaults 50 and 30).
fn hf_gemma(j: &serde_json::Map<String, serde_json::Value>, family: Arch, n_layers: usize, rope_theta: f32) -> std::result::Result<GemmaExtras, String> {
    let gemma2 = family == Arch::Gemma2;
    let num = |k: &str| j.get(k).and_then(|v| v.as_f64());
    let softcap = |k: &str, default: Option<f64>| -> std::result::Result<Option<f32>, String> {
        match j.get(k) {
            Some(serde_json::Value::Null) => Ok(None),
            None => Ok(default.map(|d| d as f32)),
            Some(v) => match v.as_f64() {
                Some(c) if c.is_finite() && c > 0.0 => Ok(Some(c as f32)),
                _ => Err(format!("'{k}' is not a positive number")),
            },
        }
    };
    let attn_softcap = softcap("attn_logit_softcapping", gemma2.then_some(50.0))?;
    let final_softcap = softcap("final_logit_softcapping", gemma2.then_some(30.0))?;
    let size = match j.get("sliding_window") {
        Some(serde_json::Value::Null) => 0,
        None => 4096,
        Some(v) => v.as_u64().ok_or("'sliding_window' is not a non-negative integer")? as usize,
    };
    let local: Vec<bool> = match (gemma2, j.get("layer_types").and_then(|v| v.as_array())) {
        (true, _) => (0..n_layers).map(|il| il % 2 == 0).collect(),
        (false, Some(types)) => {
            let v: Option<Vec<bool>> = types.iter().map(|t| t.as_str().map(|t| t == "sliding_attention")).collect();
            let v = v.ok_or("'layer_types' is not an array of strings")?;
            if v.len() != n_layers {
                return Err(format!("'layer_types' has {} entries for {n_layers} layers", v.len()));
            }
            v
        }
        (false, None) => {
            let n = num("sliding_window_pattern").map_or(6, |n| n as usize);
            (0..n_layers).map(|il| n == 0 || il % n < n - 1).collect()
        }
    };
    let local_theta = if gemma2 { rope_theta } else { num("rope_local_base_freq").unwrap_or(10000.0) as f32 };
    if !(local_theta.is_finite() && local_theta > 0.0) {
        return Err(format!("local RoPE base {local_theta} is not a positive number"));
    }
    let window = (size > 0).then_some(Window { size, local, rope_theta: local_theta });
    Ok(GemmaExtras { window, attn_softcap, final_softcap })
}

/// The `llama3` parameters of an HF `rope_scaling` object, checked so the
/// factors they make are finite and positive.
fn llama3_rope(rs: &serde_json::Value) -> std::result::Result<Llama3Rope, String> {
    let num = |k: &str| -> std::result::Result<f64, String> {
        let v = rs.get(k).ok_or_else(|| format!("rope_scaling 'llama3' is missing '{k}'"))?;
        v.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| format!("rope_scaling '{k}' is not a positive number"))
    };
    let p = Llama3Rope {
        factor: num("factor")?,
        low_freq_factor: num("low_freq_factor")?,
        high_freq_factor: num("high_freq_factor")?,
        original_max_position_embeddings: num("original_max_position_embeddings")?,
    };
    if p.high_freq_factor <= p.low_freq_factor {
        return Err(format!("rope_scaling high_freq_factor {} is not above low_freq_factor {}", p.high_freq_factor, p.low_freq_factor));
    }
    Ok(p)
}
