//! A tiny random model of every recipe (`TinyArch`: Llama, Llama with
//! Llama 3 RoPE factors, Qwen2, Qwen3, Gemma 3) written at test time, as a
//! GGUF file and (all but Gemma 3) as an HF folder (config.json +
//! safetensors), both describing the same model.
//!
//! Include with `#[path = "common/tiny.rs"] mod tiny;`.
//!
//! Shape: dim 64, ffn 96, 2 layers, 4 heads, 2 KV heads, head_dim 16 (Qwen3:
//! 32, so Q is 128 wide, not dim), vocab 300. Every row length (64, 96, 128)
//! is whole 32-weight blocks, so matrices can be Q8_0/Q4_0/Q4_1 (not
//! K-quants, which need rows of 256). Each recipe has its own RoPE base and
//! norm epsilon, so the metadata is read, not assumed.
//!
//! Values: canonical weights are random, rounded to bf16 with tiny values
//! flushed to zero, so they are exact in F32, F16 and BF16. For a quantized
//! GGUF, `tiny_model` gives the values the file actually holds (quantized and
//! dequantized); `write_tiny_hf_opts` with the same `quant` stores exactly
//! those as F32, so both files hold bit-identical models.
//!
//! Llama 3 RoPE factors: the HF folder says `rope_scaling: {rope_type:
//! "llama3", ...}` and the GGUF carries the `rope_freqs.weight` llama.cpp's
//! converter would write for it, computed here (`llama3_factors`) without
//! the engine's code.
//!
//! RoPE layout: HF Q/K rows pair element j with j + head_dim/2 within each
//! head. llama.cpp's converter permutes Q and K rows so that GGUF llama files
//! (not qwen2/qwen3 ones) pair adjacent elements (2j, 2j+1) instead;
//! `to_gguf_rows` does that:
//! within each head, GGUF row 2j+s = HF row s*head_dim/2 + j (s = 0, 1),
//! i.e. reshape rows to (heads, 2, head_dim/2), swap the last two axes.
//! Q uses the query head count, K the KV head count. Quantization works per
//! row, so permuting before or after quantizing gives the same bytes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use wgkv::arch::{Arch, Role};
use wgkv::config::{Llama3Rope, ModelConfig, RopeFreqs, RopeStyle, Window};
use wgkv::gguf::{GgufWriter, Value, Value as G};
use wgkv::quant::{WType, dequantize, quantize};
use wgkv::safetensors::SafeTensorsWriter;
use wgkv::tokenizer::{GgufVocab, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNUSED};

pub const DIM: usize = 64;
pub const HIDDEN: usize = 96;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 16;
pub const VOCAB: usize = 300;
pub const MAX_SEQ: usize = 256;
pub const THETA: f32 = 10000.0;
pub const EPS: f32 = 1e-5;

/// The recipes the tiny model comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyArch {
    Llama,
    /// Llama with Llama 3.1 RoPE scaling (frequency factors).
    Llama3Rope,
    /// Q/K/V biases, NeoX RoPE in GGUF too.
    Qwen2,
    /// Per-head QK-norm, NeoX RoPE, head_dim 32 (Q wider than dim).
    Qwen3,
    /// Gemma 3's sandwich block (post-norms, GeGLU, embedding scale), QK-norm,
    /// head_dim 32, layer 0 local (window `GEMMA_WINDOW`, RoPE base 10000),
    /// layer 1 global (base 1e6). GGUF only.
    Gemma3,
    /// Gemma 2's: Gemma 3's block without QK-norm, one RoPE base, and the
    /// softcaps (`GEMMA2_SOFTCAPS`, small enough to bind on the tiny
    /// model's scores and logits). GGUF only.
    Gemma2,
    /// Phi-3's: Llama's block with NeoX RoPE, its GGUF's Q/K/V and gate/up
    /// written fused (`attn_qkv`, `ffn_up` of twice the rows). GGUF only.
    Phi3,
}

/// The tiny Gemma 2's (attention, final-logit) softcaps.
pub const GEMMA2_SOFTCAPS: (f32, f32) = (0.5, 2.0);

