//! Text to token ids and back, matching llama.cpp's ids for GGUF vocabularies.
//!
//! Two sources build the same [`Tokenizer`]:
//! - GGUF metadata (`tokenizer.ggml.*`), through [`GgufVocab`] (plain data) and
//!   the thin adapter [`Tokenizer::from_gguf`]. Only byte-level BPE vocabularies
//!   (`tokenizer.ggml.model = "gpt2"`) are supported; the pre-tokenizer named by
//!   `tokenizer.ggml.pre` selects the split rules llama.cpp uses for it.
//! - A Hugging Face directory (`tokenizer.json`, optional `tokenizer_config.json`
//!   and `chat_template.jinja`), through [`Tokenizer::from_hf_dir`].
//!
//! Layout: special tokens are cut out of the text first (longest first, the way
//! llama.cpp partitions text), then every remaining fragment goes through a
//! `tokenizers` BPE model. Decoding does not use the crate: every id has its raw
//! bytes precomputed, so streaming output can hold back incomplete UTF-8.
//!
//! BOS: llama.cpp adds BOS for a BPE vocabulary only when the model asks for it:
//! the default is "no" (a few pre-tokenizers, e.g. Llama 3's `llama-bpe`, default
//! to "yes"), and `tokenizer.ggml.add_bos_token` overrides the default. The
//! SmolLM2 GGUF stores `add_bos_token = false` (bos = `<|im_start|>`, eos =
//! `<|im_end|>`), so no BOS is added, as in llama.cpp's ids for it
//! (`tests/reference/smollm2-135m/tokenize.json`).

use crate::error::{Error, Result, show};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

/// GGUF `tokenizer.ggml.token_type` values.
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_UNKNOWN: i32 = 2;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;
pub const TOKEN_UNUSED: i32 = 5;
pub const TOKEN_BYTE: i32 = 6;

/// Vocabulary fields of a GGUF file, as plain data.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`; only "gpt2" (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`; empty means llama.cpp's "default".
    pub pre: String,
    pub tokens: Vec<String>,
    /// "left right" pairs, highest priority first.
    pub merges: Vec<String>,
    /// One `TOKEN_*` per token; empty means all normal.
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; `None` (absent) uses the pre-tokenizer's default.
    pub add_bos: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// What an id stands for when decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    /// Control or unknown: parsed from text only when asked, printed as its text.
    Special,
    /// Always parsed from text, printed as its text.
    UserDefined,
    Unused,
    Byte,
}

/// How a normal token's text maps to bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// GPT-2 byte-to-unicode alphabet.
    ByteLevel,
    /// SentencePiece style: U+2581 is a space, `<0xXX>` a byte.
    Metaspace,
}

/// A loaded tokenizer: encode, decode, special ids, chat template source.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Tokens cut out of the text before BPE when `parse_special` is set,
    /// longest first: (text, id, strip spaces left, strip spaces right).
    specials: Vec<(String, u32, bool, bool)>,
    texts: Vec<String>,
    pieces: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

/// Split regexes (applied in order, each on the pieces of the previous one)
/// and whether whole words found in the vocabulary skip the merges.
struct PreRules {
    regexes: &'static [&'static str],
    ignore_merges: bool,
    add_bos: bool,
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_RE: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split rules llama.cpp uses for a `tokenizer.ggml.pre` name.
fn pre_rules(pre: &str) -> Result<PreRules> {
    let r = |regexes, ignore_merges, add_bos| Ok(PreRules { regexes, ignore_merges, add_bos });
    match pre {
        // Digits one by one, then the GPT-2 split.
        "smollm" | "starcoder" | "refact" => r(&[r"\p{N}", GPT2_RE], false, false),
        "gpt2" | "gpt-2" => r(&[GPT2_RE], false, false),
        "" | "default" => r(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", "[0-9][0-9][0-9]"], false, false),
        "llama-bpe" | "llama3" | "llama-v3" => r(&[LLAMA3_RE], true, true),
        "qwen2" => r(&[QWEN2_RE], false, false),
        other => {
            Err(Error::msg(format!("unsupported pre-tokenizer '{}' (supported: smollm, starcoder, refact, gpt2, default, llama-bpe, qwen2)", show(other))))
        }
    }
}

/// GPT-2's byte-to-unicode table inverted: char -> byte.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\u{FFFD}')
        };
        map.insert(c, b);
    }
    map
}

