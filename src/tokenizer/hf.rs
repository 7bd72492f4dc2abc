//! The Hugging Face route: `tokenizer.json` run by the `tokenizers` crate,
//! with `tokenizer_config.json` (special tokens, `add_bos_token`, chat
//! template) and `chat_template.jinja` when present.

use super::{Engine, Kind, Parts, Special, Style, Tokenizer, parse_byte_token};
use crate::error::{Error, Result};
use std::path::Path;

/// A dependency's error message on one line (it may quote the file's text).
pub(super) fn flat(e: impl std::fmt::Display) -> String {
    e.to_string().chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

pub(super) fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::msg(format!("{what}: {}", flat(e)))
}

/// Most ids a tokenizer.json may span (the model config's vocabulary cap).
const MAX_IDS: usize = 1 << 22;

impl Tokenizer {
    /// Loads `tokenizer.json` (+ `tokenizer_config.json`, `chat_template.jinja` when present).
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::format(path.display().to_string(), flat(e)))?;
        let mut inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::format(path.display().to_string(), flat(e)))?;
        // Special added tokens are cut out by `encode` itself, only when asked.
        inner.set_encode_special_tokens(true);

        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read(&config_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::format(config_path.display().to_string(), flat(e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(Error::io(config_path.display().to_string(), e)),
        };

        let style = if json_mentions(&json["decoder"], "ByteLevel") || json_mentions(&json["pre_tokenizer"], "ByteLevel") {
            Style::ByteLevel
        } else {
            Style::Metaspace
        };
        let byte_fallback = json["model"]["byte_fallback"].as_bool().unwrap_or(false);

        let added = inner.get_added_tokens_decoder();
        let ids = inner.get_vocab(true);
        // Ids may have gaps: cover the largest, so every id encode gives decodes.
        let max_id = ids.values().copied().chain(added.keys().copied()).max();
        let n = inner.get_vocab_size(true).max(max_id.map_or(0, |id| id as usize + 1));
        if n > MAX_IDS {
            return Err(Error::format(path.display().to_string(), format!("token id {} is beyond the largest vocabulary supported ({MAX_IDS} ids)", n - 1)));
        }
        let mut texts = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut specials = Vec::new();
        for id in 0..n as u32 {
            let (text, kind) = match added.get(&id) {
                Some(t) if t.special => {
                    specials.push(Special { text: t.content.clone(), id, lstrip: t.lstrip, rstrip: t.rstrip, always: false });
                    (t.content.clone(), Kind::Special)
                }
                Some(t) => (t.content.clone(), Kind::UserDefined),
                None => match inner.id_to_token(id) {
                    Some(t) if byte_fallback && parse_byte_token(&t).is_some() => (t, Kind::Byte),
                    Some(t) => (t, Kind::Normal),
                    None => (String::new(), Kind::Unused),
                },
            };
            texts.push(text);
            kinds.push(kind);
        }

        let token_of = |key: &str| -> Option<u32> {
            let v = &config[key];
            let s = v.as_str().or_else(|| v["content"].as_str())?;
            inner.token_to_id(s)
        };
        let bos = token_of("bos_token");
        let eos = token_of("eos_token");
        // `add_bos_token` when the config says; else whether the post-processor adds BOS.
        let add_bos = match config["add_bos_token"].as_bool() {
            Some(b) => b,
            None => match (bos, inner.encode_fast("", true)) {
                (Some(bos), Ok(enc)) => enc.get_ids().first() == Some(&bos),
                _ => false,
            },
        };
        let add_bos = add_bos && bos.is_some();

        let jinja_path = dir.join("chat_template.jinja");
        let chat_template = match std::fs::read_to_string(&jinja_path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => hf_config_template(&config["chat_template"]),
            Err(e) => return Err(Error::io(jinja_path.display().to_string(), e)),
        };
        let engine = Engine::Hf(Box::new(inner));
        Ok(Tokenizer::assemble(Parts { engine, ids, specials, texts, kinds, style, bos, eos, add_bos, add_space_prefix: false, chat_template }))
    }
}

/// Whether a JSON tree has `"type": name` anywhere (decoders may be nested in a Sequence).
fn json_mentions(v: &serde_json::Value, name: &str) -> bool {
    match v {
        serde_json::Value::Object(m) => m.get("type").and_then(|t| t.as_str()) == Some(name) || m.values().any(|x| json_mentions(x, name)),
        serde_json::Value::Array(a) => a.iter().any(|x| json_mentions(x, name)),
        _ => false,
    }
}

/// `chat_template` of tokenizer_config.json: a string, or a list of named templates.
fn hf_config_template(v: &serde_json::Value) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    let list = v.as_array()?;
    let named = |n: &str| list.iter().find(|t| t["name"].as_str() == Some(n));
    named("default").or_else(|| list.first())?["template"].as_str().map(str::to_string)
}
