//! The routes: each request is checked (key, size, JSON, fields, model,
//! context, KV policy), tokenized and queued for the engine; its answer is
//! one JSON object or a stream of server-sent events in OpenAI's shapes.

use super::api::{self, ApiError, ApiResult, Common, Prompt};
use super::engine::{Done, Event, Job};
use super::metrics::Metrics;
use crate::config::ModelConfig;
use crate::gpu::Caps;
use crate::kv::KvSpec;
use crate::measure::record::unix_time;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// What every handler reads.
pub struct Shared {
    pub model_id: String,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
    pub ctx: usize,
    /// The server's `--kv`, for requests that name none.
    pub spec: KvSpec,
    /// `--kv-memory`.
    pub limit: u64,
    pub api_key: Option<String>,
    pub queue: usize,
    pub cfg: ModelConfig,
    pub caps: Caps,
    pub metrics: Arc<Metrics>,
    /// The engine's queue; None once the server is stopping.
    pub jobs: Mutex<Option<SyncSender<Job>>>,
    /// Unix seconds the server started (the model's `created`).
    pub created: u64,
}

pub fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { error_response(&ApiError::method_not_allowed()) })
        .with_state(state)
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(e.body())).into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// The response, or the error object (counted).
fn respond(s: &Shared, r: ApiResult<Response>) -> Response {
    r.unwrap_or_else(|e| {
        Metrics::add(&s.metrics.errors, 1);
        error_response(&e)
    })
}

async fn not_found(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    respond(&s, Err(ApiError::not_found(uri.path())))
}

fn authorize(s: &Shared, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = &s.api_key else { return Ok(()) };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if g.trim() == key => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let r = authorize(&s, &headers).map(|_| ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response());
    respond(&s, r)
}

fn model_object(s: &Shared) -> Value {
    json!({"id": s.model_id, "object": "model", "created": s.created, "owned_by": "wgkv", "meta": {"n_ctx": s.ctx, "kv": s.spec.to_string()}})
}

async fn models(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let r = authorize(&s, &headers).map(|_| axum::Json(json!({"object": "list", "data": [model_object(&s)]})).into_response());
    respond(&s, r)
}

async fn model(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = authorize(&s, &headers).and_then(|_| match id == s.model_id {
        true => Ok(axum::Json(model_object(&s)).into_response()),
        false => Err(ApiError::model_not_found(&id, &s.model_id)),
    });
    respond(&s, r)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

async fn chat(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let r = generation(&s, &headers, body, Kind::Chat).await;
    respond(&s, r)
}

async fn completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let r = generation(&s, &headers, body, Kind::Completion).await;
    respond(&s, r)
}

/// The body, refused with 413 past `BODY_LIMIT` bytes.
async fn read_body(headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let limit = super::BODY_LIMIT;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A checked, tokenized request: what the engine runs and what the response names.
struct Request {
    common: Common,
    ids: Vec<u32>,
    max_new: usize,
    spec: KvSpec,
    kv_bytes: u64,
}

fn check(s: &Shared, bytes: &[u8], kind: Kind) -> ApiResult<Request> {
    let o = api::parse_object(bytes)?;
    let common = api::common(&o)?;
    if let Some(m) = &common.model
        && *m != s.model_id
    {
        return Err(ApiError::model_not_found(m, &s.model_id));
    }
    let ids = match kind {
        Kind::Chat => {
            let messages = api::messages(&o)?;
            let t = s.template.as_ref().ok_or_else(|| ApiError::bad_request(format!("{} has no chat template: use /v1/completions", s.model_id)))?;
            let text = t.render(&messages, true).map_err(|e| ApiError::invalid("messages", format!("the chat template cannot render these messages: {e}")))?;
            s.tokenizer.encode_prompt(&text)
        }
        Kind::Completion => match api::prompt(&o)? {
            Prompt::Text(t) => s.tokenizer.encode_prompt(&t),
            Prompt::Ids(ids) => match ids.iter().find(|&&i| i as usize >= s.cfg.vocab_size) {
                Some(bad) => return Err(ApiError::invalid("prompt", format!("token id {bad} is outside the vocabulary of {}", s.cfg.vocab_size))),
                None => Ok(ids),
            },
        },
    }
    .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))?;
    if ids.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    let asked = common.max_tokens.unwrap_or(0);
    if ids.len() >= s.ctx || ids.len().saturating_add(asked) > s.ctx {
        let what = if kind == Kind::Chat { "messages" } else { "prompt" };
        let msg = format!(
            "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the {what}, {asked} in the completion). Please reduce the length of the {what} or completion.",
            s.ctx,
            ids.len().saturating_add(asked),
            ids.len(),
        );
        return Err(ApiError { param: Some(what.into()), ..ApiError::context_length(msg) });
    }
    let max_new = common.max_tokens.unwrap_or(s.ctx - ids.len());
    let spec = match &common.kv {
        Some(text) => KvSpec::parse(text).map_err(|e| ApiError::invalid("kv", format!("'kv': {e}")))?,
        None => s.spec.clone(),
    };
    let kv_bytes = super::cache_bytes(&s.cfg, &s.caps, &spec, s.ctx).map_err(|e| ApiError::invalid("kv", format!("'kv' {spec}: {e}")))?;
    if kv_bytes > s.limit {
        let msg = format!("a KV cache under '{spec}' at this server's context of {} tokens needs {kv_bytes} bytes; --kv-memory is {}", s.ctx, s.limit);
        return Err(ApiError { code: Some("kv_memory_exceeded"), ..ApiError::invalid("kv", msg) });
    }
    Ok(Request { common, ids, max_new, spec, kv_bytes })
}

