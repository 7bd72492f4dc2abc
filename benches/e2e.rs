//! End-to-end prefill and decode tokens/s, per KV policy, through the same
//! timing loop as `wgkv bench` (`measure::runner`).
//!
//! `cargo bench --bench e2e`. The model is the tiny random Llama of the
//! tests (written to a temporary GGUF at startup), so this runs anywhere in
//! seconds; set `WGKV_BENCH_MODEL=path.gguf` to measure a real model instead
//! (with `WGKV_BENCH_P`, `WGKV_BENCH_N`, `WGKV_BENCH_DEPTH` to size the tests).
//! `WGKV_BACKEND` / `WGKV_ADAPTER` pick the adapter. Policies that this build
//! cannot load yet are listed as skipped, so new ones appear here by
//! themselves. Without a GPU adapter it prints a skip line and exits 0.

mod common;
#[path = "../tests/common/tiny.rs"]
mod tiny;

use common::env_usize;

use std::path::PathBuf;
use wgkv::kv::KvSpec;
use wgkv::measure::runner::{self, Plan};
use wgkv::measure::{parse_list, table};
use wgkv::model::Model;
use wgkv::quant::WType;
use wgkv::weights::Weights;

/// Policies tried, with budgets that fit the tiny model's short tests.
const POLICIES: &[&str] = &["full", "streaming:budget=50%", "h2o:budget=50%", "quest:budget=64", "mustafar:k=0.5,v=0.5"];

fn main() {
    let Some(gpu) = common::adapter_or_skip("e2e") else { return };
    let (path, name, cleanup, plan) = match std::env::var_os("WGKV_BENCH_MODEL") {
        Some(p) => {
            let path = PathBuf::from(p);
            let depths = std::env::var("WGKV_BENCH_DEPTH").unwrap_or_else(|_| "0,512".into());
            let plan = Plan {
                n_prompt: env_usize("WGKV_BENCH_P", 512),
                n_gen: env_usize("WGKV_BENCH_N", 32),
                depths: parse_list("WGKV_BENCH_DEPTH", &depths).unwrap_or_else(|e| panic!("{e}")),
                reps: 3,
                seed: 1,
            };
            let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            (path, name, None, plan)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("wgkv-bench-e2e-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temporary directory");
            let path = dir.join("tiny-q4_1.gguf");
            tiny::write_tiny_gguf(&path, 1, WType::Q4_1);
            let plan = Plan { n_prompt: 128, n_gen: 32, depths: vec![0, 128], reps: 5, seed: 1 };
            (path, "tiny random Llama (Q4_1)".to_string(), Some(dir), plan)
        }
    };
    let weights = match Weights::open(&path) {
        Ok(w) => w,
        Err(e) => {
            println!("e2e bench: {e}");
            std::process::exit(1);
        }
    };
    let ctx = plan.ctx_needed().min(weights.cfg.max_seq);
    println!("e2e bench: {name} on {}, ctx {ctx}, {} timed repetitions per test", gpu.describe(), plan.reps);
    let mut records = Vec::new();
    for text in POLICIES {
        let spec = match KvSpec::parse(text) {
            Ok(s) => s,
            Err(e) => {
                println!("skip {text}: {e}");
                continue;
            }
        };
        let mut model = match Model::load(gpu.clone(), &weights, ctx, spec) {
            Ok(m) => m,
            Err(e) => {
                println!("skip {text}: {e}");
                continue;
            }
        };
        for case in plan.cases() {
            match runner::run_case(&mut model, &case, plan.reps, plan.seed, &mut |_| {}) {
                Ok(m) => records.push(runner::to_record(&model, &name, &m)),
                Err(e) => println!("skip {text} {}: {e}", case.name()),
            }
        }
    }
    print!("{}", table::bench_table(&records));
    if let Some(dir) = cleanup {
        let _ = std::fs::remove_dir_all(dir);
    }
}
