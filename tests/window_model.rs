//! Sliding-window layers through the whole model: the tiny Gemma 3 (layer
//! 0 windowed, layer 1 global) with a 6-token window, run far past it. The
//! windowed layer keeps its last tokens in slots sized to the window plus
//! one call and compacts them when a call would not fit; the logits follow
//! the CPU reference (which attends the last `W` positions) through prefill
//! chunks, compaction and decode, and every `--kv` policy acts on the
//! global layer only: with a budget covering the context it equals `full`.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use tiny::{TinyArch, TinyOpts};
use wgkv::kv::{KvCache, KvSpec, MAX_CHUNK, Place};
use wgkv::model::{Model, Readout};
use wgkv::quant::WType;
use wgkv::reference::forward::RefModel;
use wgkv::weights::Weights;

const WINDOW: usize = 6;
/// Past one chunk plus the window, so the windowed slots (`W - 1 + MAX_CHUNK`) fill.
const CTX: usize = 600;
const PROMPT: usize = MAX_CHUNK + 3;
const DECODE: usize = 6;
const LOGITS: Tol = Tol { name: "tiny-logits", abs: 2e-3, rel: 2e-3 };

/// The tiny Gemma 3 with a `WINDOW`-token window and room for `CTX`.
fn weights(tag: &str) -> Weights {
    let path = tiny::scratch(tag).join("tiny-gemma3.gguf");
    tiny::write_tiny_gguf_opts(&path, &TinyOpts { quant: WType::Q8_0, ..TinyOpts::of(TinyArch::Gemma3, 5) });
    let mut w = Weights::open(&path).unwrap();
    w.cfg.window.as_mut().unwrap().size = WINDOW;
    w.cfg.max_seq = CTX;
    w
}

fn tokens(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + seed * 11 + 5) % tiny::VOCAB as u32).collect()
}

/// The prompt's last logits, then each decode step's.
fn gpu_run(m: &mut Model) -> Vec<Vec<f32>> {
    let mut out = vec![logits(m.forward(&tokens(PROMPT, 0), Readout::Logits).unwrap())];
    for t in tokens(DECODE, 1) {
        out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
    }
    out
}

#[test]
fn the_window_moves_the_reference_past_it_and_not_before() {
    let w = weights("window-ref");
    let run = |size: usize| {
        let mut w = Weights::open(&w.path).unwrap();
        w.cfg.window.as_mut().unwrap().size = size;
        let mut r = RefModel::new(&w).unwrap();
        tokens(10, 2).into_iter().map(|t| r.forward(t)).collect::<Vec<_>>()
    };
    let (a, b) = (run(WINDOW), run(1000));
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        match i < WINDOW {
            true => assert_eq!(d, 0.0, "position {i} is inside the window"),
            false => assert!(d > 0.05, "position {i} is past the window: logits move only {d}"),
        }
    }
}

#[test]
fn windowed_layers_follow_the_reference_far_past_the_window() {
    let w = weights("window-gpu");
    assert_eq!(wgkv::kv::window::places(&w.cfg), [Place::Local(0), Place::Global(0)]);
    for g in contexts() {
        let mut r = RefModel::new(&w).unwrap();
        r.kv_f16 = g.caps.f16;
        let mut want = vec![];
        for (i, &t) in tokens(PROMPT, 0).iter().enumerate() {
            let l = r.forward(t);
            if i + 1 == PROMPT {
                want.push(l);
            }
        }
        want.extend(tokens(DECODE, 1).into_iter().map(|t| r.forward(t)));
        let mut m = Model::load(g.clone(), &w, CTX, KvSpec::full()).unwrap();
        let got = gpu_run(&mut m);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("call {i} on {}", label(&g)), a, b, LOGITS);
        }
        // The windowed slots compacted (their length fell under the position),
        // the global layer holds everything.
        let local = m.kv.local.as_ref().unwrap();
        assert_eq!(local.slots.shape.max_seq as usize, WINDOW - 1 + MAX_CHUNK);
        assert!(local.len < m.kv.pos && local.len >= WINDOW - 1, "{} of {}", local.len, m.kv.pos);
        let rep = m.kv.report();
        assert_eq!(rep.tokens_per_layer, [local.len, PROMPT + DECODE]);
        assert!(rep.lines.iter().any(|l| l.contains("windowed layers: 1 of 2 attend their last 6 tokens")), "{:?}", rep.lines);
        // What the cache holds is what the memory check counted.
        assert_eq!(rep.allocated, KvCache::bytes_for(&KvSpec::full(), &w.cfg, CTX, &g.caps).unwrap());
    }
}

