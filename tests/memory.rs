//! Device memory: what a model needs (KV bytes per slot from the config),
//! that figure against the bytes a load really allocates (wgpu's allocator
//! report), the refusal with the largest context that fits, and GPU errors
//! caught by error scopes while allocating.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use wgkv::Error;
use wgkv::config::ModelConfig;
use wgkv::gpu::{Caps, Gpu};
use wgkv::kv::KvSpec;
use wgkv::memory::{Need, check, scoped};
use wgkv::model::{Model, Readout};
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

fn caps(f16: bool, cpu: bool) -> Caps {
    Caps {
        f16,
        subgroups: false,
        subgroup_min: 0,
        subgroup_max: 0,
        timestamps: false,
        max_storage_binding: 1 << 30,
        max_buffer: 1 << 30,
        max_workgroup_storage: 16384,
        max_invocations: 256,
        max_storage_buffers: 8,
        cpu,
    }
}

#[test]
fn kv_bytes_follow_the_config() {
    let c = smollm2();
    let need = |spec: &str, ctx: usize, f16: bool, cpu: bool| Need::new(&c, 1000, &KvSpec::parse(spec).unwrap(), ctx, &caps(f16, cpu)).unwrap();
    // 30 layers x (K + V) x 3 KV heads x 64 x f16.
    let n = need("full", 8192, true, false);
    assert_eq!(n.kv_per_slot, 30 * 2 * 192 * 2);
    assert!(n.kv >= 8192 * 23040 && n.kv < 8192 * 23040 * 101 / 100, "the dense slots and a little scratch: {}", n.kv);
    assert!(need("full", 8192, false, false).kv > 2 * n.kv * 99 / 100, "f32 KV is about twice f16");
    // CPU adapters keep prefill partials that grow with the slots.
    assert!(need("full", 8192, true, true).kv > need("full", 1024, true, true).kv + 7168 * 23040);
    // Every policy's state is in the figure, beside its dense slots.
    assert!(need("h2o:budget=50%", 8192, true, false).kv > need("streaming:budget=50%", 8192, true, false).kv);
    assert!(need("quest:budget=64", 8192, true, false).kv > n.kv);
    assert!(need("mustafar", 8192, true, false).kv > need("full", 4096, true, false).kv / 100, "mustafar counts its stores");
    assert_eq!(n.staging, 1000, "the staging peak is bounded by the weights");
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
    /// The check's figure less what the cache may grow by later.
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
                // The figure Model::load checks, less the load's transient
                // staging peak (bounded by Gpu::upload_staged, and gone by
                // the time the load returns, when the allocator is read).
                let Ok(n) = Model::need(&g, w, &kv, ctx) else {
                    eprintln!("{name} --ctx {ctx} --kv {spec}: refused at this context, not measured");
                    continue;
                };
                let need = n.total() - n.staging - n.kv_growth;
                let before = allocated(&g).unwrap();
                let mut m = Model::load(g.clone(), w, ctx, kv).unwrap();
                let at_load = allocated(&g).unwrap() - before;
                // The cache's own report of what it holds is the checked figure.
                assert_eq!(m.kv.report().allocated, n.kv, "{name} --ctx {ctx} --kv {spec}: the report's allocated bytes");
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

/// The figure against the allocator for every policy and combination:
/// each part reports the bytes it allocates (`KvCache::bytes_for`), so
/// right after the load and once running the allocator holds the figure
/// within 1% + 64 KiB. The load's staging peak is kept to
/// `gpu::STAGING_LIMIT` by submitting queued writes as they pile up, and
/// the load submits the last of them before it returns: `at_load` would
/// hold every weight twice without that. (Mustafar's pools grow later, as
/// blocks are compressed; a 4-token run compresses none.)
#[test]
fn the_checked_figure_covers_every_policy_and_the_load_peak() {
    let mut bad = Vec::new();
    for (name, w, ctxs) in models() {
        let specs = [
            "full",
            "streaming:budget=50%",
            "h2o:budget=50%",
            "snapkv:budget=50%",
            "pyramidkv:budget=50%,alloc=pyramid",
            "dynamickv:budget=50%",
            "quest:budget=64",
            "streaming:budget=50%+quest:budget=64",
            "snapkv:budget=50%+quest:budget=64",
            "mustafar:k=0.5,v=0.5",
            "streaming:budget=50%+mustafar:k=0.5,v=0.5",
            "mustafar:k=0.5,v=0.5+quest:budget=128",
        ];
        for m in measure(name, &w, &ctxs, &specs) {
            bad.extend(m.off(m.running));
            bad.extend(m.off(m.at_load).map(|e| format!("right after the load: {e}")));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Mustafar's pools grow as blocks are compressed: the cache's report
/// follows the allocator as they grow, and the growth stays within the
/// bound the memory check adds (`Need::kv_growth`).
#[test]
fn mustafar_growth_is_reported_and_within_the_checked_bound() {
    let path = tiny::scratch("memory-growth").join("tiny.gguf");
    tiny::write_tiny_gguf(&path, 3, wgkv::quant::WType::Q8_0);
    let w = Weights::open(&path).unwrap();
    for g in common::contexts() {
        if allocated(&g).is_none() {
            continue;
        }
        for spec in ["mustafar:k=0.5,v=0.5", "mustafar:k=0,v=0,window=0"] {
            let kv = KvSpec::parse(spec).unwrap();
            let n = Model::need(&g, &w, &kv, tiny::MAX_SEQ).unwrap();
            let mut m = Model::load(g.clone(), &w, tiny::MAX_SEQ, kv).unwrap();
            let (base, report) = (allocated(&g).unwrap(), m.kv.report().allocated);
            let ids: Vec<u32> = (0..250).map(|i| (i * 7 % 290) as u32 + 3).collect();
            m.forward(&ids, Readout::Argmax).unwrap();
            m.forward(&[5], Readout::Argmax).unwrap();
            let grown = m.kv.report().allocated - report;
            assert!(grown > 0, "{spec}: 250 tokens should outgrow the first pools");
            // Replaced pools are dropped; the allocator may still hold the recorded plans' new dispatches.
            let device = allocated(&g).unwrap() - base;
            assert!(device.abs_diff(grown) < 64 << 10, "{spec}: the report grew {grown}, the allocator {device}");
            assert!(grown <= n.kv_growth, "{spec}: grew {grown} past the checked bound {}", n.kv_growth);
        }
    }
}

/// A made-up need: 100 bytes of weights and buffers plus 10 per token.
fn linear(c: usize) -> wgkv::Result<Need> {
    Ok(Need { weights: 60, kv: 10 * c as u64, kv_growth: 0, kv_per_slot: 10, buffers: 40, staging: 0 })
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
