//! wgkv: an LLM inference engine whose every kernel is a WGSL compute shader
//! run through wgpu, with a compressible KV cache.
//!
//! Layers, top to bottom (data flows one way):
//! - `gpu`: instance, adapter, device, buffers, submit, readback.
//! - `kernels`: the shader registry (`shaders/*.wgsl`), pipelines, dispatches.
//! - `ops`: one launch builder per kernel (params, bindings, grid).
//! - `quant`: GGUF weight types, block layouts, CPU dequantization.
//! - `reference`: plain-Rust CPU version of every kernel and of the forward.
//! - `gguf`, `safetensors`, `weights`, `config`: model files to tensors and one `ModelConfig`.
//! - `tokenizer`, `template`: text to ids and chat messages to a prompt.
//! - `sampler`: next-token choice on the CPU from a GPU-narrowed candidate list.
//! - `fetch`: the default model, fetched on first use and cached.
//! - `measure`: bench timing loop and JSON records, markdown tables, SVG plots, the pass-key prompt.
//! - `profile`: per-kernel timing of one forward call.
//! - `memory`: what a model needs on the device, checked before allocating; GPU error scopes.

pub mod error;
pub mod gpu;
pub mod kernels;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod kv;
pub mod mapped;
pub mod measure;
pub mod memory;
pub mod model;
pub mod ops;
pub mod profile;
pub mod progress;
pub mod quant;
pub mod reference;
pub mod safetensors;
pub mod sampler;
pub mod template;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