#[test]
fn policies_act_on_the_global_layers_and_equal_full_when_they_cover_the_context() {
    let w = weights("window-policies");
    for g in contexts() {
        let want = gpu_run(&mut Model::load(g.clone(), &w, CTX, KvSpec::full()).unwrap());
        for spec in ["h2o:budget=100%", "snapkv:budget=100%", "streaming:budget=100%", "quest:budget=100%,page=16,dense_layers=0", "mustafar:k=0,v=0,window=8"]
        {
            let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
            let got = gpu_run(&mut m);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{spec} call {i} on {}", label(&g)), a, b, LOGITS);
            }
            // What the memory check counted (Mustafar's pools grow within their bound).
            let (at_load, growth) =
                (KvCache::bytes_for(&m.kv.spec, &w.cfg, CTX, &g.caps).unwrap(), KvCache::growth_for(&m.kv.spec, &w.cfg, CTX, &g.caps).unwrap());
            let allocated = m.kv.report().allocated;
            assert!(
                allocated == at_load || (growth > 0 && allocated > at_load && allocated <= at_load + growth),
                "{spec}: {allocated} vs {at_load} + {growth}"
            );
        }
        // A budget under the context cuts the global layer only.
        let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse("streaming:budget=64").unwrap()).unwrap();
        gpu_run(&mut m);
        let t = m.kv.report().tokens_per_layer;
        assert!(t[1] <= 64 && t[0] >= WINDOW - 1, "{t:?}");
    }
}

/// Mistral's window covers every layer: the policy holds no layer, so the
/// cache is the windowed slots alone, `full` follows the reference past the
/// window and any other policy is refused in one line.
#[test]
fn a_model_windowed_on_every_layer() {
    let path = tiny::scratch("window-all").join("tiny-llama.gguf");
    tiny::write_tiny_gguf_opts(&path, &TinyOpts { quant: WType::Q8_0, ..TinyOpts::of(TinyArch::Llama, 5) });
    let mut w = Weights::open(&path).unwrap();
    w.cfg.window = Some(wgkv::config::Window { size: WINDOW, local: vec![true; tiny::LAYERS], rope_theta: w.cfg.rope_theta });
    w.cfg.max_seq = CTX;
    assert!(wgkv::kv::window::places(&w.cfg).iter().all(|p| matches!(p, Place::Local(_))));
    for g in contexts() {
        let mut r = RefModel::new(&w).unwrap();
        r.kv_f16 = g.caps.f16;
        let prompt = tokens(PROMPT, 0);
        let mut want = vec![prompt.iter().map(|&t| r.forward(t)).last().unwrap()];
        want.extend(tokens(DECODE, 1).into_iter().map(|t| r.forward(t)));
        let mut m = Model::load(g.clone(), &w, CTX, KvSpec::full()).unwrap();
        for (i, (a, b)) in gpu_run(&mut m).iter().zip(&want).enumerate() {
            assert_close(&format!("call {i} on {}", label(&g)), a, b, LOGITS);
        }
        assert_eq!(m.kv.report().allocated, KvCache::bytes_for(&KvSpec::full(), &w.cfg, CTX, &g.caps).unwrap());
        let e = Model::load(g.clone(), &w, CTX, KvSpec::parse("h2o").unwrap()).err().unwrap().to_string();
        assert!(e.contains("every layer of Llama attends a sliding window") && !e.contains('\n'), "{e}");
    }
}
