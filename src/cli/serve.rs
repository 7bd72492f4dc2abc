//! `wgkv serve`: the model behind an OpenAI-compatible HTTP API (see `crate::serve`).

use super::load::{RunArgs, TemplateArgs, load_with};
use crate::Result;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default: give 0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the "listening on" line says which).
    #[arg(long, default_value = "8080")]
    pub port: u16,
    /// Bytes all KV caches together may hold (suffix K, M or G); cached
    /// conversations are dropped least recently used first. Default: room
    /// for 2 × --parallel caches under --kv at --ctx.
    #[arg(long, value_parser = super::parse_bytes)]
    pub kv_memory: Option<u64>,
    /// Requests generating at once; the others wait in the queue.
    #[arg(long, default_value = "4")]
    pub parallel: usize,
    /// Requests that may wait; beyond them the server answers 503 with Retry-After.
    #[arg(long, default_value = "64")]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on every request but /health (default: the WGKV_API_KEY environment variable, if set).
    #[arg(long, env = "WGKV_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(global: &super::Global, a: ServeArgs) -> Result<()> {
    // Before the model loads, not after.
    crate::serve::check_counts(a.parallel, a.queue)?;
    let l = load_with(global, &a.run, &a.template)?;
    // A model by name is served under that name, a file under its file name.
    let model_id = match &global.model {
        Some(m) if crate::fetch::find_model(m).is_some() => m.clone(),
        Some(_) => l.model_name.clone(),
        None => crate::fetch::DEFAULT_MODEL.name.to_string(),
    };
    let opts = crate::serve::Options {
        host: a.host,
        port: a.port,
        api_key: a.api_key.filter(|k| !k.is_empty()),
        parallel: a.parallel,
        queue: a.queue,
        kv_memory: a.kv_memory,
        model_id,
    };
    crate::serve::run(l.model, l.tokenizer, l.template, opts)
}