/// `<0xXX>` -> the byte.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn piece_bytes(text: &str, kind: Kind, style: Style, table: &HashMap<char, u8>) -> Vec<u8> {
    match kind {
        Kind::Special | Kind::UserDefined => text.as_bytes().to_vec(),
        Kind::Unused => Vec::new(),
        Kind::Byte => parse_byte_token(text).map(|b| vec![b]).unwrap_or_default(),
        Kind::Normal => match style {
            Style::ByteLevel => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match table.get(&c) {
                        Some(&b) => out.push(b),
                        // Not in the byte alphabet: keep the character itself.
                        None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
                    }
                }
                out
            }
            Style::Metaspace => match parse_byte_token(text) {
                Some(b) => vec![b],
                None => text.replace('\u{2581}', " ").into_bytes(),
            },
        },
    }
}

/// A dependency's error message on one line (it may quote the file's text).
fn flat(e: impl std::fmt::Display) -> String {
    e.to_string().chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::msg(format!("{what}: {}", flat(e)))
}

/// Most ids a tokenizer.json may span (the model config's vocabulary cap).
const MAX_IDS: usize = 1 << 22;

impl Tokenizer {
    /// Builds the tokenizer llama.cpp would build from these GGUF fields.
    pub fn from_gguf_vocab(v: GgufVocab) -> Result<Tokenizer> {
        match v.model.as_str() {
            "gpt2" => {}
            "llama" => {
                return Err(Error::msg("GGUF tokenizer model 'llama' (SentencePiece) is not supported; only 'gpt2' (byte-level BPE) is"));
            }
            other => {
                return Err(Error::msg(format!("GGUF tokenizer model '{}' is not supported; only 'gpt2' (byte-level BPE) is", show(other))));
            }
        }
        let rules = pre_rules(&v.pre)?;
        let n = v.tokens.len();
        if n == 0 {
            return Err(Error::msg("GGUF vocabulary has no tokens"));
        }
        if !v.token_types.is_empty() && v.token_types.len() != n {
            return Err(Error::msg(format!("GGUF vocabulary has {n} tokens but {} token types", v.token_types.len())));
        }
        for (what, id) in [("bos", v.bos), ("eos", v.eos), ("unknown", v.unk), ("padding", v.pad)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(Error::msg(format!("GGUF {what} token id {id} is outside the vocabulary ({n} tokens)")));
            }
        }

        let mut vocab = Vocab::default();
        for (i, t) in v.tokens.iter().enumerate() {
            if vocab.insert(t.clone(), i as u32).is_some() {
                return Err(Error::msg(format!("duplicate token {t:?} in GGUF vocabulary (id {i})")));
            }
        }
        if v.merges.is_empty() {
            return Err(Error::msg("GGUF byte-level BPE vocabulary has no tokenizer.ggml.merges"));
        }
        let mut merges = Vec::with_capacity(v.merges.len());
        for m in &v.merges {
            // Split at the first space after the first character (a merge side may start with a space).
            let first = m.chars().next().map_or(0, char::len_utf8);
            let Some(pos) = m[first..].find(' ').map(|p| p + first) else {
                return Err(Error::msg(format!("malformed GGUF merge {m:?} (expected \"left right\")")));
            };
            merges.push((m[..pos].to_string(), m[pos + 1..].to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(rules.ignore_merges)
            .build()
            .map_err(|e| tk_err("GGUF merges do not fit the vocabulary", e))?;

        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        for re in rules.regexes {
            let split =
                Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(|e| tk_err("pre-tokenizer regex", e))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(steps)));

        let types = |i: usize| v.token_types.get(i).copied().unwrap_or(TOKEN_NORMAL);
        let mut kinds = Vec::with_capacity(n);
        let mut specials = Vec::new();
        let mut user_defined = Vec::new();
        for (i, t) in v.tokens.iter().enumerate() {
            let kind = match types(i) {
                TOKEN_CONTROL | TOKEN_UNKNOWN => Kind::Special,
                TOKEN_USER_DEFINED => Kind::UserDefined,
                TOKEN_UNUSED => Kind::Unused,
                TOKEN_BYTE => Kind::Byte,
                _ => Kind::Normal,
            };
            match kind {
                Kind::Special => specials.push((t.clone(), i as u32, false, false)),
                Kind::UserDefined => user_defined.push(AddedToken::from(t.clone(), false).normalized(false)),
                _ => {}
            }
            kinds.push(kind);
        }
        // User-defined tokens are matched in any text, as llama.cpp does.
        inner.add_tokens(user_defined).map_err(|e| tk_err("user-defined tokens", e))?;

        let add_bos = v.add_bos.unwrap_or(rules.add_bos);
        if add_bos && v.bos.is_none() {
            return Err(Error::msg("GGUF asks to add a BOS token but has no tokenizer.ggml.bos_token_id"));
        }
        Ok(Tokenizer::assemble(inner, specials, v.tokens, kinds, Style::ByteLevel, v.bos, v.eos, add_bos, v.chat_template))
    }

    /// Reads the vocabulary from a GGUF file's metadata.
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<Tokenizer> {
        Tokenizer::from_gguf_vocab(GgufVocab::from_gguf(g)?)
    }

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
        // Ids may have gaps: cover the largest, so every id encode gives decodes.
        let max_id = inner.get_vocab(true).into_values().chain(added.keys().copied()).max();
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
                    specials.push((t.content.clone(), id, t.lstrip, t.rstrip));
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
        Ok(Tokenizer::assemble(inner, specials, texts, kinds, style, bos, eos, add_bos, chat_template))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        inner: tokenizers::Tokenizer,
        mut specials: Vec<(String, u32, bool, bool)>,
        texts: Vec<String>,
        kinds: Vec<Kind>,
        style: Style,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
        chat_template: Option<String>,
    ) -> Tokenizer {
        specials.retain(|s| !s.0.is_empty());
        // Longest first, so "<|im_start|>" wins over any token it contains; ties by id.
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let table = byte_level_decoder();
        let pieces = texts.iter().zip(&kinds).map(|(t, &k)| piece_bytes(t, k, style, &table)).collect();
        Tokenizer { inner, specials, texts, pieces, kinds, bos, eos, add_bos, chat_template }
    }

