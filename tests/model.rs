//! The whole forward pass on the GPU: a tiny random model of every recipe
//! (Llama, Llama 3 RoPE factors, Qwen2, Qwen3, Gemma 3) written at test time
//! as GGUF (quantized) and as a safetensors folder (all but Gemma 3) gives
//! the same logits through both loaders and matches the CPU reference
//! forward at several positions (prefill and decode); the real model's teacher-forced logits match the
//! exact float64 reference in tests/reference/smollm2-135m/.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use tiny::{TinyArch, TinyOpts};
use wgkv::arch::Arch;
use wgkv::config::{ModelConfig, RopeStyle};
use wgkv::kv::KvSpec;
use wgkv::model::{Model, Output, Readout};
use wgkv::quant::WType;
use wgkv::reference::forward::RefModel;
use wgkv::weights::Weights;

/// Logits are compared relative to their spread: the tiny model's weights
/// are random, so logits are O(1); f16 KV storage and f32 reductions in
/// another order keep the difference well under 1e-2 of that.
const LOGITS: Tol = Tol { name: "tiny-logits", abs: 2e-3, rel: 2e-3 };

/// Prompt of 13 tokens (prefill, not a power of two), then 4 decode steps.
fn run_tiny(g: &std::sync::Arc<wgkv::gpu::Gpu>, w: &Weights, ctx: usize) -> Vec<Vec<f32>> {
    let mut m = Model::load(g.clone(), w, ctx, KvSpec::full()).unwrap();
    let prompt: Vec<u32> = (0..13).map(|i| (i * 37 + 5) % w.cfg.vocab_size as u32).collect();
    let mut out = vec![logits(m.forward(&prompt, Readout::Logits).unwrap())];
    for t in [7u32, 250, 3, 99] {
        out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
    }
    out
}

fn run_reference(w: &Weights, kv_f16: bool) -> Vec<Vec<f32>> {
    let mut r = RefModel::new(w).unwrap();
    r.kv_f16 = kv_f16;
    let prompt: Vec<u32> = (0..13).map(|i| (i * 37 + 5) % w.cfg.vocab_size as u32).collect();
    let mut last = Vec::new();
    for &t in &prompt {
        last = r.forward(t);
    }
    let mut out = vec![last];
    for t in [7u32, 250, 3, 99] {
        out.push(r.forward(t));
    }
    out
}

/// Llama over three weight types; the other recipes differ in their block,
/// not their weights, so two types each.
fn recipe_quants(arch: TinyArch) -> &'static [WType] {
    if arch == TinyArch::Llama { &[WType::Q8_0, WType::Q4_1, WType::F16] } else { &[WType::Q8_0, WType::F16] }
}

/// The tiny model written with `o` as GGUF and, where the recipe has one,
/// as an HF folder under `dir`, opened.
fn write_both(dir: &std::path::Path, o: &TinyOpts) -> (Weights, Option<Weights>) {
    let tag = format!("{:?}-{}", o.arch, o.quant.name());
    let (gguf, hf) = (dir.join(format!("tiny-{tag}.gguf")), dir.join(format!("tiny-hf-{tag}")));
    tiny::write_tiny_gguf_opts(&gguf, o);
    let hf = o.arch.has_hf().then(|| {
        tiny::write_tiny_hf_opts(&hf, o);
        Weights::open(&hf).unwrap()
    });
    (Weights::open(&gguf).unwrap(), hf)
}

#[test]
fn tiny_model_gpu_matches_reference_through_both_loaders() {
    let dir = tiny::scratch("model-tiny");
    for arch in TinyArch::GGUF_ALL {
        for &quant in recipe_quants(arch) {
            // Qwen3's and Gemma's tiny models tie their LM head, the others do not.
            let o = TinyOpts { quant, tied: matches!(arch, TinyArch::Qwen3 | TinyArch::Gemma3 | TinyArch::Gemma2), ..TinyOpts::of(arch, 7) };
            let (wg, wh) = write_both(&dir, &o);
            for g in contexts() {
                let want = run_reference(&wg, g.caps.f16);
                let from_gguf = run_tiny(&g, &wg, 64);
                let from_hf = wh.as_ref().map(|wh| run_tiny(&g, wh, 64));
                for (i, (a, r)) in from_gguf.iter().zip(&want).enumerate() {
                    let what = format!("{arch:?} {} step {i} on {}", quant.name(), label(&g));
                    assert_close(&format!("gguf vs reference, {what}"), a, r, LOGITS);
                    if let Some(b) = from_hf.as_ref().map(|h| &h[i]) {
                        assert_close(&format!("safetensors vs reference, {what}"), b, r, LOGITS);
                    }
                }
            }
        }
    }
}

