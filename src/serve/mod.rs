//! `wgkv serve`: an OpenAI-compatible HTTP server. The HTTP side (tokio and
//! axum, [`http`]) checks and tokenizes each request and hands it to one
//! engine thread that owns the model ([`engine`]) through a bounded queue;
//! text comes back over a channel per request. Conversations keep their KV
//! caches between requests ([`conversations`]) within `--kv-memory`.

pub mod api;
pub mod conversations;
pub mod engine;
pub mod http;
pub mod metrics;

use crate::config::ModelConfig;
use crate::gpu::Caps;
use crate::kv::{KvCache, KvSpec};
use crate::model::Model;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// What `wgkv serve`'s flags say.
#[derive(Clone, Debug)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Requests generating at once.
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 503.
    pub queue: usize,
    /// Bytes all KV caches together may hold; None: room for `2 × parallel` caches under the server's policy.
    pub kv_memory: Option<u64>,
    /// The model's id in the API (`GET /v1/models`).
    pub model_id: String,
}

/// Largest request body, in bytes.
pub const BODY_LIMIT: usize = 4 << 20;

/// Bytes a cache of `ctx` tokens under `spec` takes on `model`'s device,
/// with what it may grow to (Mustafar's pools).
pub fn cache_bytes(cfg: &ModelConfig, caps: &Caps, spec: &KvSpec, ctx: usize) -> Result<u64> {
    Ok(KvCache::bytes_for(spec, cfg, ctx, caps)? + KvCache::growth_for(spec, cfg, ctx, caps)?)
}

/// Refuses a `--parallel` or `--queue` of 0 (the engine would never start a request).
pub fn check_counts(parallel: usize, queue: usize) -> Result<()> {
    match parallel == 0 || queue == 0 {
        true => Err(Error::msg("--parallel and --queue must be at least 1")),
        false => Ok(()),
    }
}

/// Serve `model` until the process is stopped (Ctrl-C ends it cleanly).
pub fn run(model: Model, tokenizer: Tokenizer, template: Option<ChatTemplate>, opts: Options) -> Result<()> {
    check_counts(opts.parallel, opts.queue)?;
    let ctx = model.kv.ctx;
    let spec = model.kv.spec.clone();
    let one = cache_bytes(&model.cfg, &model.gpu.caps, &spec, ctx)?;
    let limit = opts.kv_memory.unwrap_or(one.saturating_mul(2 * opts.parallel as u64));
    if one > limit {
        return Err(Error::msg(format!("--kv-memory {limit} cannot hold one cache under --kv {spec} at --ctx {ctx} ({one} bytes): raise it, or lower --ctx")));
    }
    let metrics = Arc::new(metrics::Metrics::default());
    metrics.kv_bytes_limit.store(limit, Relaxed);
    let tokenizer = Arc::new(tokenizer);
    let describe = format!("{} on {} (kv {spec}, ctx {ctx}, kv-memory {})", opts.model_id, model.gpu.describe(), crate::measure::fmt_bytes(limit));
    let state = http::Shared {
        model_id: opts.model_id.clone(),
        tokenizer: tokenizer.clone(),
        template,
        ctx,
        spec,
        limit,
        api_key: opts.api_key.clone(),
        queue: opts.queue,
        cfg: model.cfg.clone(),
        caps: model.gpu.caps.clone(),
        metrics: metrics.clone(),
        jobs: std::sync::Mutex::new(None),
        created: crate::measure::record::unix_time(),
    };
    let engine = engine::Engine::new(model, tokenizer, ctx, limit, opts.parallel, metrics)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(opts.queue);
    *state.jobs.lock().map_err(|_| Error::msg("internal: job queue lock"))? = Some(tx);
    let worker = std::thread::Builder::new()
        .name("wgkv-engine".into())
        .spawn(move || engine.run(rx))
        .map_err(|e| Error::msg(format!("cannot start the engine thread: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("cannot start the async runtime: {e}")))?;
    let state = Arc::new(state);
    let addr = format!("{}:{}", opts.host, opts.port);
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| Error::msg(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr.clone());
        // The line a script waits for; the port is the bound one (`--port 0` picks a free one).
        eprintln!("wgkv serve: {describe}");
        eprintln!("wgkv serve: listening on http://{bound}");
        let app = http::router(state.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Error::msg(format!("the server stopped: {e}")))
    });
    // Dropping the queue's sender ends the engine once its requests are done.
    if let Ok(mut jobs) = state.jobs.lock() {
        jobs.take();
    }
    drop(rt);
    let _ = worker.join();
    served
}
