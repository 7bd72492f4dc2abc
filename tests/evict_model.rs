//! Scored eviction (h2o, vatp, knorm, snapkv, pyramidkv, dynamickv) in the
//! whole forward pass, on the tiny random Llama (2 layers: not a multiple of
//! DynamicKV's m = 4): after a prompt each layer keeps exactly the slots the
//! reference selection picks from the GPU's scores, per-layer budgets follow
//! the allocation arithmetic, the logits then follow the CPU reference
//! forward holding the same per-head slots, the budget holds, and a budget
//! covering the context equals `full`.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use wgkv::kv::KvSpec;
use wgkv::kv::eviction::scored::{self, Scored};
use wgkv::model::{Model, Readout};
use wgkv::quant::WType;
use wgkv::reference::evict::{global_counts, select_keep};
use wgkv::reference::forward::{RefModel, RefQuest};
use wgkv::weights::Weights;

const LOGITS: Tol = Tol { name: "tiny-logits", abs: 2e-3, rel: 2e-3 };
const PROMPT: usize = 45;
const CTX: usize = 128;

fn prompt(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 5 + seed * 11) % 300).collect()
}

fn tiny_weights(tag: &str) -> Weights {
    let path = tiny::scratch(tag).join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 12, WType::Q8_0);
    Weights::open(&path).unwrap()
}

/// Per layer and KV head, the slots the cache kept at its last cut.
fn kept(g: &wgkv::gpu::Gpu, s: &Scored, layers: usize, heads: usize) -> Vec<Vec<Vec<usize>>> {
    (0..layers)
        .map(|l| {
            let (list, counts) = s.kept(l);
            let c = g.read_u32(counts, heads);
            let all = g.read_u32(list, heads * CTX);
            (0..heads).map(|h| all[h * CTX..h * CTX + c[h] as usize].iter().map(|&x| x as usize).collect()).collect()
        })
        .collect()
}

