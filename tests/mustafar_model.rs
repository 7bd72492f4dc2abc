//! `mustafar` storage in the whole forward pass, on the tiny random Llama:
//! the GPU's logits follow the CPU reference forward that prunes the same
//! tokens at the same points (decode over compressed blocks + the dense
//! window, and prefill over expanded blocks); sparsity 0 gives `full`'s
//! logits; resident bytes follow the pool; a reset starts clean.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use wgkv::kv::KvSpec;
use wgkv::model::{Model, Readout};
use wgkv::quant::WType;
use wgkv::reference::forward::{RefModel, RefQuest};
use wgkv::reference::mustafar::{T, keep_count};
use wgkv::weights::Weights;

const LOGITS: Tol = Tol { name: "tiny-logits", abs: 2e-3, rel: 2e-3 };
const CTX: usize = 256;

fn tiny_weights(tag: &str) -> Weights {
    let path = tiny::scratch(tag).join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 13, WType::Q8_0);
    Weights::open(&path).unwrap()
}

/// The calls of every run: a 37-token prompt, 110 decode steps, a 20-token
/// call (prefill over compressed blocks), then 60 decode steps: 227 tokens,
/// so three blocks get compressed on the way (with window 8).
fn calls() -> Vec<Vec<u32>> {
    let tok = |i: u32| (i * 37 + 5) % 300;
    let mut c = vec![(0..37).map(tok).collect::<Vec<u32>>()];
    c.extend((37..147).map(|i| vec![tok(i)]));
    c.push((147..167).map(tok).collect());
    c.extend((167..227).map(|i| vec![tok(i)]));
    c
}

/// The reference under Mustafar with `window` dense tokens: before a call,
/// once `window + 64` or more tokens are uncompressed, the oldest whole
/// 64-token blocks beyond the window are pruned. Logits after each call.
fn reference_run(w: &Weights, kv_f16: bool, k: f64, v: f64, window: usize) -> (Vec<Vec<f32>>, usize) {
    reference_quest_run(w, kv_f16, k, v, window, None)
}

/// The same with Quest over the blocks: decode steps attend the window and
/// the blocks `quest`'s rule selects among the pruned ones (pages of 64).
fn reference_quest_run(w: &Weights, kv_f16: bool, k: f64, v: f64, window: usize, quest: Option<RefQuest>) -> (Vec<Vec<f32>>, usize) {
    let mut r = RefModel::new(w).unwrap();
    r.kv_f16 = kv_f16;
    let (kk, kv) = (keep_count(tiny::HEAD_DIM, k), keep_count(tiny::HEAD_DIM, v));
    let (mut compressed, mut out) = (0usize, Vec::new());
    for call in calls() {
        let nb = (r.cached() - compressed).saturating_sub(window) / T;
        let nb = nb.min(CTX / T - compressed / T);
        if nb > 0 {
            r.prune(compressed..compressed + nb * T, kk, kv);
            compressed += nb * T;
        }
        r.quest = quest.map(|q| RefQuest { active: call.len() == 1, window_from: Some(compressed), ..q });
        let mut last = Vec::new();
        for &t in &call {
            last = r.forward(t);
        }
        out.push(last);
    }
    (out, compressed)
}

fn gpu_run(m: &mut Model) -> Vec<Vec<f32>> {
    calls().iter().map(|c| logits(m.forward(c, Readout::Logits).unwrap())).collect()
}

#[test]
fn pruned_blocks_follow_the_reference() {
    let w = tiny_weights("mustafar-ref");
    for g in contexts() {
        for (k, v, window) in [(0.7, 0.5, 8), (0.5, 0.75, 40)] {
            let (want, compressed) = reference_run(&w, g.caps.f16, k, v, window);
            let spec = format!("mustafar:k={k},v={v},window={window}");
            let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse(&spec).unwrap()).unwrap();
            let got = gpu_run(&mut m);
            let must = m.kv.mustafar().unwrap();
            assert_eq!(must.compressed(), compressed, "{spec} on {}", label(&g));
            assert!(compressed >= 2 * T, "the run compresses at least two blocks ({spec})");
            for (i, (gv, wv)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{spec}, call {i} on {}", label(&g)), gv, wv, LOGITS);
            }
            // The pool grew past its first two blocks, plans were rebuilt.
            if compressed > 2 * T {
                assert!(must.generation > 0, "{spec}: the pool never grew");
            }
        }
    }
}

