//! Chat messages to a prompt string, through the model's own Jinja template.
//!
//! The template is rendered the way Hugging Face's `apply_chat_template` does:
//! `trim_blocks` and `lstrip_blocks` on, variables `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token` (`tools`, `documents`
//! none), and a `raise_exception` function. Python string and dict methods that chat templates call
//! (`.strip()`, `.startswith()`, `.items()`, ...) are provided by a small
//! compatibility hook, so no extra crate is needed. Without minijinja's
//! `loop_controls` / `json` features, templates using `{% break %}` or `tojson`
//! fail to compile with a one-line error.
//!
//! A template comes with the model file, so it is untrusted: every render runs
//! on a budget of minijinja fuel (about one per instruction and per 64 bytes
//! of data made), which grows with the conversation, and the Python methods
//! charge for what they are about to allocate. A template that loops for ever
//! or builds huge strings fails with one line ("ran out of fuel").

use crate::error::{Error, Result};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind, State, context};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into() }
    }
}

/// A compiled chat template with its BOS/EOS strings.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

const NAME: &str = "chat_template";

/// Fuel of a render: a base, plus some per message and per byte of the
/// messages. Real templates spend a few dozen per message and a few per 64
/// bytes of content, so long chats render; a hostile template stops within
/// about `FUEL_BASE` instructions or `64 * FUEL_BASE` bytes beyond what the
/// messages pay for.
const FUEL_BASE: u64 = 1 << 20;
const FUEL_PER_MESSAGE: u64 = 1 << 10;

fn fuel_for(messages: &[Message]) -> u64 {
    let bytes: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    FUEL_BASE + FUEL_PER_MESSAGE * messages.len() as u64 + bytes as u64
}

/// A minijinja error as one line.
fn one_line(prefix: &str, e: &minijinja::Error) -> Error {
    let mut msg = e.to_string().replace(['\n', '\r'], " ");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::msg(format!("{prefix}: {msg}"))
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is returned as one line.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(|e| one_line("chat template", &e))?;
        env.set_syntax(syntax);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.set_unknown_method_callback(python_method);
        env.add_template_owned(NAME, source.to_string()).map_err(|e| one_line("chat template does not compile", &e))?;
        Ok(ChatTemplate { env, bos: bos.to_string(), eos: eos.to_string() })
    }

    /// The prompt for `messages`, ending with the assistant's header when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages.iter().map(|m| context! { role => m.role.clone(), content => m.content.clone() }).collect();
        let ctx = context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.clone(),
            eos_token => self.eos.clone(),
            // Hugging Face passes these as None when unused; templates test `tools is not none`.
            tools => (),
            documents => (),
        };
        // A clone shares the compiled template; only the fuel differs.
        let mut env = self.env.clone();
        env.set_fuel(Some(fuel_for(messages)));
        let tmpl = env.get_template(NAME).map_err(|e| one_line("chat template", &e))?;
        tmpl.render(ctx).map_err(|e| one_line("chat template failed", &e))
    }

    /// Text to append to a conversation already fed as `render(before, false)`
    /// to reach `render(after, add_generation_prompt)`: the way a chat keeps its
    /// KV cache across turns (`before` holds the history including the last
    /// assistant reply, `after` adds the new user turn).
    ///
    /// Errors when the longer rendering does not start with the shorter one
    /// (templates that rewrite earlier turns, e.g. dropping old reasoning); the
    /// caller then re-feeds the whole prompt. Tokenize the suffix on its own only
    /// where the boundary cannot merge across it; with ChatML-style templates it
    /// falls right after a newline and before a special token.
    pub fn render_suffix(&self, before: &[Message], after: &[Message], add_generation_prompt: bool) -> Result<String> {
        let prefix = self.render(before, false)?;
        let full = self.render(after, add_generation_prompt)?;
        match full.strip_prefix(prefix.as_str()) {
            Some(rest) => Ok(rest.to_string()),
            None => Err(Error::msg("chat template renders earlier turns differently once a turn is added; the whole prompt must be re-fed")),
        }
    }
}

fn unknown() -> minijinja::Error {
    minijinja::Error::from(ErrorKind::UnknownMethod)
}

fn arg_str(args: &[Value], i: usize) -> Option<String> {
    args.get(i).filter(|v| !v.is_none() && !v.is_undefined()).map(|v| v.to_string())
}

/// Python `str` / `dict` methods used by chat templates.
fn python_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> std::result::Result<Value, minijinja::Error> {
    match value.kind() {
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            string_method(state, s, method, args)
        }
        ValueKind::Map => match method {
            "items" => state.apply_filter("items", std::slice::from_ref(value)),
            "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let mut out = Vec::new();
                for k in value.try_iter()? {
                    out.push(value.get_item(&k)?);
                }
                Ok(Value::from(out))
            }
            "get" => {
                let key = args.first().cloned().unwrap_or_default();
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() { args.get(1).cloned().unwrap_or(Value::from(())) } else { v })
            }
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