/// Takes one part of a recipe out of a config.
type Strip = fn(&mut ModelConfig);

/// The test above can fail: each part of a recipe (Q/K/V biases, QK-norm,
/// RoPE factors, RoPE pairing; Gemma's sandwich block and embedding scale,
/// Gemma 3's local RoPE base, Gemma 2's softcaps) moves the reference's logits by far more than `LOGITS`
/// allows, so a forward that dropped it would not pass.
#[test]
fn each_recipe_part_moves_the_logits() {
    let dir = tiny::scratch("model-parts");
    for arch in TinyArch::GGUF_ALL {
        let o = TinyOpts { quant: WType::Q8_0, ..TinyOpts::of(arch, 7) };
        let (wg, _) = write_both(&dir, &o);
        let full = run_reference(&wg, true);
        let c = wg.cfg.clone();
        let mut parts: Vec<(&str, Strip)> =
            vec![("RoPE pairing", |c| c.rope_style = if c.rope_style == RopeStyle::Interleaved { RopeStyle::HalfSplit } else { RopeStyle::Interleaved })];
        if c.qkv_bias {
            parts.push(("Q/K/V biases", |c| c.qkv_bias = false));
        }
        if c.qk_norm {
            parts.push(("QK-norm", |c| c.qk_norm = false));
        }
        if c.rope_freqs.is_some() {
            parts.push(("RoPE factors", |c| c.rope_freqs = None));
        }
        if matches!(c.family, Arch::Gemma3 | Arch::Gemma2) {
            // Qwen3's block reads the same tensors but the post-norms: pre-norm, SwiGLU.
            parts.push(("sandwich block", |c| c.family = Arch::Qwen3));
            parts.push(("embedding scale", |c| c.embed_scale = None));
        }
        if c.window.as_ref().is_some_and(|w| w.rope_theta != c.rope_theta) {
            parts.push(("local RoPE base", |c| c.window.as_mut().unwrap().rope_theta = c.rope_theta));
        }
        if c.attn_softcap.is_some() {
            parts.push(("attention softcap", |c| c.attn_softcap = None));
        }
        if c.final_softcap.is_some() {
            parts.push(("final-logit softcap", |c| c.final_softcap = None));
        }
        let expected_parts = match arch {
            TinyArch::Llama | TinyArch::Phi3 => 1,
            TinyArch::Qwen2 | TinyArch::Qwen3 | TinyArch::Llama3Rope => 2,
            TinyArch::Gemma3 => 5,
            TinyArch::Gemma2 => 5,
        };
        assert_eq!(parts.len(), expected_parts, "{arch:?}");
        for (part, strip) in parts {
            let mut w = Weights::open(&wg.path).unwrap();
            strip(&mut w.cfg);
            let without = run_reference(&w, true);
            // Worst excess over the tolerance, in multiples of it.
            let excess = full
                .iter()
                .zip(&without)
                .flat_map(|(a, b)| a.iter().zip(b))
                .map(|(&a, &b)| (a - b).abs() / (LOGITS.abs + LOGITS.rel * a.abs()))
                .fold(0f32, f32::max);
            eprintln!("{arch:?} without {part}: logits move up to {excess:.0}x the tolerance");
            assert!(excess > 10.0, "{arch:?} without {part}: logits move only {excess:.1}x the tolerance");
        }
    }
}

