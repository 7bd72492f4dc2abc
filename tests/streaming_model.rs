//! `streaming` eviction in the whole forward pass, on the tiny random Llama:
//! the GPU's logits follow the CPU reference forward that drops the same
//! tokens at the same points (attention sinks + the most recent); a budget
//! covering the context gives `full`'s logits exactly; the cache never holds
//! more than the budget, and generation runs on past the context.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use wgkv::kv::KvSpec;
use wgkv::model::{Model, Output, Readout};
use wgkv::quant::WType;
use wgkv::reference::evict::streaming_keep;
use wgkv::reference::forward::{RefModel, RefQuest};
use wgkv::weights::Weights;

const LOGITS: Tol = Tol { name: "tiny-logits", abs: 2e-3, rel: 2e-3 };
const PROMPT: usize = 37;

fn prompt() -> Vec<u32> {
    (0..PROMPT as u32).map(|i| (i * 37 + 5) % 300).collect()
}

fn decode_tokens(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 53 + 11) % 300).collect()
}

fn tiny_weights(tag: &str) -> Weights {
    let path = tiny::scratch(tag).join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 11, WType::Q8_0);
    Weights::open(&path).unwrap()
}

/// The reference under StreamingLLM with `budget` slots, `sinks` sinks and
/// `slack`, fed in calls of the given sizes: before a call of n tokens that
/// would pass the budget it keeps the sinks and the most recent
/// `budget - max(n, slack) - sinks` tokens. Logits after each call.
/// With `quest`, single-token calls (decode) select pages among the slots
/// left after the compactions.
fn reference_run(w: &Weights, kv_f16: bool, calls: &[Vec<u32>], budget: usize, sinks: usize, slack: usize, quest: Option<RefQuest>) -> Vec<Vec<f32>> {
    let mut r = RefModel::new(w).unwrap();
    r.kv_f16 = kv_f16;
    let mut out = Vec::new();
    for call in calls {
        r.quest = quest.map(|q| RefQuest { active: call.len() == 1, ..q });
        let len = r.cached();
        if len + call.len() > budget {
            r.keep(&streaming_keep(len, budget - call.len().max(slack), sinks));
        }
        let mut last = Vec::new();
        for &t in call {
            last = r.forward(t);
        }
        out.push(last);
    }
    out
}

#[test]
fn small_budget_follows_the_reference_eviction() {
    let w = tiny_weights("streaming-ref");
    // Budget 24 with 2 sinks: calls of at most 21 tokens, slack 5. The prompt
    // runs as 21 + 16 tokens (the second call evicts down to 8), then 30
    // decode steps evict every 5 steps.
    let (budget, sinks, slack, max_call) = (24, 2, 5, 21);
    let mut calls: Vec<Vec<u32>> = prompt().chunks(max_call).map(|c| c.to_vec()).collect();
    calls.extend(decode_tokens(30).into_iter().map(|t| vec![t]));
    for g in contexts() {
        let want = reference_run(&w, g.caps.f16, &calls, budget, sinks, slack, None);
        let mut m = Model::load(g.clone(), &w, 64, KvSpec::parse("streaming:budget=24,sinks=2").unwrap()).unwrap();
        assert_eq!(m.kv.max_call(), max_call);
        let mut got = Vec::new();
        // The prompt in one forward call: the model splits it the same way.
        got.push(logits(m.forward(&prompt(), Readout::Logits).unwrap()));
        let want_prompt = want[1].clone();
        for call in &calls[2..] {
            got.push(logits(m.forward(call, Readout::Logits).unwrap()));
            assert!(m.kv.len <= budget, "{} slots used of a {budget} budget on {}", m.kv.len, label(&g));
        }
        let mut want_all = vec![want_prompt];
        want_all.extend(want[2..].iter().cloned());
        for (i, (gv, wv)) in got.iter().zip(&want_all).enumerate() {
            assert_close(&format!("call {i} on {}", label(&g)), gv, wv, LOGITS);
        }
        assert_eq!(m.pos(), PROMPT + 30);
        assert!(m.kv.evicted > 0);
        assert_eq!(m.kv.len + m.kv.evicted, m.pos());
    }
}

