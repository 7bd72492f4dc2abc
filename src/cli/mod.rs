//! Subcommands. Each file holds one; this one holds the global flags.

pub mod bench;
pub mod chat;
pub mod devices;
pub mod eval;
pub mod generate;
pub mod load;
pub mod models;
pub mod passkey;
pub mod sampling;
pub mod saved;
pub mod serve;
pub mod soak;
pub mod tokenize;

use crate::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "wgkv", version, about = "LLM inference on any GPU through wgpu, with a compressible KV cache")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Model: a name from `wgkv models` (fetched on first use), a GGUF file or a Hugging Face folder; default: smollm2-135m.
    #[arg(long, global = true)]
    pub model: Option<String>,
    /// GPU backend: vulkan, metal, dx12 or gl.
    #[arg(long, global = true)]
    pub backend: Option<String>,
    /// Adapter name (substring) or index as listed by `wgkv devices`.
    #[arg(long, global = true)]
    pub adapter: Option<String>,
    /// Use at most this storage binding limit, in bytes (suffix K, M or G):
    /// weights above it are split into row blocks, as on adapters with small limits.
    #[arg(long, global = true, value_parser = parse_bytes)]
    pub max_binding: Option<u64>,
    /// The GPU's memory in bytes (suffix K, M or G), where wgpu cannot tell:
    /// a model and context that need more are refused before allocating.
    #[arg(long, global = true, value_parser = parse_bytes)]
    pub gpu_memory: Option<u64>,
}

/// `1234`, `64K`, `8M`, `2G` (binary multiples) as bytes.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| format!("'{s}' is not a byte count (e.g. 65536, 64K, 8M)"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Chat with the model (multi-turn, streaming, KV cache kept across turns).
    Chat(chat::ChatArgs),
    /// Generate text from one prompt.
    Generate(generate::GenerateArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (chat, completions, streaming, metrics).
    Serve(serve::ServeArgs),
    /// Show the token ids of a text.
    Tokenize {
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the model: perplexity, agreement with a reference, pass-key retrieval.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Speed per KV policy, llama-bench style: prefill (ppP) and decode (tgN, tgN@dD) tokens/s and KV bytes.
    Bench(bench::BenchArgs),
    /// List every adapter with backend, type, features and limits.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Fetch a model (NAME from `wgkv models`; default: --model, else the default model) if it is not cached, and print its path.
    Fetch { name: Option<String> },
    /// List the models --model NAME knows: size, and whether they are cached.
    Models {
        #[arg(long)]
        json: bool,
    },
}

/// The global flags a command reads: model, GPU choice, GPU limits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Uses {
    /// Every global flag (the commands that run the model).
    All,
    /// `--backend` only (`devices`).
    Backend,
    /// `--model` only (`fetch`, `tokenize`).
    Model,
    /// None (commands that read earlier outputs).
    Nothing,
}

impl Command {
    fn uses(&self) -> Uses {
        match self {
            Command::Devices { .. } => Uses::Backend,
            Command::Fetch { .. } | Command::Tokenize { .. } => Uses::Model,
            Command::Models { .. } => Uses::Nothing,
            Command::Eval(eval::EvalCommand::PplPlot { .. }) => Uses::Nothing,
            Command::Eval(eval::EvalCommand::Passkey(a)) if !a.compare.is_empty() => Uses::Nothing,
            Command::Bench(a) if !a.compare.is_empty() => Uses::Nothing,
            _ => Uses::All,
        }
    }

    /// The command as typed, for messages.
    fn name(&self) -> &'static str {
        match self {
            Command::Chat(_) => "chat",
            Command::Generate(_) => "generate",
            Command::Serve(_) => "serve",
            Command::Tokenize { .. } => "tokenize",
            Command::Eval(eval::EvalCommand::PplPlot { .. }) => "eval ppl-plot",
            Command::Eval(eval::EvalCommand::Passkey(_)) => "eval passkey --compare",
            Command::Eval(_) => "eval",
            Command::Bench(_) => "bench --compare",
            Command::Devices { .. } => "devices",
            Command::Fetch { .. } => "fetch",
            Command::Models { .. } => "models",
        }
    }
}

/// Refuses a global flag the command would ignore (e.g. `--model` with
/// `devices`), so a flag never silently does nothing.
fn check_globals(g: &Global, cmd: &Command) -> Result<()> {
    let uses = cmd.uses();
    let given = [
        ("--model", g.model.is_some(), matches!(uses, Uses::All | Uses::Model)),
        ("--backend", g.backend.is_some(), matches!(uses, Uses::All | Uses::Backend)),
        ("--adapter", g.adapter.is_some(), uses == Uses::All),
        ("--max-binding", g.max_binding.is_some(), uses == Uses::All),
        ("--gpu-memory", g.gpu_memory.is_some(), uses == Uses::All),
    ];
    match given.iter().find(|(_, set, used)| *set && !*used) {
        Some((flag, ..)) => Err(crate::Error::msg(format!("{flag} does not apply to `wgkv {}` (drop it)", cmd.name()))),
        None => Ok(()),
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    check_globals(g, &cli.command)?;
    match cli.command {
        Command::Chat(a) => chat::run(g, a),
        Command::Generate(a) => generate::run(g, a),
        Command::Serve(a) => serve::run(g, a),
        Command::Tokenize { text, json } => tokenize::run(g, &text, json),
        Command::Eval(c) => eval::run(g, c),
        Command::Bench(a) => bench::run(g, a),
        Command::Devices { json } => devices::run(g.backend.as_deref(), json),
        Command::Fetch { name } => {
            let path = match (name, &g.model) {
                (Some(_), Some(_)) => return Err(crate::Error::msg("give the model once: `wgkv fetch NAME` or `wgkv --model NAME fetch`")),
                (Some(n), None) => match crate::fetch::find_model(&n) {
                    Some(m) => crate::fetch::ensure_named(m)?,
                    None => return Err(crate::Error::msg(format!("no model named '{}' (`wgkv models` lists them)", crate::error::show(&n)))),
                },
                (None, m) => crate::fetch::resolve_model(m.as_deref())?,
            };
            println!("{}", path.display());
            Ok(())
        }
        Command::Models { json } => models::run(json),
    }
}