#[test]
fn prefill_in_chunks_equals_one_prefill() {
    let dir = tiny::scratch("model-chunks");
    for arch in TinyArch::GGUF_ALL {
        let path = dir.join(format!("tiny-{arch:?}.gguf"));
        tiny::write_tiny_gguf_opts(&path, &TinyOpts { quant: WType::Q8_0, ..TinyOpts::of(arch, 3) });
        let w = Weights::open(&path).unwrap();
        for g in contexts() {
            let prompt: Vec<u32> = (0..40).map(|i| (i * 11 + 1) % 300).collect();
            let mut one = Model::load(g.clone(), &w, 64, KvSpec::full()).unwrap();
            let a = logits(one.forward(&prompt, Readout::Logits).unwrap());
            let mut parts = Model::load(g.clone(), &w, 64, KvSpec::full()).unwrap();
            parts.forward(&prompt[..9], Readout::Argmax).unwrap();
            parts.forward(&prompt[9..10], Readout::Argmax).unwrap();
            let b = logits(parts.forward(&prompt[10..], Readout::Logits).unwrap());
            assert_close(&format!("{arch:?} chunked prefill on {}", label(&g)), &b, &a, LOGITS);
            let greedy = one.forward(&[5], Readout::Argmax).unwrap();
            let full = logits(parts.forward(&[5], Readout::Logits).unwrap());
            match greedy {
                Output::Argmax(id) => assert_eq!(id, argmax(&full), "{arch:?}: GPU argmax vs argmax of read-back logits"),
                o => panic!("{o:?}"),
            }
        }
    }
}

#[test]
fn context_overflow_and_bad_ids_are_errors() {
    let dir = tiny::scratch("model-errors");
    let path = dir.join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 4, WType::Q8_0);
    let w = Weights::open(&path).unwrap();
    let Some(g) = contexts().into_iter().next() else { return };
    let mut m = Model::load(g, &w, 16, KvSpec::full()).unwrap();
    let e = m.forward(&[1; 17], Readout::Argmax).unwrap_err().to_string();
    assert!(e.contains("context full"), "{e}");
    let e = m.forward(&[300], Readout::Argmax).unwrap_err().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    m.forward(&[1; 16], Readout::Argmax).unwrap();
    assert!(m.forward(&[1], Readout::Argmax).is_err());
}

/// The real model, teacher-forced on the reference files' token sequences:
/// the bar is a mean top-20 logit difference <= 0.05 and max <= 0.25
/// against the exact float64 model (llama.cpp CPU: 0.15 / 0.6), top-1
/// agreement >= 97%, and 100% where the reference's top-2 margin > 0.25.
#[test]
fn real_model_matches_exact_reference() {
    let Some(path) = real_model() else { return };
    matches_exact_reference(&path, "smollm2-135m");
}

/// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2: Q/K/V biases, NeoX RoPE,
/// base 1e6, untied Q8_0 LM head; Q5_0, Q4_K, Q6_K, Q8_0 weights) from
/// `WGKV_QWEN_MODEL`, against its exact references under the same bar.
#[test]
fn qwen2_model_matches_exact_reference() {
    let Some(path) = named_model("WGKV_QWEN_MODEL", "path of qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") else { return };
    let w = Weights::open(&path).unwrap();
    let c = &w.cfg;
    assert_eq!((c.arch.as_str(), c.family, c.rope_style), ("qwen2", wgkv::arch::Arch::Qwen2, RopeStyle::HalfSplit));
    assert_eq!((c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.vocab_size), (24, 896, 14, 2, 64, 4864, 151936));
    assert_eq!((c.rope_theta, c.norm_eps, c.tied_embeddings, c.qkv_bias, c.qk_norm, c.rope_freqs), (1e6, 1e-6, false, true, false, None));
    matches_exact_reference(&path, "qwen2.5-coder-0.5b");
}

/// Gemma 3 270M Q4_K_M (gemma3: sandwich block, GeGLU, embedding scale,
/// QK-norm, 512-token window on 5 of each 6 layers with RoPE base 10000,
/// 1e6 on the others; tied LM head) from `WGKV_GEMMA_MODEL`, against its
/// exact references under the same bar (every sequence within the window).
/// Skipped when the variable is unset (the file is not fetched).
#[test]
fn gemma3_model_matches_exact_reference() {
    let Some(path) = std::env::var_os("WGKV_GEMMA_MODEL").filter(|p| !p.is_empty()) else {
        eprintln!("SKIP: WGKV_GEMMA_MODEL is unset (a gemma-3-270m Q4_K_M GGUF)");
        return;
    };
    let w = Weights::open(std::path::Path::new(&path)).unwrap();
    let c = &w.cfg;
    assert_eq!((c.arch.as_str(), c.family, c.rope_style), ("gemma3", Arch::Gemma3, RopeStyle::HalfSplit));
    assert_eq!((c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.vocab_size), (18, 640, 4, 1, 256, 2048, 262144));
    assert_eq!((c.rope_theta, c.tied_embeddings, c.qk_norm, c.embed_scale), (1e6, true, true, Some((640f32).sqrt())));
    let win = c.window.as_ref().unwrap();
    assert_eq!((win.size, win.rope_theta, win.local.iter().filter(|&&l| !l).count()), (512, 10000.0, 3));
    assert!(!win.local[5] && !win.local[11] && !win.local[17] && win.local[0]);
    matches_exact_reference(std::path::Path::new(&path), "gemma-3-270m");
}

