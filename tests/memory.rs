//! Device memory: what a model needs (KV bytes per slot from the config),
//! that figure against the bytes a load really allocates (wgpu's allocator
//! report), the refusal with the largest context that fits, and GPU errors
//! caught by error scopes while allocating.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use wgkv::Error;
use wgkv::config::ModelConfig;
use wgkv::gpu::Gpu;
use wgkv::kv::{KvCache, KvSpec};
use wgkv::memory::{Need, check, scoped};
use wgkv::model::{Model, Readout};
use wgkv::ops::attention::AttnKind::{self, Lanes, Shared};
use wgkv::weights::Weights;

fn smollm2() -> ModelConfig {
    let mut c = tiny::tiny_config(wgkv::config::RopeStyle::Interleaved, true);
    c.n_layers = 30;
    c.n_heads = 9;
    c.n_kv_heads = 3;
    c.head_dim = 64;
    c.dim = 576;
    c.hidden_dim = 1536;
    c.vocab_size = 49152;
    c
}

#[test]
fn kv_bytes_follow_the_config() {
    let c = smollm2();
    // 30 layers x (K + V) x 3 KV heads x 64 x f16.
    let n = Need::new(&c, 1000, 8192, true, Shared);
    assert_eq!(n.kv_per_slot, 30 * 2 * 192 * 2);
    assert_eq!(n.kv, 8192 * 23040);
    assert_eq!(Need::new(&c, 1000, 8192, false, Shared).kv, 2 * n.kv, "f32 KV is twice f16");
    // CPU adapters keep prefill partials that grow with the slots.
    assert!(Need::new(&c, 1000, 8192, true, Lanes).buffers > Need::new(&c, 1000, 1024, true, Lanes).buffers);
}

/// Bytes wgpu's allocator holds on `g` once queued work is done (so dropped
/// buffers and the staging copies of queued writes are returned); None where
/// the backend keeps no allocator report (wgpu's GL backend).
fn allocated(g: &Gpu) -> Option<u64> {
    let _ = g.device.poll(wgpu::PollType::wait_indefinitely());
    g.device.generate_allocator_report().map(|r| r.total_allocated_bytes)
}

/// One load, measured: the figure `Model::load` checks against the device's
/// memory, and the bytes the allocator gained, right after the load and
/// after a 3-token prefill and one decode step.
struct Measured {
    what: String,
    need: u64,
    at_load: u64,
    running: u64,
}

impl Measured {
    /// Within 1% + 64 KiB: the figure is "about" (per-dispatch uniforms
    /// are not counted), and a miss of that size refuses or admits a
    /// context of the same size either way.
    fn off(&self, got: u64) -> Option<String> {
        let slack = self.need / 100 + (64 << 10);
        let pct = 100.0 * (got as f64 / self.need as f64 - 1.0);
        (got.abs_diff(self.need) > slack).then(|| format!("{}: the check's figure is {} bytes, the allocator holds {got} ({pct:+.1}%)", self.what, self.need))
    }
}

/// Load `w` at each context under each spec on every context that reports
/// its allocations.
fn measure(name: &str, w: &Weights, ctxs: &[usize], specs: &[&str]) -> Vec<Measured> {
    let mut out = Vec::new();
    for g in common::contexts() {
        if allocated(&g).is_none() {
            eprintln!("{}: no allocator report, not measured", common::label(&g));
            continue;
        }
        for &ctx in ctxs {
            for spec in specs {
                let kv = KvSpec::parse(spec).unwrap();
                // The inputs Model::load gives the memory check.
                let slots = KvCache::slots(&kv, ctx).unwrap();
                let need = Need::new(&w.cfg, w.total_bytes(), slots, g.caps.f16, AttnKind::for_gpu(&g)).total();
                let before = allocated(&g).unwrap();
                let mut m = Model::load(g.clone(), w, ctx, kv).unwrap();
                let at_load = allocated(&g).unwrap() - before;
                m.forward(&[1, 2, 3], Readout::Argmax).unwrap();
                m.forward(&[4], Readout::Argmax).unwrap();
                let running = allocated(&g).unwrap() - before;
                let what = format!("{name} --ctx {ctx} --kv {spec} on {}", common::label(&g));
                eprintln!("{what}: check {need}, allocated {at_load} after load, {running} running");
                out.push(Measured { what, need, at_load, running });
                drop(m);
            }
        }
    }
    out
}

