//! Subcommands. Each file holds one; this one holds the flag definitions.

pub mod devices;

use crate::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "wgkv", version, about = "LLM inference on any GPU through wgpu, with a compressible KV cache")]
pub struct Cli {
    /// Model file (GGUF) or Hugging Face folder; default: the built-in default model.
    #[arg(long, global = true)]
    pub model: Option<String>,
    /// GPU backend: vulkan, metal, dx12 or gl.
    #[arg(long, global = true)]
    pub backend: Option<String>,
    /// Adapter name (substring) or index as listed by `wgkv devices`.
    #[arg(long, global = true)]
    pub adapter: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every adapter with backend, type, features and limits.
    Devices {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { json } => devices::run(cli.backend.as_deref(), json),
    }
}