#[test]
fn sparsity_zero_equals_full() {
    let w = tiny_weights("mustafar-full");
    for g in contexts() {
        let mut f = Model::load(g.clone(), &w, CTX, KvSpec::full()).unwrap();
        let want = gpu_run(&mut f);
        let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse("mustafar:k=0,v=0,window=8").unwrap()).unwrap();
        let got = gpu_run(&mut m);
        assert!(m.kv.mustafar().unwrap().compressed() > 0);
        for (i, (gv, wv)) in got.iter().zip(&want).enumerate() {
            // Same values; only the split of the softmax sums differs.
            assert_close(&format!("call {i} on {}", label(&g)), gv, wv, Tol { name: "same-sums", abs: 1e-4, rel: 1e-4 });
        }
    }
}

#[test]
fn resident_bytes_follow_the_compressed_blocks_and_reset_starts_clean() {
    let w = tiny_weights("mustafar-bytes");
    let g = contexts().into_iter().next().expect("a GPU context");
    let mut f = Model::load(g.clone(), &w, CTX, KvSpec::full()).unwrap();
    gpu_run(&mut f);
    let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse("mustafar:k=0.75,v=0.75,window=8").unwrap()).unwrap();
    let first = gpu_run(&mut m);
    let kv = &m.kv;
    let must = kv.mustafar().unwrap();
    let c = must.compressed();
    // Window tokens dense, blocks as pool units + 12 bytes per tile.
    let tiles = tiny::HEAD_DIM + T; // key tiles per channel + one value tile per token (d = 16)
    let meta = tiny::LAYERS * tiny::KV_HEADS * (c / T) * tiles * 12;
    let pool = must.pool_units() * 16;
    assert_eq!(kv.report().resident as usize, (kv.len - c) * kv.bytes_per_token() + pool + meta);
    // 4 of 16 key and value elements kept per token: 512 halves per block
    // and KV head, plus at most 7 halves of padding per tile.
    let block_heads = tiny::LAYERS * tiny::KV_HEADS * (c / T);
    let nz = T * (4 + 4);
    assert!(pool >= block_heads * nz * 2 && pool <= block_heads * (nz + 7 * tiles) * 2, "pool {pool} bytes");
    assert!(kv.report().resident < f.kv.report().resident, "{} vs full {}", kv.report().resident, f.kv.report().resident);
    assert_eq!(kv.len, f.kv.len);
    // A reset forgets the blocks; the same run gives the same logits.
    m.reset();
    let again = gpu_run(&mut m);
    for (i, (a, b)) in again.iter().zip(&first).enumerate() {
        assert_close(&format!("after reset, call {i}"), a, b, Tol { name: "rerun", abs: 1e-6, rel: 1e-6 });
    }
}

#[test]
fn unusable_mustafar_options_are_errors() {
    let w = tiny_weights("mustafar-opts");
    let g = contexts().into_iter().next().expect("a GPU context");
    assert_load_errors(
        &g,
        &w,
        64,
        &[
            ("mustafar:k=1", "not a sparsity"),
            ("mustafar:v=-0.1", "not a sparsity"),
            ("mustafar:window=x", "not a token count"),
            ("mustafar+quest:page=16", "pages are its 64-token blocks"),
            ("mustafar+quest:group=head", "group=shared"),
            ("streaming+mustafar+quest", "not available"),
            ("streaming:budget=60,sinks=4+mustafar:window=8", "raise budget= to at least 76"),
        ],
    );
}

