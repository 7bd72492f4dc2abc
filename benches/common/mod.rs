//! What the benches share: the adapter `WGKV_BACKEND` / `WGKV_ADAPTER`
//! pick, and sizes from the environment.
#![allow(dead_code)]

use std::sync::Arc;
use wgkv::gpu::{Gpu, GpuOptions};

/// The adapter options `WGKV_BACKEND` and `WGKV_ADAPTER` give.
pub fn gpu_options() -> GpuOptions {
    GpuOptions { backend: std::env::var("WGKV_BACKEND").ok(), adapter: std::env::var("WGKV_ADAPTER").ok(), ..Default::default() }
}

/// The adapter, or None after a skip line naming `bench` when there is none.
pub fn adapter_or_skip(bench: &str) -> Option<Arc<Gpu>> {
    match Gpu::new(&gpu_options()) {
        Ok(g) => Some(g),
        Err(e) => {
            println!("SKIP {bench} bench: no GPU adapter ({e})");
            None
        }
    }
}

/// `name` from the environment as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