/// `spec`'s model and the CPU reference, both after the same prompt
/// (the model has made its cut; the reference holds every token).
fn prefilled(g: &std::sync::Arc<wgkv::gpu::Gpu>, w: &Weights, spec: &str) -> (Model, RefModel) {
    let mut m = Model::load(g.clone(), w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
    let mut r = RefModel::new(w).unwrap();
    r.kv_f16 = g.caps.f16;
    let p = prompt(PROMPT, 3);
    m.forward(&p, Readout::Logits).unwrap();
    for &t in &p {
        r.forward(t);
    }
    (m, r)
}

#[test]
fn every_preset_with_a_covering_budget_equals_full() {
    let w = tiny_weights("evict-full");
    for g in contexts() {
        let run = |spec: &str| {
            let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
            let mut out = vec![logits(m.forward(&prompt(PROMPT, 0), Readout::Logits).unwrap())];
            for t in prompt(6, 1) {
                out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
            }
            out.push(logits(m.forward(&prompt(20, 2), Readout::Logits).unwrap()));
            assert_eq!(m.kv.evicted, 0, "{spec}");
            out
        };
        let full = run("full");
        for spec in [
            "h2o:budget=100%",
            "vatp:budget=128",
            "knorm:budget=100%",
            "snapkv:budget=100%",
            "pyramidkv:budget=100%",
            "dynamickv:budget=100%",
            "vatp:budget=100%,alloc=dynamic",
        ] {
            assert_eq!(run(spec), full, "{spec} on {}", label(&g));
        }
    }
}

#[test]
fn kept_slots_budgets_and_logits_follow_the_reference() {
    let w = tiny_weights("evict-ref");
    let (layers, heads) = (tiny::LAYERS, tiny::KV_HEADS);
    for g in contexts() {
        // (spec, budget per layer): each window policy, knorm, h2o and vatp.
        for (spec, budget) in [
            ("snapkv:budget=20", 20usize),
            ("pyramidkv:budget=20", 20),
            ("dynamickv:budget=20", 20),
            ("knorm:budget=16", 16),
            ("snapkv:budget=24,window=5,kernel=3,pool=avg,alloc=dynamic", 24),
            ("h2o:budget=20", 20),
            ("vatp:budget=30,sinks=3", 30),
        ] {
            let what = format!("{spec} on {}", label(&g));
            let (mut m, mut r) = prefilled(&g, &w, spec);
            let s = m.kv.scored().unwrap();
            let o = s.opts;
            let w_len = o.window;
            // Budgets: uniform, pyramid, or DynamicKV's from the GPU's scores.
            let ms = CTX;
            let scores = g.read_f32(s.scores(), layers * heads * ms);
            let layer_scores = |l: usize, h: usize| scores[(l * heads + h) * ms..(l * heads + h + 1) * ms].to_vec();
            let (base, limit) = (budget - w_len, PROMPT - w_len);
            let want_budgets: Vec<usize> = match o.alloc {
                scored::Alloc::Uniform => vec![budget; layers],
                scored::Alloc::Pyramid => scored::pyramid_budgets(base, limit, layers).iter().map(|b| b + w_len).collect(),
                scored::Alloc::Dynamic => {
                    let nested: Vec<Vec<Vec<f32>>> = (0..layers).map(|l| (0..heads).map(|h| layer_scores(l, h)).collect()).collect();
                    let updates: Vec<Vec<usize>> =
                        scored::update_layers(layers).into_iter().map(|u| global_counts(&nested[..=u], &vec![limit; u + 1], base * heads * (u + 1))).collect();
                    scored::dynamic_budgets(&updates, base, (scored::R_MAX * base).min(limit), limit, layers).iter().map(|b| b + w_len).collect()
                }
            };
            assert_eq!(s.budgets, want_budgets, "budgets: {what}");
            assert_eq!(s.lens, want_budgets, "lengths: {what}");
            assert!(s.lens.iter().sum::<usize>() <= budget * layers, "{:?} over {budget} per layer: {what}", s.lens);
            if o.alloc != scored::Alloc::Uniform {
                assert!(s.lens[0] != s.lens[1], "{what}: the allocation should differ per layer here: {:?}", s.lens);
            }
            // Kept slots: the reference selection over the GPU's scores.
            let got = kept(&g, s, layers, heads);
            assert!((0..layers).any(|l| got[l][0] != got[l][heads - 1]), "{what}: heads should keep different slots here");
            for (l, got_l) in got.iter().enumerate() {
                let keep = s.budgets[l];
                let recent = match o.ranking {
                    scored::Ranking::Attention | scored::Ranking::ValueAware => o.recent.unwrap_or(keep / 2).max(w_len),
                    _ => w_len,
                };
                let want: Vec<Vec<usize>> = (0..heads).map(|h| select_keep(&layer_scores(l, h), PROMPT, keep, o.sinks, recent)).collect();
                assert_eq!(*got_l, want, "layer {l} kept: {what}");
                r.keep_heads(l, &want);
            }
            // Decode follows the reference holding the same slots (window
            // policies and knorm do not evict while decoding).
            if !o.evicts_in_decode() {
                for t in prompt(5, 4) {
                    let gl = logits(m.forward(&[t], Readout::Logits).unwrap());
                    assert_close(&format!("decode: {what}"), &gl, &r.forward(t), LOGITS);
                }
            }
        }
    }
}

#[test]
fn h2o_and_vatp_hold_their_budgets_while_decoding_and_resident_bytes_drop() {
    let w = tiny_weights("evict-decode");
    let g = contexts().into_iter().next().expect("a GPU context");
    for spec in ["h2o:budget=25%", "vatp:budget=32,alloc=pyramid", "vatp:budget=25%,alloc=dynamic", "snapkv:budget=25%"] {
        let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
        let full_bytes = CTX * m.kv.bytes_per_token();
        m.forward(&prompt(100, 5), Readout::Argmax).unwrap();
        let budgets = m.kv.scored().unwrap().budgets.clone();
        assert!(budgets.iter().sum::<usize>() <= 32 * 2, "{spec}: {budgets:?}");
        let decodes = m.kv.scored().unwrap().opts.evicts_in_decode();
        // 300 tokens through a 128-token context: chat turns and decode steps.
        for turn in 0..5 {
            for t in prompt(40, turn) {
                m.forward(&[t], Readout::Argmax).unwrap();
                let s = m.kv.scored().unwrap();
                if decodes {
                    assert!(s.lens.iter().zip(&s.budgets).all(|(l, b)| l <= b), "{spec}: {:?} over {:?}", s.lens, s.budgets);
                }
                assert!(s.lens.iter().all(|&l| l <= CTX));
            }
            m.forward(&prompt(20, turn + 7), Readout::Argmax).unwrap();
            let s = m.kv.scored().unwrap();
            assert!(s.lens.iter().zip(&s.budgets).all(|(l, b)| l <= b), "{spec} after turn {turn}: {:?} over {:?}", s.lens, s.budgets);
            assert!(m.kv.report().resident as usize * 100 <= full_bytes * 26, "{spec}: {} of {full_bytes} bytes resident", m.kv.report().resident);
        }
        assert_eq!(m.pos(), 100 + 5 * 60);
        assert!(m.kv.evicted > 0);
    }
}

#[test]
fn dynamic_allocation_arithmetic_by_hand() {
    // Six layers (not a multiple of m = 4): updates after layers 3 and 5.
    assert_eq!(scored::update_layers(6), vec![3, 5]);
    assert_eq!(scored::update_layers(8), vec![3, 7]);
    assert_eq!(scored::update_layers(2), vec![1]);
    // base 10 per layer (60 in all), b_max 40, limit 50.
    // Update 1 (layers 0..=3, counts 10, 20, 0, 10 of 40): b = 40·c/40 =
    // 10, 20, 0, 10 (sum 40); rescaled ⌊b·60/40⌋ = 15, 30, 0, 15 (sum 60, no
    // remainder). Update 2 (counts 6, 6, 6, 6, 30, 6 of 60): b = 4, 4, 4, 4,
    // 20, 4 (sum 40) → 6, 6, 6, 6, 30, 6. Minimum over updates: 6, 6, 0, 6,
    // 30, 6 (layers 4 and 5 start at b_max 40).
    let b = scored::dynamic_budgets(&[vec![10, 20, 0, 10], vec![6, 6, 6, 6, 30, 6]], 10, 40, 50, 6);
    assert_eq!(b, vec![6, 6, 0, 6, 30, 6]);
    // The rounding remainder goes to the update's last layer; the cap holds.
    let b = scored::dynamic_budgets(&[vec![1, 1, 1]], 10, 40, 25, 3);
    // b = ⌊40/3⌋ = 13 each (39); ⌊13·30/39⌋ = 10 each; remainder 0.
    assert_eq!(b, vec![10, 10, 10]);
    let b = scored::dynamic_budgets(&[vec![1, 2]], 7, 30, 100, 2);
    // b = 10, 20 (30); ⌊10·14/30⌋ = 4, ⌊20·14/30⌋ = 9 (13), remainder 1 → 4, 10.
    assert_eq!(b, vec![4, 10]);
    // PyramidKV: base 100 over 5 layers of 1000: 195 down to 5 in steps of 47.5.
    assert_eq!(scored::pyramid_budgets(100, 1000, 5), vec![195, 147, 100, 52, 5]);
    // The top capped by the context: max = 150, min = 2·100 − 150 = 50.
    assert_eq!(scored::pyramid_budgets(100, 150, 3), vec![150, 100, 50]);
    assert_eq!(scored::pyramid_budgets(200, 150, 3), vec![150; 3]);
}

#[test]
fn unusable_scored_options_are_errors() {
    let w = tiny_weights("evict-opts");
    let g = contexts().into_iter().next().expect("a GPU context");
    assert_load_errors(
        &g,
        &w,
        CTX,
        &[
            ("snapkv:budget=8", "no room"),
            ("vatp:budget=20", "no room"),
            ("h2o:window=4", "no option 'window'"),
            ("knorm:recent=4", "no option 'recent'"),
            ("snapkv:kernel=4", "odd"),
            ("snapkv:pool=min", "not max or avg"),
            ("pyramidkv:alloc=greedy", "not uniform, pyramid or dynamic"),
            ("snapkv:window=0", "at least 1"),
            ("h2o+mustafar", "not available"),
        ],
    );
}

#[test]
fn a_shared_prefill_equals_separate_runs() {
    let w = tiny_weights("evict-shared");
    let groups: [&[&str]; 3] = [
        &["h2o:budget=30%", "vatp:budget=20%", "vatp:budget=25%,alloc=dynamic", "h2o:budget=10,recent=3"],
        &["snapkv:budget=25%", "pyramidkv:budget=30%", "dynamickv:budget=20%", "snapkv:budget=12,alloc=dynamic"],
        &["full", "knorm:budget=30%", "knorm:budget=12"],
    ];
    for g in contexts() {
        // Per model: logits after the prompt, 4 decode steps and a second
        // prompt, the tokens kept per layer and the kept slots.
        let rest = |m: &mut Model, first: Vec<f32>| {
            let mut out = vec![first];
            for t in prompt(4, 1) {
                out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
            }
            out.push(logits(m.forward(&prompt(20, 2), Readout::Logits).unwrap()));
            let kept = m.kv.scored().map(|s| kept(&g, s, 2, 2));
            (out, m.kv.tokens_per_layer(), m.kv.evicted, kept)
        };
        for group in groups {
            let load = |spec: &str| Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
            let alone: Vec<_> = group
                .iter()
                .map(|spec| {
                    let mut m = load(spec);
                    let first = logits(m.forward(&prompt(PROMPT, 0), Readout::Logits).unwrap());
                    rest(&mut m, first)
                })
                .collect();
            let mut models: Vec<Model> = group.iter().map(|spec| load(spec)).collect();
            let (lead, forks) = models.split_first_mut().unwrap();
            let first = logits(lead.forward_shared(&prompt(PROMPT, 0), Readout::Logits, forks).unwrap());
            for (i, m) in models.iter_mut().enumerate() {
                let shared = rest(m, first.clone());
                assert_eq!(shared, alone[i], "{} on {}", group[i], label(&g));
            }
            assert!(alone.iter().skip(1).any(|a| a.1 != alone[0].1), "the group's cuts differ: {group:?}");
        }
        // Policies whose prefills differ are refused, as is a fork with tokens.
        let mut lead = Model::load(g.clone(), &w, CTX, KvSpec::parse("full").unwrap()).unwrap();
        for spec in ["h2o:budget=20", "snapkv:budget=20", "streaming:budget=40"] {
            let mut fork = vec![Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap()];
            let e = lead.forward_shared(&prompt(PROMPT, 0), Readout::Argmax, &mut fork).unwrap_err();
            assert!(e.to_string().contains("shared prefill"), "{spec}: {e}");
        }
        let mut fork = vec![Model::load(g.clone(), &w, CTX, KvSpec::parse("knorm:budget=20").unwrap()).unwrap()];
        fork[0].forward(&prompt(3, 4), Readout::Argmax).unwrap();
        assert!(lead.forward_shared(&prompt(PROMPT, 0), Readout::Argmax, &mut fork).is_err());
    }
}

#[test]
fn quest_selects_among_the_slots_each_layer_kept() {
    let w = tiny_weights("evict-quest");
    let (layers, heads) = (tiny::LAYERS, tiny::KV_HEADS);
    for g in contexts() {
        // After the prompt each layer keeps its own slots per head; Quest
        // then picks 2 of its pages of 4 (1 chosen + the current one) at
        // every decode step, as the reference does over the same slots.
        for (spec, unit, dense_layers) in [
            ("snapkv:budget=20+quest:budget=8,page=4,dense_layers=0", 2, 0),
            ("pyramidkv:budget=20+quest:budget=8,page=4,dense_layers=0", 2, 0),
            ("knorm:budget=16+quest:budget=8,page=4,dense_layers=1,group=head", 1, 1),
        ] {
            let what = format!("{spec} on {}", label(&g));
            let (mut m, mut r) = prefilled(&g, &w, spec);
            let s = m.kv.scored().unwrap();
            let got = kept(&g, s, layers, heads);
            for (l, keep) in got.iter().enumerate() {
                r.keep_heads(l, keep);
            }
            let mut plain = r.clone();
            r.quest = Some(RefQuest { page: 4, budget_pages: 2, unit, dense_layers, width: 1.0, oracle: false, active: true, window_from: None });
            let mut differs = false;
            for t in prompt(6, 4) {
                let gl = logits(m.forward(&[t], Readout::Logits).unwrap());
                let want = r.forward(t);
                assert_close(&format!("decode: {what}"), &gl, &want, LOGITS);
                differs |= want.iter().zip(&plain.forward(t)).any(|(a, b)| (a - b).abs() > 1e-2);
            }
            assert!(differs, "{what}: the selection changes the logits (else this test checks nothing)");
            assert!(m.kv.report().read_per_step < m.kv.report().resident, "{what}: a step reads less than is kept");
        }
        // A budget covering every kept slot reads them all: the scored policy alone.
        let run = |spec: &str| {
            let mut m = Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
            let mut out = vec![logits(m.forward(&prompt(PROMPT, 0), Readout::Logits).unwrap())];
            for t in prompt(6, 1) {
                out.push(logits(m.forward(&[t], Readout::Logits).unwrap()));
            }
            out
        };
        let (want, got) = (run("snapkv:budget=20"), run("snapkv:budget=20+quest:budget=100%,page=4,dense_layers=0"));
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("covering quest, step {i} on {}", label(&g)), a, b, LOGITS);
        }
    }
}
