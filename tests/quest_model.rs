//! Quest in the whole forward pass, on the tiny random Llama: with a small
//! budget the GPU's logits follow the CPU reference forward that selects
//! pages by the same rule (prefill dense, decode steps selective); a budget
//! covering the context gives `full`'s logits; the KV bytes a step reads drop
//! and the page metadata is counted as resident.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use wgkv::kv::KvSpec;
use wgkv::model::{Model, Readout};
use wgkv::quant::WType;
use wgkv::reference::forward::{RefModel, RefQuest};
use wgkv::weights::Weights;

const LOGITS: Tol = Tol { name: "tiny-logits", abs: 2e-3, rel: 2e-3 };

const PROMPT: usize = 37;
const DECODE: [u32; 8] = [7, 250, 3, 99, 12, 180, 44, 2];

fn prompt() -> Vec<u32> {
    (0..PROMPT as u32).map(|i| (i * 37 + 5) % 300).collect()
}

/// Logits after the prompt and after each decode token, under `spec`.
fn run(g: &std::sync::Arc<wgkv::gpu::Gpu>, w: &Weights, spec: &str) -> (Vec<Vec<f32>>, Model) {
    let mut m = Model::load(g.clone(), w, 64, KvSpec::parse(spec).unwrap()).unwrap();
    let mut out = vec![logits(m.forward(&prompt(), Readout::Logits).unwrap())];
    for t in DECODE {
        out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
    }
    (out, m)
}

fn run_reference(w: &Weights, kv_f16: bool, quest: RefQuest) -> Vec<Vec<f32>> {
    let mut r = RefModel::new(w).unwrap();
    r.kv_f16 = kv_f16;
    r.quest = Some(RefQuest { active: false, ..quest });
    let mut last = Vec::new();
    for t in prompt() {
        last = r.forward(t);
    }
    r.quest = Some(RefQuest { active: true, ..quest });
    let mut out = vec![last];
    for t in DECODE {
        out.push(r.forward(t));
    }
    out
}

fn tiny_weights(tag: &str) -> Weights {
    let path = tiny::scratch(tag).join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 11, WType::Q8_0);
    Weights::open(&path).unwrap()
}

#[test]
fn small_budget_follows_the_reference_selection() {
    let w = tiny_weights("quest-ref");
    // 37..45 tokens in pages of 4: 10..12 pages, 3 attended (2 chosen + the
    // current one); the tiny model has 4 query heads over 2 KV heads.
    // width: Quest's bound (1), the box centre alone (0), a share between.
    for (spec, unit, dense, width) in [
        ("quest:budget=12,page=4,dense_layers=0", 2, 0, 1.0),
        ("quest:budget=12,page=4,dense_layers=1,group=head", 1, 1, 1.0),
        ("quest:budget=12,page=4,dense_layers=0,width=0", 2, 0, 0.0),
        ("quest:budget=12,page=4,dense_layers=1,group=head,width=0.25", 1, 1, 0.25),
    ] {
        let q = RefQuest { page: 4, budget_pages: 3, unit, dense_layers: dense, width, oracle: false, active: false, window_from: None };
        for g in contexts() {
            let want = run_reference(&w, g.caps.f16, q);
            let (got, _) = run(&g, &w, spec);
            let (full, _) = run(&g, &w, "full");
            let mut differs = false;
            for (i, ((a, r), f)) in got.iter().zip(&want).zip(&full).enumerate() {
                assert_close(&format!("{spec} step {i} vs reference on {}", label(&g)), a, r, LOGITS);
                differs |= a.iter().zip(f).any(|(x, y)| (x - y).abs() > 0.05);
            }
            assert!(differs, "{spec}: selection never changed the logits (is it active?)");
        }
    }
}