/// Teacher-force the GGUF at `path` on `tests/reference/{dir}/compare_*.json`
/// and hold it to the bar above.
fn matches_exact_reference(path: &std::path::Path, dir: &str) {
    let w = Weights::open(path).unwrap();
    let Some(g) = contexts().into_iter().next() else { return };
    let mut m = Model::load(g.clone(), &w, 512, KvSpec::full()).unwrap();
    let (mut n, mut agree, mut margin_n, mut margin_agree) = (0, 0, 0, 0);
    let (mut sum, mut cnt, mut max) = (0f64, 0usize, 0f64);
    for file in ["compare_1.json", "compare_2.json", "compare_3.json"] {
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reference_path(&format!("{dir}/{file}"))).unwrap()).unwrap();
        let ids = |k: &str| r[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let (prompt, generated) = (ids("prompt_ids"), ids("generated_ids"));
        m.reset();
        for (i, step) in r["steps"].as_array().unwrap().iter().enumerate() {
            let input = if i == 0 { prompt.clone() } else { vec![generated[i - 1]] };
            let lg = logits(m.forward(&input, Readout::Logits).unwrap());
            let top = step["top"].as_array().unwrap();
            let id0 = top[0][0].as_u64().unwrap() as u32;
            let margin = top[0][2].as_f64().unwrap() - top[1][2].as_f64().unwrap();
            n += 1;
            agree += (argmax(&lg) == id0) as usize;
            if margin > 0.25 {
                margin_n += 1;
                margin_agree += (argmax(&lg) == id0) as usize;
            }
            for e in top {
                let d = (lg[e[0].as_u64().unwrap() as usize] as f64 - e[2].as_f64().unwrap()).abs();
                sum += d;
                cnt += 1;
                max = max.max(d);
            }
        }
    }
    let mean = sum / cnt as f64;
    eprintln!("{dir} vs exact on {}: top-1 {agree}/{n}, margin {margin_agree}/{margin_n}, top-20 |diff| mean {mean:.4} max {max:.4}", label(&g));
    assert!(mean <= 0.05, "mean top-20 logit difference {mean:.4} > 0.05");
    assert!(max <= 0.25, "max top-20 logit difference {max:.4} > 0.25");
    assert!(agree as f64 >= 0.97 * n as f64, "top-1 agreement {agree}/{n} < 97%");
    assert_eq!(margin_agree, margin_n, "disagreement where the reference margin exceeds 0.25");
}

/// An adapter whose storage binding limit is below a weight's size gets the
/// weight in row blocks (here the 30 MiB token embedding, which is also the
/// LM head, under a forced 8 MiB limit) and computes the same logits, bit
/// for bit: each output row is the same dot product either way.
#[test]
fn real_model_split_weights_give_the_same_logits() {
    let Some(path) = real_model() else { return };
    let w = Weights::open(&path).unwrap();
    let Some(g) = contexts().into_iter().next() else { return };
    let limit = 8u64 << 20;
    let opts = wgkv::gpu::GpuOptions { max_storage_binding: Some(limit), ..Default::default() };
    let small = wgkv::gpu::Gpu::new(&opts).unwrap();
    assert_eq!(small.caps.max_storage_binding, limit);
    let mut whole = Model::load(g.clone(), &w, 256, KvSpec::full()).unwrap();
    let mut split = Model::load(small.clone(), &w, 256, KvSpec::full()).unwrap();
    assert_eq!(whole.weight_blocks(), 30 * 7 + 1, "the default adapter binds every weight whole");
    assert_eq!(split.weight_blocks(), 30 * 7 + 4, "token_embd (30.4 MiB) in 4 blocks of at most 8 MiB");
    let prompt: Vec<u32> = (0..37).map(|i| (i * 1031 + 17) % 49152).collect();
    let mut input = prompt;
    for step in 0..4 {
        let a = logits(whole.forward(&input, Readout::Logits).unwrap());
        let b = logits(split.forward(&input, Readout::Logits).unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "step {step}: split logits differ");
        input = vec![argmax(&a)];
    }
}