/// The tiny Gemma 3's sliding window: above the contexts most tests run, so
/// the recipe tests compare the rest of the block; `tests/window_model.rs`
/// narrows it and runs far past it.
pub const GEMMA_WINDOW: usize = 48;

impl TinyArch {
    /// The recipes written both as GGUF and as an HF folder.
    pub const ALL: [TinyArch; 6] = [TinyArch::Llama, TinyArch::Llama3Rope, TinyArch::Qwen2, TinyArch::Qwen3, TinyArch::Gemma3, TinyArch::Gemma2];
    /// Every recipe, as GGUF.
    pub const GGUF_ALL: [TinyArch; 7] =
        [TinyArch::Llama, TinyArch::Llama3Rope, TinyArch::Qwen2, TinyArch::Qwen3, TinyArch::Gemma3, TinyArch::Gemma2, TinyArch::Phi3];

    /// Whether the tiny model also comes as an HF folder.
    pub fn has_hf(self) -> bool {
        self != TinyArch::Phi3
    }

    pub fn family(self) -> Arch {
        match self {
            TinyArch::Llama | TinyArch::Llama3Rope => Arch::Llama,
            TinyArch::Qwen2 => Arch::Qwen2,
            TinyArch::Qwen3 => Arch::Qwen3,
            TinyArch::Gemma3 => Arch::Gemma3,
            TinyArch::Gemma2 => Arch::Gemma2,
            TinyArch::Phi3 => Arch::Phi3,
        }
    }

    pub fn head_dim(self) -> usize {
        if matches!(self, TinyArch::Qwen3 | TinyArch::Gemma3 | TinyArch::Gemma2) { 32 } else { HEAD_DIM }
    }

    pub fn theta(self) -> f32 {
        match self {
            TinyArch::Llama | TinyArch::Llama3Rope => THETA,
            TinyArch::Qwen2 => 50000.0,
            TinyArch::Qwen3 => 20000.0,
            TinyArch::Gemma3 => 1e6,
            TinyArch::Gemma2 => 10000.0,
            TinyArch::Phi3 => 30000.0,
        }
    }

    pub fn eps(self) -> f32 {
        if self.family() == Arch::Llama { EPS } else { 1e-6 }
    }
}

/// The tiny Llama 3 model's `rope_scaling`: with head_dim 16 and base 10000
/// pair 0 keeps its frequency (wavelength 6.3 < 64/4), pairs 1 and 2 (19.9,
/// 62.8) are blended, pairs 3-7 (> 64) are divided by 8: enough change at
/// the tests' first positions to tell factors from none.
pub const LLAMA3: Llama3Rope = Llama3Rope { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64.0 };