#[test]
fn quest_on_streaming_selects_among_the_kept_slots_as_the_reference_does() {
    let w = tiny_weights("streaming-quest");
    // As above (budget 24, 2 sinks, slack 5), with Quest selecting 2 pages
    // of 4 slots (1 chosen + the current one) of up to 6 in every layer at
    // each decode step: after each compaction every page's metadata must
    // describe the keys now in it.
    let (budget, sinks, slack, max_call) = (24, 2, 5, 21);
    let mut calls: Vec<Vec<u32>> = prompt().chunks(max_call).map(|c| c.to_vec()).collect();
    calls.extend(decode_tokens(30).into_iter().map(|t| vec![t]));
    for (spec, unit) in [
        ("streaming:budget=24,sinks=2+quest:budget=8,page=4,dense_layers=0", 2),
        ("streaming:budget=24,sinks=2+quest:budget=8,page=4,dense_layers=1,group=head", 1),
    ] {
        let dense_layers = if unit == 2 { 0 } else { 1 };
        let q = RefQuest { page: 4, budget_pages: 2, unit, dense_layers, width: 1.0, oracle: false, active: false, window_from: None };
        for g in contexts() {
            let want = reference_run(&w, g.caps.f16, &calls, budget, sinks, slack, Some(q));
            let plain = reference_run(&w, g.caps.f16, &calls, budget, sinks, slack, None);
            let mut m = Model::load(g.clone(), &w, 64, KvSpec::parse(spec).unwrap()).unwrap();
            let mut got = vec![logits(m.forward(&prompt(), Readout::Logits).unwrap())];
            for call in &calls[2..] {
                got.push(logits(m.forward(call, Readout::Logits).unwrap()));
                assert!(m.kv.len <= budget);
            }
            let mut differs = false;
            for (i, (gv, wv)) in got.iter().zip(&want[1..]).enumerate() {
                assert_close(&format!("{spec} call {i} on {}", label(&g)), gv, wv, LOGITS);
                differs |= wv.iter().zip(&plain[i + 1]).any(|(a, b)| (a - b).abs() > 1e-2);
            }
            assert!(differs, "{spec}: the selection changes the logits (else this test checks nothing)");
            assert!(m.kv.evicted > 0);
        }
    }
}

#[test]
fn quest_covering_a_streaming_budget_equals_streaming_alone() {
    let w = tiny_weights("streaming-quest-full");
    for g in contexts() {
        let run = |spec: &str| {
            let mut m = Model::load(g.clone(), &w, 64, KvSpec::parse(spec).unwrap()).unwrap();
            let mut out = vec![logits(m.forward(&prompt(), Readout::Logits).unwrap())];
            for t in decode_tokens(30) {
                out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
            }
            out
        };
        let want = run("streaming:budget=24,sinks=2");
        let got = run("streaming:budget=24,sinks=2+quest:budget=100%,page=4,dense_layers=0");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("step {i} on {}", label(&g)), a, b, LOGITS);
        }
    }
}

#[test]
fn budget_covering_the_context_equals_full() {
    let w = tiny_weights("streaming-full");
    for g in contexts() {
        let run = |spec: &str| {
            let mut m = Model::load(g.clone(), &w, 64, KvSpec::parse(spec).unwrap()).unwrap();
            let mut out = vec![logits(m.forward(&prompt(), Readout::Logits).unwrap())];
            for t in decode_tokens(8) {
                out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
            }
            out
        };
        assert_eq!(run("streaming:budget=100%"), run("full"), "on {}", label(&g));
    }
}

#[test]
fn generation_runs_past_the_context_within_the_budget() {
    let w = tiny_weights("streaming-long");
    let g = contexts().into_iter().next().expect("a GPU context");
    // A 64-token context and a budget of 16 slots: 200 tokens go through.
    let mut m = Model::load(g.clone(), &w, 64, KvSpec::parse("streaming:budget=25%").unwrap()).unwrap();
    assert_eq!(m.kv.attn().max_seq, 16);
    let resident_cap = 16 * m.kv.bytes_per_token() as u64;
    let allocated = m.kv.report().allocated;
    assert_eq!(allocated, Model::need(&g, &w, &m.kv.spec, 64).unwrap().kv, "what the memory check counted");
    m.forward(&prompt(), Readout::Argmax).unwrap();
    for t in decode_tokens(163) {
        assert!(m.kv.room().is_none());
        let Output::Argmax(id) = m.forward(&[t], Readout::Argmax).unwrap() else { panic!() };
        assert!((id as usize) < 300 + 1000);
        let r = m.kv.report();
        assert!(m.kv.len <= 16 && r.resident <= resident_cap);
        assert_eq!(r.allocated, allocated, "memory stays flat");
    }
    assert_eq!(m.pos(), 200);
    // `full` refuses the same run at the context's end.
    let mut f = Model::load(g, &w, 64, KvSpec::full()).unwrap();
    f.forward(&prompt(), Readout::Argmax).unwrap();
    let e = f.forward(&decode_tokens(30), Readout::Argmax).unwrap_err().to_string();
    assert!(e.contains("context full") && e.contains("streaming"), "{e}");
}

#[test]
fn unusable_streaming_options_are_errors() {
    let w = tiny_weights("streaming-opts");
    let g = contexts().into_iter().next().expect("a GPU context");
    assert_load_errors(
        &g,
        &w,
        64,
        &[
            ("streaming:budget=4,sinks=4", "no room"),
            ("streaming:alloc=pyramid", "not available"),
            ("streaming:sinks=x", "not a count"),
            ("streaming+quest+mustafar", "not available"),
            ("h2o:budget=10%+quest", "not available"),
            ("snapkv+mustafar", "not available"),
        ],
    );
}
