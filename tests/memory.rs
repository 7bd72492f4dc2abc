//! Device memory: what a model needs (KV bytes per slot from the config),
//! the refusal with the largest context that fits, and GPU errors caught by
//! error scopes while allocating.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use wgkv::config::ModelConfig;
use wgkv::memory::{check, scoped, Need};
use wgkv::ops::attention::AttnKind::{Lanes, Shared};
use wgkv::Error;

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
    assert_eq!(n.total(), n.weights + n.kv + n.buffers);
    // CPU adapters keep prefill partials that grow with the slots.
    assert!(Need::new(&c, 1000, 8192, true, Lanes).buffers > Need::new(&c, 1000, 1024, true, Lanes).buffers);
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