    /// Token ids of `text`, no BOS. With `parse_special`, control tokens written
    /// in the text (e.g. "<|im_start|>") become their ids; without, they are
    /// tokenized as plain text. User-defined tokens are always matched.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut frags: Vec<Frag> = vec![Frag::Text(text)];
        if parse_special {
            for (s, id, lstrip, rstrip) in &self.specials {
                if !text.contains(s.as_str()) {
                    continue;
                }
                frags = split_special(frags, s, *id, *lstrip, *rstrip);
            }
        }
        let mut out = Vec::new();
        for f in frags {
            match f {
                Frag::Id(id) => out.push(id),
                Frag::Text("") => {}
                Frag::Text(t) => {
                    let enc = self.inner.encode_fast(t, false).map_err(|e| tk_err("tokenizing failed", e))?;
                    out.extend_from_slice(enc.get_ids());
                }
            }
        }
        Ok(out)
    }

    /// Ids of a whole prompt: special tokens parsed, BOS first when the model
    /// wants one and the text does not already start with it (a chat template
    /// may write `bos_token` itself).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.encode(text, true)?;
        match self.bos {
            Some(bos) if self.add_bos && ids.first() != Some(&bos) => {
                let mut v = Vec::with_capacity(ids.len() + 1);
                v.push(bos);
                v.extend(ids);
                Ok(v)
            }
            _ => Ok(ids),
        }
    }

    /// Text of `ids`; special tokens appear as their text (skip them with
    /// `is_special` to hide markup), so for byte-level vocabularies
    /// `decode(encode(s, true)) == s`. Invalid UTF-8 (a sequence cut
    /// mid-character) becomes U+FFFD. SentencePiece-style vocabularies (from
    /// tokenizer.json) keep the leading space their normalizer prepends.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.piece(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Raw bytes of one token (may be part of a UTF-8 character); empty for
    /// unknown ids and unused tokens.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.piece(id).to_vec()
    }

    /// One token's text for display (lossy when it holds part of a character).
    pub fn id_to_piece(&self, id: u32) -> String {
        String::from_utf8_lossy(self.piece(id)).into_owned()
    }

    /// The token's string as stored in the vocabulary (e.g. "Ġworld").
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// Id of a vocabulary string, if present (normal or special).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        if let Some(s) = self.specials.iter().find(|s| s.0 == text) {
            return Some(s.1);
        }
        self.inner.token_to_id(text)
    }

    /// Whether the id is a control/unknown token (one that prints only as markup).
    pub fn is_special(&self, id: u32) -> bool {
        self.kinds.get(id as usize) == Some(&Kind::Special)
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode_prompt` starts prompts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation: eos plus the end-of-turn tokens of the common
    /// chat formats found in the vocabulary, sorted.
    pub fn eog_ids(&self) -> Vec<u32> {
        const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<end_of_turn>", "<|eom_id|>"];
        let mut ids: Vec<u32> = self.eos.into_iter().collect();
        for t in END_OF_TURN {
            if let Some(id) = self.token_id(t) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Number of ids (the logits' width).
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// The model's Jinja chat template, when the files carry one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Text of the BOS / EOS tokens ("" when absent), for chat templates.
    pub fn bos_text(&self) -> &str {
        self.bos.and_then(|id| self.token_text(id)).unwrap_or("")
    }

    pub fn eos_text(&self) -> &str {
        self.eos.and_then(|id| self.token_text(id)).unwrap_or("")
    }
}

enum Frag<'a> {
    Text(&'a str),
    Id(u32),
}

/// Cuts every occurrence of `special` out of the text fragments.
fn split_special<'a>(frags: Vec<Frag<'a>>, special: &str, id: u32, lstrip: bool, rstrip: bool) -> Vec<Frag<'a>> {
    let mut out = Vec::with_capacity(frags.len() + 2);
    for f in frags {
        let Frag::Text(mut rest) = f else {
            out.push(f);
            continue;
        };
        while let Some(pos) = rest.find(special) {
            let left = &rest[..pos];
            out.push(Frag::Text(if lstrip { left.trim_end() } else { left }));
            out.push(Frag::Id(id));
            rest = &rest[pos + special.len()..];
            if rstrip {
                rest = rest.trim_start();
            }
        }
        out.push(Frag::Text(rest));
    }
    out
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

/// Turns ids into text as they arrive, emitting only complete UTF-8 characters.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds one token; returns the text completed by it (maybe empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.push_bytes(tok.piece(id))
    }

    /// Adds raw bytes; returns the complete characters, holding back a trailing
    /// incomplete sequence. Bytes that can never be valid become U+FFFD.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // from_utf8 vouched for these bytes, so "lossy" loses nothing.
                    out.push_str(&String::from_utf8_lossy(&self.pending[start..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start = valid + bad;
                        }
                        None => {
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Whatever is still held back (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

impl GgufVocab {
    /// Reads the `tokenizer.ggml.*` keys (and `tokenizer.chat_template`).
    /// Absent special ids stay `None` (llama.cpp would fall back to id 11 for
    /// "gpt2" vocabularies; no real file relies on that).
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<GgufVocab> {
        const P: &str = "tokenizer.ggml.";
        let key = |k: &str| format!("{P}{k}");
        let has = |k: &str| g.get(&key(k)).is_some();
        let opt_id = |k: &str| -> Result<Option<u32>> {
            if !has(k) {
                return Ok(None);
            }
            let id = g.get_u64(&key(k))?;
            u32::try_from(id).map(Some).map_err(|_| Error::msg(format!("GGUF {P}{k} = {id} is not a token id")))
        };
        let strings = |k: &str| -> Result<Vec<String>> { Ok(g.get_str_array(&key(k))?.into_iter().map(str::to_string).collect()) };
        let model = g.get_str(&key("model"))?.to_string();
        let merges = if has("merges") { strings("merges")? } else { Vec::new() };
        let token_types = if has("token_type") { g.get_i64_array(&key("token_type"))?.into_iter().map(|t| t as i32).collect() } else { Vec::new() };
        Ok(GgufVocab {
            pre: if has("pre") { g.get_str(&key("pre"))?.to_string() } else { String::new() },
            tokens: strings("tokens")?,
            merges,
            token_types,
            bos: opt_id("bos_token_id")?,
            eos: opt_id("eos_token_id")?,
            unk: opt_id("unknown_token_id")?,
            pad: opt_id("padding_token_id")?,
            add_bos: if has("add_bos_token") { Some(g.get_bool(&key("add_bos_token"))?) } else { None },
            chat_template: match g.get("tokenizer.chat_template") {
                Some(_) => Some(g.get_str("tokenizer.chat_template")?.to_string()),
                None => None,
            },
            model,
        })
    }
}