/// Charges the fuel for `bytes` of work or data before it is done.
fn charge(state: &State, bytes: usize) -> std::result::Result<(), minijinja::Error> {
    state.consume_fuel((bytes as u64).div_ceil(64))
}

fn string_method(state: &State, s: &str, method: &str, args: &[Value]) -> std::result::Result<Value, minijinja::Error> {
    let strip_set = |i: usize| {
        let cs = arg_str(args, i);
        // Each character of `s` may be looked up in the whole set.
        charge(state, s.len().saturating_mul(1 + cs.as_ref().map_or(0, String::len))).map(|_| cs)
    };
    if matches!(method, "upper" | "lower" | "capitalize" | "title") {
        // Changing case at most triples the length.
        charge(state, 3 * s.len())?;
    }
    let v = match method {
        "strip" => match strip_set(0)? {
            Some(cs) => s.trim_matches(|c| cs.contains(c)).to_string(),
            None => s.trim().to_string(),
        },
        "lstrip" => match strip_set(0)? {
            Some(cs) => s.trim_start_matches(|c| cs.contains(c)).to_string(),
            None => s.trim_start().to_string(),
        },
        "rstrip" => match strip_set(0)? {
            Some(cs) => s.trim_end_matches(|c| cs.contains(c)).to_string(),
            None => s.trim_end().to_string(),
        },
        "upper" => s.to_uppercase(),
        "lower" => s.to_lowercase(),
        "capitalize" => {
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect(),
                None => String::new(),
            }
        }
        "title" => {
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start {
                    out.extend(c.to_uppercase())
                } else {
                    out.extend(c.to_lowercase())
                }
                start = !c.is_alphanumeric();
            }
            out
        }
        "startswith" | "endswith" => {
            let hit = |p: &str| if method == "startswith" { s.starts_with(p) } else { s.ends_with(p) };
            let arg = args.first().ok_or_else(|| minijinja::Error::new(ErrorKind::MissingArgument, method.to_string()))?;
            let yes = if arg.kind() == ValueKind::Seq { arg.try_iter()?.any(|p| hit(&p.to_string())) } else { hit(&arg.to_string()) };
            return Ok(Value::from(yes));
        }
        "replace" => {
            let (Some(from), Some(to)) = (arg_str(args, 0), arg_str(args, 1)) else {
                return Err(minijinja::Error::new(ErrorKind::MissingArgument, "replace(old, new)"));
            };
            let n = s.matches(from.as_str()).count();
            charge(state, s.len().saturating_add(n.saturating_mul(to.len())))?;
            s.replace(&from, &to)
        }
        "find" => {
            let needle = arg_str(args, 0).unwrap_or_default();
            let pos = s.find(&needle).map_or(-1, |b| s[..b].chars().count() as i64);
            return Ok(Value::from(pos));
        }
        "count" => return Ok(Value::from(s.matches(&arg_str(args, 0).unwrap_or_default()).count())),
        "split" => {
            let (args, kwargs): (&[Value], Option<Kwargs>) = match args.last() {
                Some(last) if last.kind() == ValueKind::Map => (&args[..args.len() - 1], Kwargs::try_from(last.clone()).ok()),
                _ => (args, None),
            };
            let sep = arg_str(args, 0).or_else(|| kwargs.as_ref().and_then(|k| k.get::<Option<String>>("sep").ok().flatten()));
            let max = args
                .get(1)
                .and_then(|v| i64::try_from(v.clone()).ok())
                .or_else(|| kwargs.as_ref().and_then(|k| k.get::<i64>("maxsplit").ok()))
                .filter(|&m| m >= 0)
                .map(|m| m as usize);
            let n = match &sep {
                Some(sep) => s.matches(sep.as_str()).count() + 1,
                None => s.split_whitespace().count(),
            };
            charge(state, s.len().saturating_add(n.saturating_mul(32)))?;
            let parts: Vec<Value> = match (sep, max) {
                (Some(sep), Some(m)) => s.splitn(m + 1, sep.as_str()).map(Value::from).collect(),
                (Some(sep), None) => s.split(sep.as_str()).map(Value::from).collect(),
                (None, Some(m)) => {
                    let mut out = Vec::new();
                    let mut rest = s.trim_start();
                    while !rest.is_empty() && out.len() < m {
                        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                        out.push(Value::from(&rest[..end]));
                        rest = rest[end..].trim_start();
                    }
                    if !rest.is_empty() {
                        out.push(Value::from(rest));
                    }
                    out
                }
                (None, None) => s.split_whitespace().map(Value::from).collect(),
            };
            return Ok(Value::from(parts));
        }
        _ => return Err(unknown()),
    };
    Ok(Value::from(v))
}