/// llama.cpp's converter's `rope_freqs` for `p` (its Python, in f64):
/// wavelength `2 pi / freq` below `old / high` keeps 1, above `old / low`
/// gets `factor`, in between `1 / ((1 - smooth) / factor + smooth)` with
/// `smooth = (old / wavelen - low) / (high - low)`.
pub fn llama3_factors(p: &Llama3Rope, head_dim: usize, theta: f64) -> Vec<f32> {
    let old = p.original_max_position_embeddings;
    (0..head_dim)
        .step_by(2)
        .map(|i| {
            let wavelen = 2.0 * std::f64::consts::PI * theta.powf(i as f64 / head_dim as f64);
            let f = if wavelen < old / p.high_freq_factor {
                1.0
            } else if wavelen > old / p.low_freq_factor {
                p.factor
            } else {
                let smooth = (old / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor);
                1.0 / ((1.0 - smooth) / p.factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// How to write the tiny model.
#[derive(Clone, Copy, Debug)]
pub struct TinyOpts {
    pub seed: u64,
    pub arch: TinyArch,
    /// Type of the GGUF's matrices (norms are F32); for HF, the grid the
    /// values are rounded to so they match a GGUF of this type exactly.
    pub quant: WType,
    /// Share the embedding with the LM head (no output.weight / lm_head).
    pub tied: bool,
    /// HF only: number of safetensors shards (1 = model.safetensors).
    pub shards: usize,
}

impl TinyOpts {
    pub fn new(seed: u64) -> TinyOpts {
        TinyOpts { seed, arch: TinyArch::Llama, quant: WType::F32, tied: false, shards: 1 }
    }

    /// Another recipe, untied, F32.
    pub fn of(arch: TinyArch, seed: u64) -> TinyOpts {
        TinyOpts { arch, ..TinyOpts::new(seed) }
    }
}

/// The tiny Llama's config as both files give it, but for `rope_style`.
pub fn tiny_config(rope_style: RopeStyle, tied: bool) -> ModelConfig {
    ModelConfig { rope_style, ..tiny_config_of(&TinyOpts { tied, ..TinyOpts::new(0) }, true) }
}

/// The config a file written with `o` gives: its GGUF (`gguf`) or HF folder.
/// Written out, not taken from the engine's recipes.
pub fn tiny_config_of(o: &TinyOpts, gguf: bool) -> ModelConfig {
    let a = o.arch;
    let arch = match a.family() {
        Arch::Llama => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Qwen3 => "qwen3",
        Arch::Gemma2 => "gemma2",
        Arch::Gemma3 => "gemma3",
        Arch::Phi3 => "phi3",
    };
    let gemma = matches!(a, TinyArch::Gemma3 | TinyArch::Gemma2);
    let gemma2 = a == TinyArch::Gemma2;
    ModelConfig {
        arch: arch.into(),
        family: a.family(),
        dim: DIM,
        hidden_dim: HIDDEN,
        n_layers: LAYERS,
        n_heads: HEADS,
        n_kv_heads: KV_HEADS,
        head_dim: a.head_dim(),
        vocab_size: VOCAB,
        max_seq: MAX_SEQ,
        rope_theta: a.theta(),
        norm_eps: a.eps(),
        rope_style: if gguf && a.family() == Arch::Llama { RopeStyle::Interleaved } else { RopeStyle::HalfSplit },
        tied_embeddings: o.tied,
        qkv_bias: a == TinyArch::Qwen2,
        qk_norm: matches!(a, TinyArch::Qwen3 | TinyArch::Gemma3),
        rope_freqs: match (a, gguf) {
            (TinyArch::Llama3Rope, true) => Some(RopeFreqs::File),
            (TinyArch::Llama3Rope, false) => Some(RopeFreqs::Llama3(LLAMA3)),
            _ => None,
        },
        embed_scale: gemma.then(|| (DIM as f32).sqrt()),
        window: gemma.then(|| Window { size: GEMMA_WINDOW, local: vec![true, false], rope_theta: 10000.0 }),
        attn_softcap: gemma2.then_some(GEMMA2_SOFTCAPS.0),
        final_softcap: gemma2.then_some(GEMMA2_SOFTCAPS.1),
    }
}

/// One tensor: canonical (GGUF) name, dims ne0 first, values in HF row order.
#[derive(Clone, Debug)]
pub struct TinyTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub values: Vec<f32>,
}

impl TinyTensor {
    pub fn cols(&self) -> usize {
        self.dims[0] as usize
    }
    pub fn rows(&self) -> usize {
        self.dims.get(1).map_or(1, |&r| r as usize)
    }
}

/// splitmix64, so this file needs nothing from tests/common/mod.rs.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1), rounded to bf16, |x| < 2^-14 flushed to 0: exact in f16 and bf16.
    fn weight(&mut self) -> f32 {
        let x = (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        let x = half::bf16::from_f32(x).to_f32();
        if x.abs() < 1.0 / 16384.0 { 0.0 } else { x }
    }
}

/// The model's values as a file written with `o` holds them (HF row order):
/// the recipe's tensor table over the tiny config, in file order.
pub fn tiny_model(o: &TinyOpts) -> Vec<TinyTensor> {
    let mut rng = Mix(o.seed ^ 0x7131_u64.rotate_left(40));
    let cfg = tiny_config_of(o, true);
    // Norms around 1; biases around 0; matrices scaled ~1/sqrt(cols) so
    // activations stay O(1) through the layers; the embedding as drawn.
    let scale = |role: Role, dims: &[u64]| match (role, dims.len()) {
        (Role::Bq | Role::Bk | Role::Bv, _) => 0.5,
        (_, 1) => 0.2,
        (Role::Embed, _) => 1.0,
        _ => 1.0 / (dims[0] as f32).sqrt(),
    };
    cfg.tensors()
        .into_iter()
        .map(|t| {
            let scale = scale(t.role, &t.dims);
            let (name, dims) = (t.name, t.dims);
            let n = dims.iter().product::<u64>() as usize;
            let values: Vec<f32> = if t.role == Role::RopeFreqs {
                llama3_factors(&LLAMA3, cfg.head_dim, cfg.rope_theta as f64)
            } else if matches!(t.role, Role::Bq | Role::Bk | Role::Bv) {
                // Exact in bf16 and f16 (a power of two times bf16, zero below 2^-14).
                (0..n).map(|_| scale * rng.weight()).collect()
            } else if dims.len() == 1 {
                // Norm weights around 1, scale exact in bf16 (a power of two times bf16).
                (0..n).map(|_| half::bf16::from_f32(1.0 + scale * rng.weight()).to_f32()).collect()
            } else {
                let s = half::bf16::from_f32(scale).to_f32();
                // Flushed below f16's normal range again after scaling: exact in f16 too.
                let raw: Vec<f32> =
                    (0..n).map(|_| half::bf16::from_f32(s * rng.weight()).to_f32()).map(|x| if x.abs() < 1.0 / 16384.0 { 0.0 } else { x }).collect();
                dequantize(o.quant, &quantize(o.quant, &raw), n).unwrap()
            };
            TinyTensor { name, dims, values }
        })
        .collect()
}

/// Rows of an HF Q or K matrix (`rows` x `cols`) in GGUF llama order (see the file comment).
pub fn to_gguf_rows(values: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    permute_rows(values, cols, n_head, true)
}

/// The inverse of `to_gguf_rows`.
pub fn from_gguf_rows(values: &[f32], cols: usize, n_head: usize) -> Vec<f32> {
    permute_rows(values, cols, n_head, false)
}

/// Within each head, GGUF row `2j+s` is HF row `s*hd/2 + j`; copy rows in
/// the direction asked.
fn permute_rows(values: &[f32], cols: usize, n_head: usize, to_gguf: bool) -> Vec<f32> {
    let hd = values.len() / cols / n_head;
    let mut out = vec![0f32; values.len()];
    for h in 0..n_head {
        for j in 0..hd / 2 {
            for s in 0..2 {
                let (gguf, hf) = (h * hd + 2 * j + s, h * hd + s * hd / 2 + j);
                let (dst, src) = if to_gguf { (gguf, hf) } else { (hf, gguf) };
                out[dst * cols..][..cols].copy_from_slice(&values[src * cols..][..cols]);
            }
        }
    }
    out
}

/// Query heads for a canonical Q/K matrix or bias name (None for other
/// tensors): the row groups llama.cpp's permutation works on.
pub fn rope_heads(name: &str) -> Option<usize> {
    if name.ends_with(".attn_q.weight") || name.ends_with(".attn_q.bias") {
        Some(HEADS)
    } else if name.ends_with(".attn_k.weight") || name.ends_with(".attn_k.bias") {
        Some(KV_HEADS)
    } else {
        None
    }
}

/// Phi-3's GGUF layout, written out: each layer's Q, K, V stacked by rows
/// as `attn_qkv` where Q was, gate then up as `ffn_up` where the gate was.
fn fused(family: Arch, tensors: Vec<TinyTensor>) -> Vec<TinyTensor> {
    if family != Arch::Phi3 {
        return tensors;
    }
    let find = |name: &str| tensors.iter().find(|t| t.name == name).unwrap().clone();
    let stack = |name: String, parts: &[TinyTensor]| TinyTensor {
        name,
        dims: vec![parts[0].dims[0], parts.iter().map(|p| p.dims[1]).sum()],
        values: parts.iter().flat_map(|p| p.values.clone()).collect(),
    };
    let mut out = Vec::new();
    for t in &tensors {
        let Some((layer, rest)) = t.name.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
            out.push(t.clone());
            continue;
        };
        let n = |x: &str| format!("blk.{layer}.{x}.weight");
        match rest {
            "attn_q.weight" => out.push(stack(n("attn_qkv"), &[find(&n("attn_q")), find(&n("attn_k")), find(&n("attn_v"))])),
            "ffn_gate.weight" => out.push(stack(n("ffn_up"), &[find(&n("ffn_gate")), find(&n("ffn_up"))])),
            "attn_k.weight" | "attn_v.weight" | "ffn_up.weight" => {}
            _ => out.push(t.clone()),
        }
    }
    out
}

/// The tiny model as a GGUF (matrices `quant`, vectors F32), metadata only
/// for the model, under the recipe's architecture name.
pub fn tiny_gguf_writer(o: &TinyOpts) -> GgufWriter {
    let cfg = tiny_config_of(o, true);
    let mut w = GgufWriter::new();
    let u = |x: usize| Value::U32(x as u32);
    let a = cfg.arch.clone();
    let k = |key: &str| format!("{a}.{key}");
    w.add("general.architecture", Value::Str(a.clone()))
        .add("general.name", Value::Str("wgkv tiny".into()))
        .add(&k("vocab_size"), u(VOCAB))
        .add(&k("context_length"), u(MAX_SEQ))
        .add(&k("embedding_length"), u(DIM))
        .add(&k("feed_forward_length"), u(HIDDEN))
        .add(&k("block_count"), u(LAYERS))
        .add(&k("attention.head_count"), u(HEADS))
        .add(&k("attention.head_count_kv"), u(KV_HEADS))
        .add(&k("rope.dimension_count"), u(cfg.head_dim))
        .add(&k("rope.freq_base"), Value::F32(cfg.rope_theta))
        .add(&k("attention.layer_norm_rms_epsilon"), Value::F32(cfg.norm_eps));
    match (&cfg.window, cfg.family) {
        // Gemma 2: every even layer local (llama.cpp's fixed period 2), one RoPE base.
        (Some(win), Arch::Gemma2) => {
            w.add(&k("attention.sliding_window"), u(win.size))
                .add(&k("attn_logit_softcapping"), Value::F32(GEMMA2_SOFTCAPS.0))
                .add(&k("final_logit_softcapping"), Value::F32(GEMMA2_SOFTCAPS.1));
        }
        // Period 2: layer 0 local, layer 1 global (llama.cpp: il % n < n - 1 is local).
        (Some(win), _) => {
            w.add(&k("attention.sliding_window"), u(win.size))
                .add(&k("attention.sliding_window_pattern"), u(2))
                .add(&k("rope.freq_base_swa"), Value::F32(win.rope_theta));
        }
        (None, _) => {}
    }
    if cfg.head_dim * HEADS != DIM {
        w.add(&k("attention.key_length"), u(cfg.head_dim)).add(&k("attention.value_length"), u(cfg.head_dim));
    }
    for t in fused(cfg.family, tiny_model(o)) {
        // Only Llama's rows are permuted (its RoPE pairs become adjacent).
        let values = match rope_heads(&t.name) {
            Some(h) if cfg.rope_style == RopeStyle::Interleaved => to_gguf_rows(&t.values, t.cols(), h),
            _ => t.values,
        };
        let wt = if t.dims.len() == 1 { WType::F32 } else { o.quant };
        w.add_tensor(&t.name, &t.dims, wt, quantize(wt, &values));
    }
    w
}

pub fn write_tiny_gguf(path: &Path, seed: u64, quant: WType) {
    write_tiny_gguf_opts(path, &TinyOpts { quant, ..TinyOpts::new(seed) });
}

pub fn write_tiny_gguf_opts(path: &Path, o: &TinyOpts) {
    tiny_gguf_writer(o).write(path).unwrap();
}

/// HF folder with the canonical values (F32/F16/BF16 tensors, one file, untied).
pub fn write_tiny_hf(dir: &Path, seed: u64) {
    write_tiny_hf_opts(dir, &TinyOpts::new(seed));
}

/// The safetensors dtype of each tensor: a mix of all three when the values
/// are exact in each (canonical values), else F32.
pub fn hf_dtype(name: &str, quant: WType) -> WType {
    if !matches!(quant, WType::F32 | WType::F16 | WType::BF16) {
        return WType::F32;
    }
    if name == "token_embd.weight" {
        WType::BF16
    } else if name.contains(".attn_") && !name.contains("norm") {
        WType::F16
    } else {
        WType::F32
    }
}

/// The tiny Llama's config.json.
pub fn hf_config_json(tied: bool) -> String {
    hf_config_json_of(&TinyOpts { tied, ..TinyOpts::new(0) })
}

/// config.json of a folder written with `o`, with the keys each family's
/// real configs carry (Qwen's name a sliding window they do not use).
pub fn hf_config_json_of(o: &TinyOpts) -> String {
    let (a, cfg) = (o.arch, tiny_config_of(o, false));
    let (class, model_type) = match a.family() {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Arch::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
        Arch::Gemma3 => ("Gemma3ForCausalLM", "gemma3_text"),
        Arch::Gemma2 => ("Gemma2ForCausalLM", "gemma2"),
        Arch::Phi3 => ("Phi3ForCausalLM", "phi3"),
    };
    let rope_scaling = match a {
        TinyArch::Llama3Rope => serde_json::json!({
            "rope_type": "llama3",
            "factor": LLAMA3.factor,
            "low_freq_factor": LLAMA3.low_freq_factor,
            "high_freq_factor": LLAMA3.high_freq_factor,
            "original_max_position_embeddings": LLAMA3.original_max_position_embeddings as u64,
        }),
        _ => serde_json::Value::Null,
    };
    let mut j = serde_json::json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_size": DIM,
        "intermediate_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": MAX_SEQ,
        "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.norm_eps,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": o.tied,
        "vocab_size": VOCAB,
        "hidden_act": "silu",
        "torch_dtype": "float32"
    });
    let m = j.as_object_mut().unwrap();
    if let Some(w) = cfg.window.as_ref().filter(|_| cfg.embed_scale.is_some()) {
        // Gemma's keys, as transformers writes them.
        m.remove("hidden_act");
        m.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
        m.insert("query_pre_attn_scalar".into(), cfg.head_dim.into());
        m.insert("sliding_window".into(), w.size.into());
        m.insert("attn_logit_softcapping".into(), cfg.attn_softcap.map_or(serde_json::Value::Null, |c| c.into()));
        m.insert("final_logit_softcapping".into(), cfg.final_softcap.map_or(serde_json::Value::Null, |c| c.into()));
        if a == TinyArch::Gemma3 {
            let types: Vec<&str> = w.local.iter().map(|&l| if l { "sliding_attention" } else { "full_attention" }).collect();
            m.insert("layer_types".into(), types.into());
            m.insert("rope_local_base_freq".into(), w.rope_theta.into());
        }
    } else if a.family() != Arch::Llama {
        m.insert("use_sliding_window".into(), false.into());
        m.insert("sliding_window".into(), 64.into());
        m.insert("max_window_layers".into(), 1.into());
        m.insert("attention_bias".into(), false.into());
    }
    j.to_string()
}

pub fn write_tiny_hf_opts(dir: &Path, o: &TinyOpts) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), hf_config_json_of(o)).unwrap();
    let family = o.arch.family();
    let tensors = tiny_model(o);
    let shards = o.shards.max(1);
    let mut writers: Vec<SafeTensorsWriter> = (0..shards).map(|_| SafeTensorsWriter::new()).collect();
    let file = |i: usize| if shards == 1 { "model.safetensors".to_string() } else { format!("model-{:05}-of-{shards:05}.safetensors", i + 1) };
    let mut weight_map = serde_json::Map::new();
    // RoPE factors have no HF tensor: config.json's rope_scaling stands for them.
    let tensors: Vec<&TinyTensor> = tensors.iter().filter(|t| !t.name.starts_with("rope_freqs")).collect();
    for (i, t) in tensors.iter().enumerate() {
        let hf = family.canonical_to_hf(&t.name).unwrap();
        let dt = hf_dtype(&t.name, o.quant);
        let shape: Vec<u64> = t.dims.iter().rev().copied().collect();
        // Gemma's checkpoints store a norm's scale `1 + w` as `w` (exact: F32, near 1).
        let gemma_norm = matches!(o.arch, TinyArch::Gemma2 | TinyArch::Gemma3) && t.dims.len() == 1 && t.name.contains("norm");
        let values: Vec<f32> = if gemma_norm { t.values.iter().map(|v| v - 1.0).collect() } else { t.values.clone() };
        writers[i % shards].add(&hf, dt, &shape, quantize(dt, &values));
        weight_map.insert(hf, file(i % shards).into());
    }
    for (i, w) in writers.iter_mut().enumerate() {
        w.meta("format", "pt");
        w.write(&dir.join(file(i))).unwrap();
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
}

