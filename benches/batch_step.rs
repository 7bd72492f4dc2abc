//! The batched decode step (`Model::forward_batch`, what `wgkv serve` runs
//! for concurrent requests) against one-token steps: decode tokens/s of
//! `B` sequences stepped together, for B = 2, 4, 8 and 16, each
//! sequence with its own cache, prefilled with its own prompt first.
//!
//! `cargo bench --bench batch_step`. The model is the tiny random Llama of
//! the tests unless `WGKV_BENCH_MODEL=path.gguf` names a real one;
//! `WGKV_BENCH_DEPTH` (default 32) is each sequence's prompt,
//! `WGKV_BENCH_N` (default 16) the steps timed (after 2 untimed),
//! `WGKV_BENCH_KV` the policy (default full). The line `one at a time`
//! runs the same tokens as one-token steps, sequence after sequence (what
//! the server did before), for B = 8. `WGKV_BENCH_PROFILE=1` adds the
//! kernel table of one step of 8 (`Model::profile_batch`). Without a GPU
//! adapter it prints a skip line and exits 0.

mod common;
#[path = "../tests/common/tiny.rs"]
mod tiny;

use common::env_usize;

use std::time::Instant;
use wgkv::kv::KvSpec;
use wgkv::model::{CacheSlot, Model, Readout};
use wgkv::quant::WType;
use wgkv::weights::Weights;

fn main() {
    let Some(gpu) = common::adapter_or_skip("batch_step") else { return };
    let path = match std::env::var_os("WGKV_BENCH_MODEL") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let dir = std::env::temp_dir().join(format!("wgkv-bench-batch-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temporary directory");
            let path = dir.join("tiny-q4_1.gguf");
            tiny::write_tiny_gguf(&path, 1, WType::Q4_1);
            path
        }
    };
    let (depth, steps) = (env_usize("WGKV_BENCH_DEPTH", 32), env_usize("WGKV_BENCH_N", 16));
    let spec = KvSpec::parse(&std::env::var("WGKV_BENCH_KV").unwrap_or_else(|_| "full".into())).expect("WGKV_BENCH_KV");
    let w = Weights::open(&path).expect("the model");
    let ctx = depth + steps + 4;
    let mut m = Model::load(gpu.clone(), &w, ctx, KvSpec::full()).expect("load");
    println!("{} on {}, kv {spec}, prompts of {depth} tokens, {steps} steps", path.display(), gpu.describe());
    let vocab = w.cfg.vocab_size as u32;
    let fresh = |m: &mut Model, b: usize| -> Vec<CacheSlot> {
        (0..b)
            .map(|i| {
                let mut s = m.new_cache(spec.clone(), ctx).expect("a cache");
                let prompt: Vec<u32> = (0..depth as u32).map(|t| (t * 131 + 17 * i as u32 + 1) % vocab).collect();
                m.swap_cache(&mut s);
                m.forward(&prompt, Readout::Argmax).expect("prefill");
                m.swap_cache(&mut s);
                s
            })
            .collect()
    };
    let token = |i: usize, k: usize| ((i * 7 + k * 13 + 5) as u32) % vocab;
    let mut one_token = None;
    for b in [2usize, 4, 8, 16] {
        let mut slots = fresh(&mut m, b);
        let mut run = |m: &mut Model, k: usize| {
            let mut seqs: Vec<&mut CacheSlot> = slots.iter_mut().collect();
            let tokens: Vec<u32> = (0..b).map(|i| token(i, k)).collect();
            m.forward_batch(&mut seqs, &tokens).expect("a batched step");
        };
        run(&mut m, 0);
        run(&mut m, 1);
        let t = Instant::now();
        for k in 0..steps {
            run(&mut m, k + 2);
        }
        let step = t.elapsed().as_secs_f64() / steps as f64;
        let rate = b as f64 / step;
        let gain = one_token.map_or(String::new(), |o: f64| format!("  x{:.2} the one-token steps' rate", rate / o));
        println!("batch of {b:2}: {:7.1} ms per step  {rate:6.1} tokens/s{gain}", step * 1e3);
        if b == 8 && std::env::var_os("WGKV_BENCH_PROFILE").is_some() {
            let mut seqs: Vec<&mut CacheSlot> = slots.iter_mut().collect();
            let tokens: Vec<u32> = (0..b).map(|i| token(i, steps + 2)).collect();
            let p = m.profile_batch(&mut seqs, &tokens).expect("a timed step");
            print!("{}", wgkv::profile::table(&p, "one batched step of 8"));
        }
        if b == 8 {
            let mut slots = fresh(&mut m, b);
            let t = Instant::now();
            for k in 0..steps {
                for (i, s) in slots.iter_mut().enumerate() {
                    m.swap_cache(s);
                    m.forward(&[token(i, k)], Readout::Argmax).expect("a step");
                    m.swap_cache(s);
                }
            }
            let each = t.elapsed().as_secs_f64() / (steps * b) as f64;
            one_token = Some(1.0 / each);
            println!("one at a time: {:7.1} ms per token  {:6.1} tokens/s", each * 1e3, 1.0 / each);
        }
    }
}