/// The reference under `streaming:budget=B,sinks=S+mustafar:...,window=R`:
/// the first `S` tokens stay dense; before a call of `n` tokens, once
/// `R + 64` or more tokens after the sinks are uncompressed, their oldest
/// whole blocks are pruned; then the oldest pruned blocks are dropped while
/// the call would pass the budget. Logits after each call, tokens evicted.
#[allow(clippy::too_many_arguments)] // the policy's five options beside the model and calls
fn reference_stream(w: &Weights, kv_f16: bool, calls: &[Vec<u32>], k: f64, v: f64, window: usize, budget: usize, sinks: usize) -> (Vec<Vec<f32>>, usize) {
    let mut r = RefModel::new(w).unwrap();
    r.kv_f16 = kv_f16;
    let (kk, kv) = (keep_count(tiny::HEAD_DIM, k), keep_count(tiny::HEAD_DIM, v));
    let (mut comp, mut evicted, mut out) = (0usize, 0usize, Vec::new());
    for call in calls {
        let cached = r.cached();
        let s = sinks.min(cached);
        let nb = (cached - s - comp).saturating_sub(window) / T;
        if nb > 0 {
            r.prune(s + comp..s + comp + nb * T, kk, kv);
            comp += nb * T;
        }
        let drop = (cached + call.len()).saturating_sub(budget).div_ceil(T) * T;
        if drop > 0 {
            assert!(drop <= comp, "the reference evicts only pruned blocks");
            r.keep(&(0..s).chain(s + drop..cached).collect::<Vec<_>>());
            comp -= drop;
            evicted += drop;
        }
        let mut last = Vec::new();
        for &t in call {
            last = r.forward(t);
        }
        out.push(last);
    }
    (out, evicted)
}

#[test]
fn under_streaming_eviction_drops_the_oldest_blocks_as_the_reference_does() {
    let w = tiny_weights("mustafar-streaming");
    // Budget 128 = the context, 4 sinks, window 8: calls of at most
    // 128 - 4 - 8 - 63 = 53 tokens, and 227 tokens run through it.
    let spec = "streaming:budget=128,sinks=4+mustafar:k=0.7,v=0.5,window=8";
    let calls = calls();
    for g in contexts() {
        let (want, evicted) = reference_stream(&w, g.caps.f16, &calls, 0.7, 0.5, 8, 128, 4);
        assert!(evicted >= 2 * T, "the run evicts at least two blocks");
        let mut m = Model::load(g.clone(), &w, 128, KvSpec::parse(spec).unwrap()).unwrap();
        assert_eq!(m.kv.max_call(), 53);
        for (i, (call, wv)) in calls.iter().zip(&want).enumerate() {
            let gv = logits(m.forward(call, Readout::Logits).unwrap());
            assert_close(&format!("{spec}, call {i} on {}", label(&g)), &gv, wv, LOGITS);
            assert!(m.kv.len <= 128, "call {i}: {} tokens cached", m.kv.len);
        }
        assert_eq!(m.kv.evicted, evicted, "{spec} on {}", label(&g));
        assert_eq!(m.kv.pos, 227);
    }
}

#[test]
fn under_streaming_memory_stays_flat_over_a_long_run() {
    let w = tiny_weights("mustafar-flat");
    let g = contexts().into_iter().next().expect("a GPU context");
    let spec = "streaming:budget=160,sinks=4+mustafar:k=0.75,v=0.75,window=8";
    let mut m = Model::load(g.clone(), &w, 256, KvSpec::parse(spec).unwrap()).unwrap();
    let tok = |i: u32| (i * 29 + 3) % 300;
    let units = |m: &Model| m.kv.mustafar().unwrap().stores.iter().map(|s| s.units).sum::<u32>();
    let mut seen = Vec::new();
    for i in 0..1000u32 {
        m.forward(&[tok(i)], Readout::Argmax).unwrap();
        if i == 400 || i == 999 {
            seen.push((m.kv.report().resident as usize, units(&m), m.kv.len));
        }
    }
    let dense_budget = 160 * m.kv.bytes_per_token();
    for &(resident, _, len) in &seen {
        assert!(len <= 160 && resident < dense_budget, "{len} tokens, {resident} bytes resident against {dense_budget} for 160 dense tokens");
    }
    // The pools stopped growing once eviction started freeing runs.
    assert_eq!(seen[0].1, seen[1].1, "pool units allocated at step 400 and 999");
    assert_eq!(m.kv.evicted + m.kv.len, 1000);
}