#[test]
fn a_budget_covering_the_context_equals_full() {
    let w = tiny_weights("quest-full");
    for spec in [
        "quest:budget=64,page=4,dense_layers=0",
        "quest:budget=48,page=16,dense_layers=0,group=head",
        "quest:budget=100%,dense_layers=1",
        "quest:budget=4000000000,page=5,dense_layers=0", // clamped to the context
        "quest:budget=64,page=4,dense_layers=0,width=0",
    ] {
        for g in contexts() {
            let (got, m) = run(&g, &w, spec);
            let (want, f) = run(&g, &w, "full");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{spec} step {i} vs full on {}", label(&g)), a, b, LOGITS);
            }
            // Every token is read, plus the page metadata resident.
            assert_eq!(m.kv.len, f.kv.len);
            assert!(m.kv.report().resident > f.kv.report().resident);
            assert_eq!(m.kv.report().read_per_step, f.kv.report().read_per_step, "{spec}");
        }
    }
}

#[test]
fn bytes_read_per_step_follow_the_budget() {
    let w = tiny_weights("quest-bytes");
    let Some(g) = contexts().into_iter().next() else { return };
    let elem = if g.caps.f16 { 2 } else { 4 };
    let (_, m) = run(&g, &w, "quest:budget=12,page=4,dense_layers=1");
    let (_, f) = run(&g, &w, "full");
    let len = PROMPT + DECODE.len(); // 45 slots: 12 pages, the last holding 1
    let row = tiny::HEAD_DIM * elem;
    let dense_layer = len * 2 * tiny::KV_HEADS * row;
    assert_eq!(f.kv.report().read_per_step, (2 * dense_layer) as u64);
    // Sparse layer, shared selection (2 units = KV heads): 2 full pages + 1
    // slot of K and V per unit, and kmax + kmin of the 11 scored pages.
    let sparse = 2 * (2 * (2 * 4 + 1) + 11 * 2) * row;
    assert_eq!(m.kv.report().read_per_step, (dense_layer + sparse) as u64);
    // Metadata: kmax + kmin per KV head and page, for the sparse layer.
    assert_eq!(m.kv.report().resident - f.kv.report().resident, (2 * tiny::KV_HEADS * 12 * row) as u64);
}

#[test]
fn quest_options_are_checked() {
    let w = tiny_weights("quest-opts");
    let Some(g) = contexts().into_iter().next() else { return };
    assert_load_errors(
        &g,
        &w,
        64,
        &[
            ("quest:budget=2,page=4", "below one page"),
            ("quest:group=pair", "group=pair"),
            ("quest:page=x", "page=x"),
            ("quest:width=1.5", "width=1.5 is not a number in 0..=1"),
            ("quest:width=x", "width=x"),
            ("quest:width=nan", "width=nan"),
            ("h2o:budget=10+quest", "not available"),
        ],
    );
}

#[test]
fn a_prefill_shared_with_full_equals_separate_runs() {
    let w = tiny_weights("quest-shared");
    // Pages of 4 over 37..45 tokens, 3 attended: the selection matters, so
    // a fork whose page metadata were not rebuilt from the copied keys
    // would select other pages.
    let group = ["full", "quest:budget=12,page=4,dense_layers=0", "quest:budget=12,page=4,dense_layers=1,group=head,width=0.25"];
    for g in contexts() {
        let load = |spec: &str| Model::load(g.clone(), &w, 64, KvSpec::parse(spec).unwrap()).unwrap();
        let alone: Vec<Vec<Vec<f32>>> = group.iter().map(|spec| run(&g, &w, spec).0).collect();
        let mut models: Vec<Model> = group.iter().map(|spec| load(spec)).collect();
        let (lead, forks) = models.split_first_mut().unwrap();
        let first = logits(lead.forward_shared(&prompt(), Readout::Logits, forks).unwrap());
        for (i, m) in models.iter_mut().enumerate() {
            let mut shared = vec![first.clone()];
            for t in DECODE {
                shared.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
            }
            assert_eq!(shared, alone[i], "{} on {}", group[i], label(&g));
        }
        assert!(alone[1] != alone[0] && alone[2] != alone[0], "the selection changed nothing");
    }
}
