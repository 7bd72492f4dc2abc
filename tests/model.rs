//! The whole forward pass on the GPU: a tiny random Llama written at test
//! time as GGUF (quantized) and as a safetensors folder gives the same logits
//! through both loaders and matches the CPU reference forward at several
//! positions (prefill and decode); the real model's teacher-forced logits
//! match the exact float64 reference in tests/reference/smollm2-135m/.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use wgkv::kv::KvSpec;
use wgkv::model::{Model, Output, Readout};
use wgkv::quant::WType;
use wgkv::reference::forward::RefModel;
use wgkv::weights::Weights;

fn logits(o: Output) -> Vec<f32> {
    match o {
        Output::Logits(v) => v,
        other => panic!("expected logits, got {other:?}"),
    }
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}

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

#[test]
fn tiny_model_gpu_matches_reference_through_both_loaders() {
    let dir = tiny::scratch("model-tiny");
    for quant in [WType::Q8_0, WType::Q4_1, WType::F16] {
        let gguf = dir.join(format!("tiny-{}.gguf", quant.name()));
        let hf = dir.join(format!("tiny-hf-{}", quant.name()));
        tiny::write_tiny_gguf(&gguf, 7, quant);
        std::fs::create_dir_all(&hf).unwrap();
        tiny::write_tiny_hf_opts(&hf, &tiny::TinyOpts { quant, ..tiny::TinyOpts::new(7) });
        let wg = Weights::open(&gguf).unwrap();
        let wh = Weights::open(&hf).unwrap();
        for g in contexts() {
            let want = run_reference(&wg, g.caps.f16);
            let from_gguf = run_tiny(&g, &wg, 64);
            let from_hf = run_tiny(&g, &wh, 64);
            for (i, ((a, b), r)) in from_gguf.iter().zip(&from_hf).zip(&want).enumerate() {
                let what = format!("{} step {i} on {}", quant.name(), label(&g));
                assert_close(&format!("gguf vs reference, {what}"), a, r, LOGITS);
                assert_close(&format!("safetensors vs reference, {what}"), b, r, LOGITS);
            }
        }
    }
}

#[test]
fn prefill_in_chunks_equals_one_prefill() {
    let dir = tiny::scratch("model-chunks");
    let path = dir.join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 3, WType::Q8_0);
    let w = Weights::open(&path).unwrap();
    for g in contexts() {
        let prompt: Vec<u32> = (0..40).map(|i| (i * 11 + 1) % 300).collect();
        let mut one = Model::load(g.clone(), &w, 64, KvSpec::full()).unwrap();
        let a = logits(one.forward(&prompt, Readout::Logits).unwrap());
        let mut parts = Model::load(g.clone(), &w, 64, KvSpec::full()).unwrap();
        parts.forward(&prompt[..9], Readout::Argmax).unwrap();
        parts.forward(&prompt[9..10], Readout::Argmax).unwrap();
        let b = logits(parts.forward(&prompt[10..], Readout::Logits).unwrap());
        assert_close(&format!("chunked prefill on {}", label(&g)), &b, &a, LOGITS);
        let greedy = one.forward(&[5], Readout::Argmax).unwrap();
        let full = logits(parts.forward(&[5], Readout::Logits).unwrap());
        match greedy {
            Output::Argmax(id) => assert_eq!(id, argmax(&full), "GPU argmax vs argmax of read-back logits"),
            o => panic!("{o:?}"),
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
    let w = Weights::open(&path).unwrap();
    let Some(g) = contexts().into_iter().next() else { return };
    let mut m = Model::load(g.clone(), &w, 512, KvSpec::full()).unwrap();
    let (mut n, mut agree, mut margin_n, mut margin_agree) = (0, 0, 0, 0);
    let (mut sum, mut cnt, mut max) = (0f64, 0usize, 0f64);
    for file in ["compare_1.json", "compare_2.json", "compare_3.json"] {
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reference_path(&format!("smollm2-135m/{file}"))).unwrap()).unwrap();
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
    eprintln!("real model vs exact on {}: top-1 {agree}/{n}, margin {margin_agree}/{margin_n}, top-20 |diff| mean {mean:.4} max {max:.4}", label(&g));
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