/// Runs the calls under `want` and `got` and checks the logits agree within
/// `tol`; returns the `got` model.
fn assert_same_run(g: &std::sync::Arc<wgkv::gpu::Gpu>, w: &Weights, want: &str, got: &str, tol: Tol) -> Model {
    let mut a = Model::load(g.clone(), w, CTX, KvSpec::parse(want).unwrap()).unwrap();
    let want_logits = gpu_run(&mut a);
    let mut b = Model::load(g.clone(), w, CTX, KvSpec::parse(got).unwrap()).unwrap();
    for (i, (gv, wv)) in gpu_run(&mut b).iter().zip(&want_logits).enumerate() {
        assert_close(&format!("{got} against {want}, call {i} on {}", label(g)), gv, wv, tol);
    }
    b
}

#[test]
fn under_streaming_a_budget_covering_the_context_equals_mustafar_alone() {
    let w = tiny_weights("mustafar-streaming-full");
    for g in contexts() {
        let spec = "streaming:budget=256,sinks=0+mustafar:k=0.5,v=0.5,window=8";
        let b = assert_same_run(&g, &w, "mustafar:k=0.5,v=0.5,window=8", spec, Tol { name: "same", abs: 1e-6, rel: 1e-6 });
        assert_eq!(b.kv.evicted, 0);
    }
}

#[test]
fn under_quest_decode_attends_the_selected_blocks_as_the_reference_does() {
    let w = tiny_weights("mustafar-quest");
    // 2 blocks per step (the newest and the best scored of the rest) from
    // layer 1 on; the run ends with 3 compressed blocks, so it selects.
    let spec = "mustafar:k=0.5,v=0.5,window=8+quest:budget=128,dense_layers=1";
    let quest =
        RefQuest { page: T, budget_pages: 2, unit: tiny::HEADS / tiny::KV_HEADS, dense_layers: 1, width: 1.0, oracle: false, active: false, window_from: None };
    for g in contexts() {
        let (want, compressed) = reference_quest_run(&w, g.caps.f16, 0.5, 0.5, 8, Some(quest));
        assert!(compressed >= 3 * T, "the run selects among at least three blocks");
        let (all, _) = reference_run(&w, g.caps.f16, 0.5, 0.5, 8);
        assert!(
            want.last().unwrap().iter().zip(all.last().unwrap()).any(|(a, b)| (a - b).abs() > 1e-2),
            "selection changes the reference's logits (else this test could not fail)"
        );
        let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
        let got = gpu_run(&mut m);
        for (i, (gv, wv)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("{spec}, call {i} on {}", label(&g)), gv, wv, LOGITS);
        }
        // Fewer KV bytes read than resident once it selects.
        assert!(m.kv.report().read_per_step < m.kv.report().resident);
    }
}

#[test]
fn under_quest_a_budget_covering_the_blocks_equals_mustafar_alone() {
    let w = tiny_weights("mustafar-quest-all");
    for g in contexts() {
        // The same blocks, listed in another order: only the sums' order differs.
        let spec = "mustafar:k=0.5,v=0.5,window=8+quest:budget=256";
        assert_same_run(&g, &w, "mustafar:k=0.5,v=0.5,window=8", spec, Tol { name: "same-sums", abs: 1e-4, rel: 1e-4 });
    }
}