/// Queue `r` for the engine; its events come back on the receiver.
fn enqueue(s: &Shared, r: &Request) -> ApiResult<UnboundedReceiver<Event>> {
    let (tx, rx) = unbounded_channel();
    let job = Job {
        ids: r.ids.clone(),
        max_new: r.max_new,
        sampling: r.common.sampling.clone(),
        stop: r.common.stop.clone(),
        kv: r.spec.clone(),
        kv_bytes: r.kv_bytes,
        events: tx,
    };
    let sender = s.jobs.lock().ok().and_then(|j| j.clone()).ok_or_else(|| ApiError::internal("the server is stopping"))?;
    s.metrics.queue_depth.fetch_add(1, Relaxed);
    match sender.try_send(job) {
        Ok(()) => Ok(rx),
        Err(e) => {
            s.metrics.queue_depth.fetch_sub(1, Relaxed);
            match e {
                TrySendError::Full(_) => {
                    Metrics::add(&s.metrics.rejected_busy, 1);
                    Err(ApiError::busy(s.queue))
                }
                TrySendError::Disconnected(_) => Err(ApiError::internal("the server is stopping")),
            }
        }
    }
}

async fn generation(s: &Arc<Shared>, headers: &HeaderMap, body: Body, kind: Kind) -> ApiResult<Response> {
    authorize(s, headers)?;
    Metrics::add(&s.metrics.requests, 1);
    let bytes = read_body(headers, body).await?;
    // Rendering and tokenizing a long prompt takes a while: off the async workers.
    let shared = s.clone();
    let r = tokio::task::spawn_blocking(move || check(&shared, &bytes, kind))
        .await
        .map_err(|e| ApiError::internal(format!("the request check stopped: {e}")))??;
    let mut events = enqueue(s, &r)?;
    let shape = Shape {
        kind,
        id: format!("{}-{:x}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, NEXT_ID.fetch_add(1, Relaxed)),
        created: unix_time(),
        model: s.model_id.clone(),
    };
    if !r.common.stream {
        let mut text = String::new();
        loop {
            match events.recv().await {
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Done(d)) => return Ok(axum::Json(shape.whole(&text, &d)).into_response()),
                Some(Event::Error(e)) => return Err(e),
                None => return Err(ApiError::internal("the engine stopped before answering")),
            }
        }
    }
    // The status is decided by the first event: an error before any text is a plain error response.
    let first = match events.recv().await {
        Some(Event::Error(e)) => return Err(e),
        Some(ev) => ev,
        None => return Err(ApiError::internal("the engine stopped before answering")),
    };
    let include_usage = r.common.include_usage;
    let mut opening = Vec::new();
    if kind == Kind::Chat {
        opening.push(shape.chunk(json!({"role": "assistant", "content": ""}), None));
    }
    let state = StreamState { shape, events, pending: Some(first), opening, include_usage, done: false };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let frame = st.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(frame), st))
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// The id, time and model every object of one response carries.
struct Shape {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

fn usage(d: &Done) -> Value {
    json!({
        "prompt_tokens": d.prompt_tokens,
        "completion_tokens": d.completion_tokens,
        "total_tokens": d.prompt_tokens + d.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": d.cached_tokens},
    })
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn whole(&self, text: &str, d: &Done) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": d.finish, "logprobs": null}),
            Kind::Completion => json!({"index": 0, "text": text, "finish_reason": d.finish, "logprobs": null}),
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created, "model": self.model, "choices": [choice], "usage": usage(d)})
    }

    /// One streamed chunk: for chat `delta` is the message delta, for completions its `content` is the text.
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}),
            Kind::Completion => json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "finish_reason": finish, "logprobs": null}),
        };
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model, "choices": [choice]})
    }
}

/// A stream's progress: frames still to send, then engine events, then `[DONE]`.
struct StreamState {
    shape: Shape,
    events: UnboundedReceiver<Event>,
    pending: Option<Event>,
    opening: Vec<Value>,
    include_usage: bool,
    done: bool,
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

impl StreamState {
    /// The next frame, None at the end.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.opening.is_empty() {
            return Some(frame(&self.opening.remove(0)));
        }
        if self.done {
            return None;
        }
        let ev = match self.pending.take() {
            Some(ev) => ev,
            None => self.events.recv().await.unwrap_or_else(|| Event::Error(ApiError::internal("the engine stopped before answering"))),
        };
        match ev {
            Event::Text(t) => Some(frame(&self.shape.chunk(json!({"content": t}), None))),
            Event::Done(d) => {
                self.done = true;
                let mut out = frame(&self.shape.chunk(json!({}), Some(d.finish))).to_vec();
                if self.include_usage {
                    let mut u = self.shape.chunk(json!({}), None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&d);
                    out.extend_from_slice(&frame(&u));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                Some(Bytes::from(out))
            }
            Event::Error(e) => {
                self.done = true;
                Some(frame(&e.body()))
            }
        }
    }
}
