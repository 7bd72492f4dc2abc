//! OpenAI's request fields as `wgkv serve` reads them, with one clear error
//! per bad field, and OpenAI's error object.

use crate::sampler::SamplerConfig;
use crate::template::Message;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// An error as OpenAI sends it: the HTTP status and
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }
    /// 400 for a request that names `param` wrongly.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError { param: Some(param.to_string()), ..ApiError::new(400, "invalid_request_error", message) }
    }
    /// 400 without a parameter (the body as a whole).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }
    pub fn context_length(message: impl Into<String>) -> ApiError {
        ApiError { code: Some("context_length_exceeded"), param: Some("messages".into()), ..ApiError::bad_request(message) }
    }
    pub fn unauthorized() -> ApiError {
        let msg = "Incorrect or missing API key: send it as the header 'Authorization: Bearer KEY' (the key given to --api-key)";
        ApiError { code: Some("invalid_api_key"), ..ApiError::new(401, "invalid_request_error", msg) }
    }
    pub fn model_not_found(name: &str, served: &str) -> ApiError {
        let msg = format!("The model '{name}' does not exist: this server runs '{served}' (GET /v1/models)");
        ApiError { code: Some("model_not_found"), param: Some("model".into()), ..ApiError::new(404, "invalid_request_error", msg) }
    }
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            format!("Unknown path {path}: this server has /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics"),
        )
    }
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "invalid_request_error", "This method is not allowed on this path")
    }
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(413, "invalid_request_error", format!("The request body is larger than this server's limit of {limit} bytes"))
    }
    pub fn busy(queue: usize) -> ApiError {
        let msg = format!("The server is busy: {queue} requests are already waiting; retry later");
        ApiError { retry_after: Some(1), code: Some("server_busy"), ..ApiError::new(503, "server_error", msg) }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "server_error", message)
    }
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// The request body as a JSON object.
pub fn parse_object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("The request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("The request body is not valid JSON: {e}"))),
    }
}

/// Field `name` as a `T`, absent or null as None, a wrong type as a 400 naming it.
fn field<T: DeserializeOwned>(o: &Map<String, Value>, name: &str, expected: &str) -> ApiResult<Option<T>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone()).map(Some).map_err(|_| ApiError::invalid(name, format!("'{name}' must be {expected}, not {}", describe(v))))
        }
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    match text.chars().count() > 40 {
        true => format!("{}…", text.chars().take(40).collect::<String>()),
        false => text,
    }
}

/// What every generation request shares: sampling, limits, stops, the model and the KV policy.
#[derive(Clone, Debug)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<usize>,
    pub sampling: SamplerConfig,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub kv: Option<String>,
}

/// Longest stop string, in bytes.
const MAX_STOP_BYTES: usize = 256;

pub fn common(o: &Map<String, Value>) -> ApiResult<Common> {
    let model = field::<String>(o, "model", "a string")?;
    // `max_completion_tokens` is the newer name; either may come.
    let max = match field::<i64>(o, "max_completion_tokens", "an integer")? {
        Some(m) => Some((m, "max_completion_tokens")),
        None => field::<i64>(o, "max_tokens", "an integer")?.map(|m| (m, "max_tokens")),
    };
    let max_tokens = match max {
        Some((m, name)) if m < 1 => return Err(ApiError::invalid(name, format!("'{name}' must be at least 1, not {m}"))),
        Some((m, _)) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };
    let mut sampling = SamplerConfig::default();
    if let Some(t) = field::<f64>(o, "temperature", "a number")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid("temperature", format!("'temperature' must be between 0 and 2, not {t}")));
        }
        sampling.temperature = t as f32;
    }
    if let Some(p) = field::<f64>(o, "top_p", "a number")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid("top_p", format!("'top_p' must be above 0 and at most 1, not {p}")));
        }
        sampling.top_p = p as f32;
    }
    if let Some(s) = field::<i64>(o, "seed", "an integer")? {
        sampling.seed = s as u64;
    }
    if let Some(n) = field::<i64>(o, "n", "an integer")?
        && n != 1
    {
        return Err(ApiError::invalid("n", format!("'n' must be 1 (one choice per request), not {n}")));
    }
    let stop = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => a.iter().filter_map(|s| s.as_str().map(String::from)).collect(),
        Some(v) => return Err(ApiError::invalid("stop", format!("'stop' must be a string or an array of at most 4 strings, not {}", describe(v)))),
    };
    if stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid("stop", format!("each 'stop' string must be at most {MAX_STOP_BYTES} bytes")));
    }
    let stream = field::<bool>(o, "stream", "true or false")?.unwrap_or(false);
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => field::<bool>(so, "include_usage", "true or false")?.unwrap_or(false),
        Some(v) => return Err(ApiError::invalid("stream_options", format!("'stream_options' must be an object, not {}", describe(v)))),
    };
    let kv = field::<String>(o, "kv", "a KV policy string such as \"snapkv:budget=10%\"")?;
    Ok(Common { model, max_tokens, sampling, stop, stream, include_usage, kv })
}