/// The lanes prefill (CPU adapters) keeps partial states per slot split,
/// `tokens × heads × splits × head_dim` floats: where one chunk's would pass
/// the storage binding limit, prompts are prefilled in shorter chunks
/// instead of refused (Gemma 3 at 8k tokens on lavapipe), with the same
/// logits.
#[test]
fn prefill_chunks_shrink_to_the_binding_limit() {
    let dir = tiny::scratch("model-small-binding");
    let (mut w, _) = write_both(&dir, &TinyOpts { quant: WType::Q8_0, ..TinyOpts::of(TinyArch::Llama, 7) });
    w.cfg.max_seq = 4096;
    let Some(g) = contexts().into_iter().next() else { return };
    // Above a chunk's activations, under its lanes partials over 4096 slots.
    let limit = 256u64 << 10;
    let small = wgkv::gpu::Gpu::new(&wgkv::gpu::GpuOptions { max_storage_binding: Some(limit), ..Default::default() }).unwrap();
    let mut whole = Model::load(g.clone(), &w, 4096, KvSpec::full()).unwrap();
    let mut chunked = Model::load(small.clone(), &w, 4096, KvSpec::full()).unwrap();
    let lanes = wgkv::ops::attention::AttnKind::for_gpu(&small) == wgkv::ops::attention::AttnKind::Lanes;
    let s = &chunked.kv.scratch.prefill;
    if lanes {
        let (o, _) = wgkv::ops::attention::PrefillScratch::partial_bytes(&s.shape, s.kind, 2 * s.max_tokens);
        assert!(s.max_tokens < 512 && o > limit, "a chunk of {} tokens", s.max_tokens);
    }
    assert_eq!(chunked.kv.max_call(), s.max_tokens as usize);
    let prompt: Vec<u32> = (0..600).map(|i| (i * 37 + 5) % tiny::VOCAB as u32).collect();
    let a = logits(whole.forward(&prompt, Readout::Logits).unwrap());
    let b = logits(chunked.forward(&prompt, Readout::Logits).unwrap());
    assert_close("chunked vs whole prefill", &b, &a, LOGITS);
}

/// `bench --profile`'s weight figures: one decode step's matvec rows name
/// their matrix shape and together stream every weight matrix once (the
/// token embedding as the tied LM head), as the file stores them.
#[test]
fn a_decode_profile_counts_every_weight_byte_once() {
    let dir = tiny::scratch("model-profile");
    let (w, _) = write_both(&dir, &TinyOpts { quant: WType::Q8_0, tied: true, ..TinyOpts::of(TinyArch::Llama, 7) });
    let Some(g) = contexts().into_iter().next() else { return };
    let mut m = Model::load(g, &w, 64, KvSpec::full()).unwrap();
    m.forward(&[3, 4, 5], Readout::Argmax).unwrap();
    let p = m.profile(&[6]).unwrap();
    let want: u64 = w.cfg.tensors().iter().filter(|t| t.dims.len() == 2).map(|t| w.get(&t.name).unwrap().data.len() as u64).sum();
    let got: u64 = p.rows.iter().map(|r| r.weight_bytes).sum();
    assert_eq!(got, want);
    let q = p.rows.iter().find(|r| r.class == format!("matvec Q8_0 {}×{}", w.cfg.q_dim(), w.cfg.dim)).expect("the Q projection's row");
    assert!(q.calls >= tiny::LAYERS && q.gb_per_s().is_some_and(|g| g > 0.0), "{q:?}");
    assert!(p.rows.iter().filter(|r| r.weight_bytes == 0).all(|r| r.gb_per_s().is_none()));
    let table = wgkv::profile::table(&p, "t");
    assert!(table.contains("weights GB/s") && table.contains(&format!("weights: {:.1} MB streamed", want as f64 / 1e6)), "{table}");
}
