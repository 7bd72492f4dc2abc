//! A KV cache saved and restored (`/save`, `/load` in `wgkv chat`): for
//! every policy whose cache can be saved, a model restored into a fresh
//! cache continues exactly as the one that was saved, the saved bytes are
//! the cache's resident K/V bytes, and a state for another policy, context
//! or shape, or with bytes missing, is refused. The sampler's path over
//! every logit (`--top-k 0`) and the prefill's progress reports are here too.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::*;
use wgkv::generate::generate;
use wgkv::kv::KvSpec;
use wgkv::model::{Model, Output, Readout};
use wgkv::quant::WType;
use wgkv::sampler::{Sampler, SamplerConfig};
use wgkv::weights::Weights;

const CTX: usize = 200;

fn prompt(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 11) % 300).collect()
}

fn tiny_weights(tag: &str) -> Weights {
    let path = tiny::scratch(tag).join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 21, WType::Q8_0);
    Weights::open(&path).unwrap()
}

fn greedy(m: &mut Model, input: &[u32], n: usize) -> Vec<u32> {
    let mut s = Sampler::new(SamplerConfig::greedy());
    generate(m, &mut s, input, Some(n), &[], |_| None).unwrap().tokens
}

#[test]
fn a_restored_cache_continues_as_the_saved_one() {
    let w = tiny_weights("snapshot");
    for g in contexts() {
        // (policy, whether Quest's metadata counts in the resident bytes)
        for (spec, meta) in [
            ("full", false),
            ("streaming:budget=64", false),
            ("snapkv:budget=40", false),
            ("h2o:budget=48", false),
            ("quest:budget=32,page=8,dense_layers=0", true),
            ("streaming:budget=96+quest:budget=32,page=8,dense_layers=0", true),
            ("pyramidkv:budget=40+quest:budget=32,page=8,dense_layers=0", true),
        ] {
            let what = format!("{spec} on {}", label(&g));
            let load = || Model::load(g.clone(), &w, CTX, KvSpec::parse(spec).unwrap()).unwrap();
            let mut a = load();
            // Two turns, so eviction policies have cut and run on.
            let first = greedy(&mut a, &prompt(150), 20);
            let next = greedy(&mut a, &[first[first.len() - 1], 7, 8, 9], 1)[0];
            let (state, data) = a.kv.save(&g).unwrap();
            assert!(a.kv.can_save());
            // h2o's attention sums (f32 per kept slot and KV head) go with its rows.
            let heads = state.kv_dim / state.head_dim;
            let carried = if spec.starts_with("h2o") { 4 * heads * a.kv.tokens_per_layer().iter().sum::<usize>() } else { 0 };
            assert_eq!(state.carried_scores, carried > 0, "{what}");
            if !meta {
                assert_eq!(data.len(), a.kv.report().resident as usize + carried, "{what}: saved bytes against resident bytes");
            } else {
                assert!((data.len() as u64) < a.kv.report().resident, "{what}: Quest's metadata is rebuilt, not saved");
            }
            assert_eq!(data.len() as u64, state.data_bytes(), "{what}");
            let want = greedy(&mut a, &[next], 12);
            let mut b = load();
            b.kv.restore(&g, &state, &data).unwrap();
            assert_eq!((b.kv.len, b.kv.pos, b.kv.tokens_per_layer()), (state.len, state.pos, a_lens(&state)), "{what}");
            assert_eq!(greedy(&mut b, &[next], 12), want, "{what}: the restored cache continues differently");
            // Refusals: bytes missing, another policy or context, a foreign shape.
            let err = |m: &mut Model, st: &wgkv::kv::snapshot::KvState, d: &[u8]| match m.kv.restore(&g, st, d) {
                Ok(()) => panic!("{what}: restored {} bytes of state {st:?}", d.len()),
                Err(e) => e.to_string(),
            };
            assert!(err(&mut b, &state, &data[..data.len() - 4]).contains("does not match its own counts"), "{what}");
            let other = if spec == "full" { "streaming:budget=64" } else { "full" };
            let mut c = Model::load(g.clone(), &w, CTX, KvSpec::parse(other).unwrap()).unwrap();
            assert!(err(&mut c, &state, &data).contains("the saved cache is for --kv"), "{what}");
            let mut d = Model::load(g.clone(), &w, CTX + 8, KvSpec::parse(spec).unwrap()).unwrap();
            assert!(err(&mut d, &state, &data).contains("--ctx 200"), "{what}");
            let wrong = wgkv::kv::snapshot::KvState { head_dim: state.head_dim * 2, ..state.clone() };
            assert!(err(&mut b, &wrong, &data).contains("another shape"), "{what}");
        }
        let m = Model::load(g.clone(), &w, CTX, KvSpec::parse("mustafar").unwrap()).unwrap();
        assert!(!m.kv.can_save());
        assert!(m.kv.save(&g).unwrap_err().to_string().contains("mustafar"));
    }
}