/// A fresh, empty scratch directory for one test (removed first if left over).
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgkv-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------- a tokenizer for the tiny model

/// GPT-2's byte alphabet, in byte order.
pub fn byte_alphabet() -> Vec<String> {
    let mut extra = 0;
    (0..=255u32)
        .map(|b| {
            let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
            let c = if printable {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

pub const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A byte-level vocabulary of exactly the tiny model's 300 ids: three
/// control tokens, the 256 bytes, a few merges of the filler's words, then
/// unused ids.
pub fn tiny_vocab() -> GgufVocab {
    let merges = ["h e", "Ġ T", "ĠT he", "Ġ i", "Ġi s", "Ġ p", "a s", "Ġp as", "Ġpas s", "Ġ k", "e y", "Ġk ey", "Ġ g", "r e", "e n", "Ġ s"];
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend(byte_alphabet());
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![TOKEN_CONTROL; 3];
    types.resize(tokens.len(), TOKEN_NORMAL);
    while tokens.len() < VOCAB {
        tokens.push(format!("<unused{}>", tokens.len()));
        types.push(TOKEN_UNUSED);
    }
    GgufVocab {
        model: "gpt2".into(),
        pre: "smollm".into(),
        tokens,
        merges: merges.map(String::from).to_vec(),
        token_types: types,
        bos: Some(1),
        eos: Some(2),
        add_bos: Some(false),
        chat_template: Some(CHATML.into()),
        ..Default::default()
    }
}

/// The tiny model with `tiny_vocab` and a 1024-token context in its metadata.
pub fn write_tiny_with_vocab(path: &Path) {
    tiny_writer_with_vocab().write(path).unwrap();
}

/// `write_tiny_with_vocab`'s file, not yet written.
pub fn tiny_writer_with_vocab() -> GgufWriter {
    tiny_writer_with_template(Some(CHATML))
}

/// The tiny model with `tiny_vocab` and `template` as its chat template (none: a base model's file).
pub fn tiny_writer_with_template(template: Option<&str>) -> GgufWriter {
    let v = tiny_vocab();
    let mut w = tiny_gguf_writer(&TinyOpts { quant: WType::Q8_0, ..TinyOpts::new(11) });
    let strs = |v: &[String]| G::Array(v.iter().map(|s| G::Str(s.clone())).collect());
    w.add("llama.context_length", G::U32(1024))
        .add("tokenizer.ggml.model", G::Str(v.model.clone()))
        .add("tokenizer.ggml.pre", G::Str(v.pre.clone()))
        .add("tokenizer.ggml.tokens", strs(&v.tokens))
        .add("tokenizer.ggml.merges", strs(&v.merges))
        .add("tokenizer.ggml.token_type", G::Array(v.token_types.iter().map(|&t| G::I32(t)).collect()))
        .add("tokenizer.ggml.bos_token_id", G::U32(1))
        .add("tokenizer.ggml.eos_token_id", G::U32(2))
        .add("tokenizer.ggml.add_bos_token", G::Bool(false));
    if let Some(t) = template {
        w.add("tokenizer.chat_template", G::Str(t.into()));
    }
    w
}
