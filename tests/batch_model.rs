//! The batched decode step (`Model::forward_batch`, what `wgkv serve` runs
//! for concurrent requests) against one-token steps of the same sequences:
//! tiny models of every recipe, sequences of different lengths under
//! different KV policies (one evicting as it decodes), the same logits
//! step after step, each sequence's cache left as its own steps leave it.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use tiny::{TinyArch, TinyOpts};
use wgkv::kv::KvSpec;
use wgkv::model::{CacheSlot, MAX_BATCH, Model, Readout};
use wgkv::quant::WType;
use wgkv::weights::Weights;

/// As tests/model.rs: random tiny weights give O(1) logits; the batch's
/// matmuls sum in another order than the one-token matvecs.
const LOGITS: Tol = Tol { name: "batch-logits", abs: 2e-3, rel: 2e-3 };

/// `tokens` through `slot`'s cache as the model's own `forward` runs them.
fn one(m: &mut Model, slot: &mut CacheSlot, tokens: &[u32]) -> Vec<f32> {
    m.swap_cache(slot);
    let out = m.forward(tokens, Readout::Logits);
    m.swap_cache(slot);
    logits(out.unwrap())
}

/// Policies whose attention differs: dense, eviction scored at the prompt,
/// compressed storage (KIVI where head_dim holds its groups of 32: the
/// tiny Qwen 3; Mustafar elsewhere), and a window that evicts during the
/// decode steps.
fn specs(arch: TinyArch) -> [&'static str; 4] {
    let storage = if arch == TinyArch::Qwen3 { "kivi" } else { "mustafar:k=0.75,v=0.75,window=8" };
    ["full", "h2o", storage, "streaming:budget=24,sinks=2"]
}
const PROMPTS: [usize; 4] = [5, 13, 20, 9];

#[test]
fn a_batched_step_equals_one_token_steps_of_each_sequence() {
    let dir = tiny::scratch("batch-model");
    for arch in TinyArch::GGUF_ALL {
        let path = dir.join(format!("tiny-{arch:?}.gguf"));
        tiny::write_tiny_gguf_opts(&path, &TinyOpts { quant: WType::Q8_0, ..TinyOpts::of(arch, 4) });
        let w = Weights::open(&path).unwrap();
        let vocab = w.cfg.vocab_size as u32;
        for g in contexts() {
            let mut m = Model::load(g.clone(), &w, 64, KvSpec::full()).unwrap();
            let new = |m: &Model, spec: &str| m.new_cache(KvSpec::parse(spec).unwrap(), 64).unwrap();
            let specs = specs(arch);
            let mut batched: Vec<CacheSlot> = specs.iter().map(|s| new(&m, s)).collect();
            let mut single: Vec<CacheSlot> = specs.iter().map(|s| new(&m, s)).collect();
            let mut next = Vec::new();
            for (i, &len) in PROMPTS.iter().enumerate() {
                let prompt: Vec<u32> = (0..len as u32).map(|t| (t * 31 + 7 * i as u32 + 3) % vocab).collect();
                let a = one(&mut m, &mut batched[i], &prompt);
                let b = one(&mut m, &mut single[i], &prompt);
                assert_eq!(a, b, "the same prefill twice");
                next.push(argmax(&a));
            }
            // Odd steps leave the last sequence out: a batch of 3 in a plan of 4 slots.
            for step in 0..6 {
                let b = if step % 2 == 1 { 3 } else { 4 };
                let mut seqs: Vec<&mut CacheSlot> = batched.iter_mut().take(b).collect();
                let got = m.forward_batch(&mut seqs, &next[..b]).unwrap();
                assert_eq!(got.len(), b);
                for (i, slot) in single.iter_mut().enumerate().take(b) {
                    let want = one(&mut m, slot, &[next[i]]);
                    let what = format!("{arch:?} {} step {step} on {}", specs[i], label(&g));
                    assert_close(&what, &got[i], &want, LOGITS);
                    assert_eq!((batched[i].kv().pos, batched[i].kv().len), (slot.kv().pos, slot.kv().len), "{what}: cache position and length");
                    next[i] = argmax(&want);
                }
            }
        }
    }
}

#[test]
fn a_batched_step_refuses_what_it_cannot_run() {
    let dir = tiny::scratch("batch-errors");
    let path = dir.join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 4, WType::Q8_0);
    let w = Weights::open(&path).unwrap();
    for g in contexts() {
        let mut m = Model::load(g.clone(), &w, 8, KvSpec::full()).unwrap();
        let mut a = m.new_cache(KvSpec::full(), 8).unwrap();
        let mut b = m.new_cache(KvSpec::full(), 8).unwrap();
        let bad = w.cfg.vocab_size as u32;
        let e = m.forward_batch(&mut [&mut a, &mut b], &[1, bad]).unwrap_err().to_string();
        assert!(e.contains("outside the vocabulary"), "{e}");
        assert!(m.forward_batch(&mut [&mut a, &mut b], &[1]).is_err(), "fewer tokens than sequences");
        let mut many: Vec<CacheSlot> = (0..=MAX_BATCH).map(|_| m.new_cache(KvSpec::full(), 8).unwrap()).collect();
        let mut seqs: Vec<&mut CacheSlot> = many.iter_mut().collect();
        assert!(m.forward_batch(&mut seqs, &[1; MAX_BATCH + 1]).is_err(), "more than MAX_BATCH sequences");
        one(&mut m, &mut a, &[1; 8]);
        let e = m.forward_batch(&mut [&mut a, &mut b], &[1, 2]).unwrap_err().to_string();
        assert!(e.contains("context full"), "{e}");
        // Nothing was appended by the refused steps.
        assert_eq!((a.kv().len, b.kv().len), (8, 0));
    }
}