fn a_lens(st: &wgkv::kv::snapshot::KvState) -> Vec<usize> {
    st.scored.as_ref().map_or(vec![st.len; st.n_layers], |s| s.lens.clone())
}

/// A cache saved with f16 elements loads where the cache is f32, and back.
#[test]
fn f16_and_f32_caches_load_each_other() {
    let w = tiny_weights("snapshot-f16");
    let ctx: Vec<_> = contexts().into_iter().filter(|g| g.info.backend != wgpu::Backend::Gl).collect();
    let (Some(h), Some(f)) = (ctx.iter().find(|g| g.caps.f16), ctx.iter().find(|g| !g.caps.f16)) else {
        eprintln!("SKIP: needs an f16 and an f32 context");
        return;
    };
    for (from, to) in [(h, f), (f, h)] {
        let mut a = Model::load(from.clone(), &w, CTX, KvSpec::full()).unwrap();
        let t = greedy(&mut a, &prompt(60), 1)[0];
        let (st, data) = a.kv.save(from).unwrap();
        let mut b = Model::load(to.clone(), &w, CTX, KvSpec::full()).unwrap();
        b.kv.restore(to, &st, &data).unwrap();
        let (st2, data2) = b.kv.save(to).unwrap();
        assert_eq!(st2.len, 60);
        // f16 -> f32 is exact; f32 -> f16 rounds, and rounds back equal.
        let as_f32 = |st: &wgkv::kv::snapshot::KvState, d: &[u8]| -> Vec<f32> {
            match st.elem_bytes {
                2 => d.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                _ => d.chunks_exact(4).map(|b| half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_f32()).collect(),
            }
        };
        assert_eq!(as_f32(&st, &data), as_f32(&st2, &data2));
        let a_next = greedy(&mut a, &[t], 6);
        let b_next = greedy(&mut b, &[t], 6);
        assert_eq!(a_next.len(), b_next.len());
    }
}

/// `--top-k 0` draws from the whole vocabulary: at a high temperature the
/// draws land far outside the 64 candidates the GPU would otherwise keep.
#[test]
fn top_k_zero_samples_the_whole_vocabulary() {
    let w = tiny_weights("topk0");
    let Some(g) = contexts().into_iter().next() else { return };
    let mut m = Model::load(g.clone(), &w, CTX, KvSpec::full()).unwrap();
    let p = prompt(20);
    let Output::Logits(logits) = m.forward(&p, Readout::Logits).unwrap() else { panic!("logits") };
    let rank = |id: u32| logits.iter().filter(|&&l| l > logits[id as usize]).count();
    let mut ranks = Vec::new();
    for seed in 0..40 {
        m.reset();
        let cfg = SamplerConfig { temperature: 50.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..SamplerConfig::default() };
        let mut s = Sampler::new(cfg);
        assert!(s.wants_every_logit());
        ranks.push(rank(generate(&mut m, &mut s, &p, Some(1), &[], |_| None).unwrap().tokens[0]));
    }
    let beyond = ranks.iter().filter(|&&r| r >= 64).count();
    assert!(beyond >= 10, "draws ranked {ranks:?}: the sampler did not see the whole vocabulary");
}

/// A prompt of several chunks reports each one to `on_prefill`.
#[test]
fn a_long_prefill_reports_each_chunk() {
    let path = tiny::scratch("prefill-progress").join("tiny.gguf");
    let mut file = tiny::tiny_gguf_writer(&tiny::TinyOpts { quant: WType::Q8_0, ..tiny::TinyOpts::new(21) });
    file.add("llama.context_length", wgkv::gguf::Value::U32(2048)).write(&path).unwrap();
    let w = Weights::open(&path).unwrap();
    let Some(g) = contexts().into_iter().next() else { return };
    let mut m = Model::load(g.clone(), &w, 2048, KvSpec::full()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    m.on_prefill = Some(Box::new(move |done, all| log.lock().unwrap().push((done, all))));
    let n = 2 * wgkv::model::MAX_CHUNK + 100;
    m.forward(&prompt(n), Readout::Argmax).unwrap();
    let c = wgkv::model::MAX_CHUNK;
    assert_eq!(*seen.lock().unwrap(), [(c, n), (2 * c, n), (n, n)]);
    // A one-chunk call reports nothing.
    seen.lock().unwrap().clear();
    m.reset();
    m.forward(&prompt(100), Readout::Argmax).unwrap();
    assert!(seen.lock().unwrap().is_empty());
}