/// The tiny model, and the real one where `WGKV_MODEL` names it, with the
/// contexts to load each at.
fn models() -> Vec<(&'static str, Weights, Vec<usize>)> {
    let path = tiny::scratch("memory").join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 3, wgkv::quant::WType::Q8_0);
    let mut v = vec![("tiny", Weights::open(&path).unwrap(), vec![64, tiny::MAX_SEQ])];
    if let Some(p) = common::real_model() {
        v.push(("SmolLM2-135M", Weights::open(&p).unwrap(), vec![2048, 8192]));
    }
    v
}

/// The memory check's figure against what the device really holds, for
/// the caches that are dense slots only (full, streaming): once the model
/// runs, the allocator holds the figure within 1% + 64 KiB.
#[test]
fn the_checked_figure_is_what_a_dense_cache_allocates() {
    let mut bad = Vec::new();
    for (name, w, ctxs) in models() {
        for m in measure(name, &w, &ctxs, &["full", "streaming:budget=50%"]) {
            bad.extend(m.off(m.running));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// What the figure leaves out today, for the memory-accounting rework to
/// make pass: the per-policy state beyond the dense slots (scored caches'
/// scores, Quest's page bounds, Mustafar's compressed blocks) and the load's
/// peak, when every uploaded byte is held twice until the first submit
/// (queued writes keep a staging copy). Measured on lavapipe, SmolLM2-135M
/// at --ctx 8192 (f16 KV): full holds about 96 MB (the weights) above the
/// figure right after the load; running, h2o +2.6%, quest +3.3%, mustafar +47%.
#[test]
#[ignore = "the memory figure leaves out per-policy state and the load's staging peak (memory-accounting rework)"]
fn the_checked_figure_covers_every_policy_and_the_load_peak() {
    let mut bad = Vec::new();
    for (name, w, ctxs) in models() {
        let specs = ["full", "h2o:budget=50%", "snapkv:budget=50%", "quest:budget=64", "mustafar:k=0.5,v=0.5"];
        for m in measure(name, &w, &ctxs, &specs) {
            bad.extend(m.off(m.running));
            bad.extend(m.off(m.at_load).map(|e| format!("right after the load: {e}")));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A made-up need: 100 bytes of weights and buffers plus 10 per token.
fn linear(c: usize) -> wgkv::Result<Need> {
    Ok(Need { weights: 60, kv: 10 * c as u64, kv_per_slot: 10, buffers: 40 })
}

#[test]
fn refusal_names_the_largest_context_that_fits() {
    assert!(check(linear, None, 1 << 20).is_ok(), "unknown memory: no check");
    assert!(check(linear, Some((100 + 10 * 4096, "test".into())), 4096).is_ok());
    // 2000 tokens fit: the suggestion is 1792 (whole 256-token steps).
    let e = check(linear, Some((100 + 10 * 2000, "test".into())), 4096).unwrap_err().to_string();
    assert!(e.contains("lower --ctx to at most 1792") && e.contains("--ctx 4096") && e.contains("(test)"), "{e}");
    let e = check(linear, Some((100, "test".into())), 4096).unwrap_err().to_string();
    assert!(e.contains("even a 256-token context does not fit"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn error_scopes_turn_gpu_errors_into_one_line() {
    let Some(g) = common::contexts().into_iter().next() else { return };
    let too_big = g.caps.max_buffer + 4;
    let r = scoped(&g, "making a test buffer", || {
        let _b = g.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("too big"),
            size: too_big,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(())
    });
    let e = match r {
        Err(Error::Msg(m)) => m,
        other => panic!("expected a caught validation error, got {other:?}"),
    };
    assert!(e.starts_with("GPU validation error while making a test buffer: "), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // Nothing leaks out of the scope: the next scope is clean.
    assert!(scoped(&g, "nothing", || Ok(())).is_ok());
}