/// `messages` of a chat request: each a role and text content (a string,
/// or an array of text parts as newer clients send).
pub fn messages(o: &Map<String, Value>) -> ApiResult<Vec<Message>> {
    let list = match o.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "'messages' must hold at least one message")),
        None | Some(Value::Null) => return Err(ApiError::invalid("messages", "'messages' is required")),
        Some(v) => return Err(ApiError::invalid("messages", format!("'messages' must be an array, not {}", describe(v)))),
    };
    list.iter().enumerate().map(|(i, m)| message(i, m)).collect()
}

fn message(i: usize, m: &Value) -> ApiResult<Message> {
    let param = format!("messages[{i}]");
    let bad = |what: &str| ApiError::invalid(&param, format!("'{param}' {what}"));
    let Value::Object(m) = m else { return Err(bad("must be an object with 'role' and 'content'")) };
    let role = match m.get("role") {
        Some(Value::String(r)) if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => r.clone(),
        Some(v) => return Err(bad(&format!("has role {}; roles are system, developer, user, assistant and tool", describe(v)))),
        None => return Err(bad("has no 'role'")),
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(bad("has a content part that is not {\"type\": \"text\", \"text\": ...}: this server reads text only")),
                }
            }
            text
        }
        Some(v) => return Err(bad(&format!("has content {}; content is a string or an array of text parts", describe(v)))),
    };
    // Templates know system, user and assistant; a developer message is a system message.
    let role = if role == "developer" { "system".to_string() } else { role };
    Ok(Message::new(role, content))
}

/// `prompt` of a completion request: text, or token ids.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

pub fn prompt(o: &Map<String, Value>) -> ApiResult<Prompt> {
    let bad =
        |v: &Value| ApiError::invalid("prompt", format!("'prompt' must be a string, an array of one string, or an array of token ids, not {}", describe(v)));
    match o.get("prompt") {
        None | Some(Value::Null) => Err(ApiError::invalid("prompt", "'prompt' is required")),
        Some(Value::String(s)) => Ok(Prompt::Text(s.clone())),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Ok(Prompt::Text(s.clone())),
            [Value::Array(ids)] => token_ids(ids).ok_or_else(|| bad(&o["prompt"])),
            ids if !ids.is_empty() => token_ids(ids).ok_or_else(|| bad(&o["prompt"])),
            _ => Err(ApiError::invalid("prompt", "'prompt' must not be empty (this server takes one prompt per request)")),
        },
        Some(v) => Err(bad(v)),
    }
}

fn token_ids(a: &[Value]) -> Option<Prompt> {
    a.iter().map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok())).collect::<Option<Vec<u32>>>().filter(|v| !v.is_empty()).map(Prompt::Ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn wrong_types_name_their_field() {
        for (body, param) in [
            (json!({"max_tokens": "many"}), "max_tokens"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"temperature": 3}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"n": 2}), "n"),
            (json!({"stop": [1]}), "stop"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"stream": "yes"}), "stream"),
            (json!({"kv": 5}), "kv"),
            (json!({"model": []}), "model"),
        ] {
            let e = common(&obj(body.clone())).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{body}");
        }
    }

    #[test]
    fn fields_are_read() {
        let c = common(&obj(json!({"max_completion_tokens": 7, "max_tokens": 3, "temperature": 0, "seed": 5, "stop": "x", "stream": true, "kv": "full", "extra": {"ignored": 1}}))).unwrap();
        assert_eq!((c.max_tokens, c.sampling.temperature, c.sampling.seed), (Some(7), 0.0, 5));
        assert_eq!((c.stop, c.stream, c.kv.as_deref()), (vec!["x".to_string()], true, Some("full")));
        assert_eq!(common(&obj(json!({"max_tokens": 1u64 << 40}))).unwrap().max_tokens, Some(1 << 40));
    }

    #[test]
    fn messages_and_prompts() {
        let m = messages(&obj(json!({"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "!"}]}]}))).unwrap();
        assert_eq!(m, vec![Message::new("system", "be brief"), Message::new("user", "hi!")]);
        for bad in [
            json!({}),
            json!({"messages": []}),
            json!({"messages": "hi"}),
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": 3}]}),
        ] {
            assert_eq!(messages(&obj(bad.clone())).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(prompt(&obj(json!({"prompt": ["a"]}))).unwrap(), Prompt::Text("a".into()));
        assert_eq!(prompt(&obj(json!({"prompt": [1, 2]}))).unwrap(), Prompt::Ids(vec![1, 2]));
        assert_eq!(prompt(&obj(json!({"prompt": [[3]]}))).unwrap(), Prompt::Ids(vec![3]));
        for bad in [json!({}), json!({"prompt": []}), json!({"prompt": [-1]}), json!({"prompt": ["a", "b"]}), json!({"prompt": 5})] {
            assert_eq!(prompt(&obj(bad.clone())).unwrap_err().param.as_deref(), Some("prompt"), "{bad}");
        }
        assert_eq!(parse_object(b"{oops").unwrap_err().status, 400);
        assert_eq!(parse_object(b"[1]").unwrap_err().status, 400);
    }
}
