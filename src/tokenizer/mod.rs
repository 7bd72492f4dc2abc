//! Text to token ids and back, matching llama.cpp's ids for GGUF vocabularies.
//!
//! Two sources build the same [`Tokenizer`]:
//! - GGUF metadata (`tokenizer.ggml.*`), through [`GgufVocab`] (plain data) and
//!   the thin adapter [`Tokenizer::from_gguf`]. The `tokenizer.ggml.model`
//!   picks the algorithm, each written here after llama.cpp's
//!   (`src/llama-vocab.cpp`):
//!   - `gpt2`: byte-level BPE ([`bpe`]); `tokenizer.ggml.pre` names the
//!     pre-tokenizer ([`pretokenize`] lists the supported names).
//!   - `llama`: SentencePiece ([`spm`]): score-ordered merges, `<0xXX>` byte
//!     fallback, spaces written as U+2581, and a space put before the text
//!     (and after every special token) unless `tokenizer.ggml.add_space_prefix`
//!     is false, as in Gemma 3's files.
//!   - `gemma4`: BPE over UTF-8 with U+2581 for spaces and `<0xXX>` byte
//!     fallback (Gemma 4).
//!
//!   Any other model (`bert`, `t5`, `rwkv`, ...) is refused by name.
//! - A Hugging Face directory (`tokenizer.json`, optional `tokenizer_config.json`
//!   and `chat_template.jinja`), through [`Tokenizer::from_hf_dir`], which
//!   runs the `tokenizers` crate.
//!
//! Special tokens are cut out of the text first, longest first, the way
//! llama.cpp partitions text: control tokens only when asked
//! (`parse_special`), user-defined ones always. Decoding does not need the
//! algorithm: every id has its raw bytes precomputed, so streaming output can
//! hold back incomplete UTF-8.
//!
//! BOS: llama.cpp adds BOS when the model asks for it: by default a
//! SentencePiece vocabulary does, a byte-pair one does not (Llama 3's
//! `llama-bpe` and Gemma 4 do), and `tokenizer.ggml.add_bos_token` overrides
//! the default (Gemma 4 adds BOS whatever it says). The SmolLM2 GGUF stores
//! `add_bos_token = false` (bos = `<|im_start|>`, eos = `<|im_end|>`), so no
//! BOS is added, as in llama.cpp's ids for it
//! (`tests/reference/smollm2-135m/tokenize.json`).

mod bpe;
mod hf;
mod pretokenize;
mod spm;

use crate::error::{Error, Result, show};
use std::collections::HashMap;

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
    /// `tokenizer.ggml.model`: "gpt2", "llama" or "gemma4".
    pub model: String,
    /// `tokenizer.ggml.pre`; empty means llama.cpp's "default".
    pub pre: String,
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities); empty means all zero.
    pub scores: Vec<f32>,
    /// "left right" pairs, highest priority first.
    pub merges: Vec<String>,
    /// One `TOKEN_*` per token; empty means all normal.
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; `None` (absent) uses the model's default.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`; `None` uses the model's default (SentencePiece: yes).
    pub add_space_prefix: Option<bool>,
    /// `general.name`: llama.cpp strips the spaces after Phi-3's special tokens by it.
    pub name: String,
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

/// A token cut out of the text before the algorithm runs.
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Spaces before it (`lstrip`) or after it (`rstrip`) go with it.
    lstrip: bool,
    rstrip: bool,
    /// Cut out even without `parse_special` (user-defined tokens).
    always: bool,
}

/// The algorithm that turns plain text (no special tokens) into ids.
enum Engine {
    Bpe(Box<bpe::Bpe>),
    Spm(Box<spm::Spm>),
    Hf(Box<tokenizers::Tokenizer>),
}

/// A loaded tokenizer: encode, decode, special ids, chat template source.
pub struct Tokenizer {
    engine: Engine,
    /// Every token's text to its id.
    ids: HashMap<String, u32>,
    /// Longest first.
    specials: Vec<Special>,
    texts: Vec<String>,
    pieces: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
    eog: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    /// SentencePiece: a space goes before the text and after each special token.
    add_space_prefix: bool,
    chat_template: Option<String>,
}

/// Everything a tokenizer is built from, whatever the source.
struct Parts {
    engine: Engine,
    ids: HashMap<String, u32>,
    specials: Vec<Special>,
    texts: Vec<String>,
    kinds: Vec<Kind>,
    style: Style,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_space_prefix: bool,
    chat_template: Option<String>,
}

/// Texts llama.cpp treats as the end of generation (and so as control tokens).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{FF5C}end\u{2581}of\u{2581}sentence\u{FF5C}>",
    "[e~[",
    // Qwen's fill-in-the-middle padding, repository and file separators.
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|fim_repo|>",
    "<|file_sep|>",
];

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

/// The model names llama.cpp knows that wgkv does not tokenize, with what they are.
fn unsupported_model(model: &str) -> Error {
    let what = match model {
        "bert" => " (WordPiece)",
        "t5" => " (Unigram)",
        "rwkv" => " (RWKV)",
        "plamo2" => " (PLaMo-2)",
        "none" | "no_vocab" => " (no vocabulary)",
        _ => "",
    };
    Error::msg(format!(
        "GGUF tokenizer model '{}'{what} is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece), gemma4 (SentencePiece-style BPE)",
        show(model)
    ))
}

impl Tokenizer {
    /// Builds the tokenizer llama.cpp would build from these GGUF fields.
    pub fn from_gguf_vocab(v: GgufVocab) -> Result<Tokenizer> {
        let n = v.tokens.len();
        let sentencepiece = match v.model.as_str() {
            "llama" => true,
            "gpt2" | "gemma4" => false,
            other => return Err(unsupported_model(other)),
        };
        // llama.cpp treats the model "gemma4" as pre-tokenizer "gemma4" whatever the file says.
        let pre = if v.model == "gemma4" { "gemma4" } else { v.pre.as_str() };
        let rules = if sentencepiece { None } else { Some(pretokenize::rules_for(pre)?) };
        if n == 0 {
            return Err(Error::msg("GGUF vocabulary has no tokens"));
        }
        if !v.token_types.is_empty() && v.token_types.len() != n {
            return Err(Error::msg(format!("GGUF vocabulary has {n} tokens but {} token types", v.token_types.len())));
        }
        if !v.scores.is_empty() && v.scores.len() != n {
            return Err(Error::msg(format!("GGUF vocabulary has {n} tokens but {} scores", v.scores.len())));
        }
        // SentencePiece files that name no bos, eos or unknown id get llama.cpp's defaults.
        let default = |id: u32| (sentencepiece && (id as usize) < n).then_some(id);
        let (bos, eos, unk) = (v.bos.or(default(1)), v.eos.or(default(2)), v.unk.or(default(0)));
        for (what, id) in [("bos", bos), ("eos", eos), ("unknown", unk), ("padding", v.pad)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(Error::msg(format!("GGUF {what} token id {id} is outside the vocabulary ({n} tokens)")));
            }
        }

        let mut texts = v.tokens;
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in texts.iter_mut().enumerate() {
            if t.is_empty() {
                // llama.cpp's name for an empty token, so it stays unique.
                *t = format!("[EMPTY_{i}]");
            }
            if ids.insert(t.clone(), i as u32).is_some() {
                return Err(Error::msg(format!("duplicate token \"{}\" in GGUF vocabulary (id {i})", show(t))));
            }
        }

        let mut kinds: Vec<Kind> = (0..n)
            .map(|i| match v.token_types.get(i).copied().unwrap_or(TOKEN_NORMAL) {
                TOKEN_CONTROL | TOKEN_UNKNOWN => Kind::Special,
                TOKEN_USER_DEFINED => Kind::UserDefined,
                TOKEN_UNUSED => Kind::Unused,
                TOKEN_BYTE => Kind::Byte,
                _ => Kind::Normal,
            })
            .collect();
        // End-of-generation tokens are control tokens whatever the file says (llama.cpp).
        for id in end_of_generation(&ids) {
            kinds[id as usize] = Kind::Special;
        }
        // Gemma 4 (marked by <|tool_response>) has a normal </s>.
        if ids.contains_key("<|tool_response>")
            && let Some(&id) = ids.get("</s>")
        {
            kinds[id as usize] = Kind::Normal;
        }
        let phi3 = {
            let name = v.name.to_lowercase();
            name.contains("phi-3") || name.contains("phi3")
        };
        let mut specials = Vec::new();
        for (i, (t, &k)) in texts.iter().zip(&kinds).enumerate() {
            if matches!(k, Kind::Special | Kind::UserDefined) {
                // Phi-3: spaces after special tokens (and </s>) are dropped, except after <unk>, <s> and <|endoftext|>.
                let rstrip = phi3 && !matches!(t.as_str(), "<unk>" | "<s>" | "<|endoftext|>");
                specials.push(Special { text: t.clone(), id: i as u32, lstrip: false, rstrip, always: k == Kind::UserDefined });
            }
        }

        let (engine, style, add_bos, add_space_prefix) = match rules {
            None => {
                let scores = if v.scores.is_empty() { vec![0.0; n] } else { v.scores };
                (Engine::Spm(Box::new(spm::Spm::new(&ids, scores, unk))), Style::Metaspace, v.add_bos.unwrap_or(true), v.add_space_prefix.unwrap_or(true))
            }
            Some(rules) => {
                let style = if rules.byte_encode { Style::ByteLevel } else { Style::Metaspace };
                // Gemma 4 always starts with BOS (llama.cpp overrides a file that says otherwise).
                let add_bos = if pre == "gemma4" { true } else { v.add_bos.unwrap_or(rules.add_bos) };
                (Engine::Bpe(Box::new(bpe::Bpe::new(rules, &ids, &v.merges)?)), style, add_bos, false)
            }
        };
        if add_bos && bos.is_none() {
            return Err(Error::msg("GGUF asks to add a BOS token but has no tokenizer.ggml.bos_token_id"));
        }
        Ok(Tokenizer::assemble(Parts { engine, ids, specials, texts, kinds, style, bos, eos, add_bos, add_space_prefix, chat_template: v.chat_template }))
    }

    /// Reads the vocabulary from a GGUF file's metadata.
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<Tokenizer> {
        Tokenizer::from_gguf_vocab(GgufVocab::from_gguf(g)?)
    }

    fn assemble(p: Parts) -> Tokenizer {
        let Parts { engine, ids, mut specials, texts, kinds, style, bos, eos, add_bos, add_space_prefix, chat_template } = p;
        specials.retain(|s| !s.text.is_empty());
        // Longest first, so "<|im_start|>" wins over any token it contains; ties by id.
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        let table = bpe::char_bytes();
        let pieces = texts.iter().zip(&kinds).map(|(t, &k)| piece_bytes(t, k, style, &table)).collect();
        let mut eog = end_of_generation(&ids);
        eog.extend(eos);
        eog.sort_unstable();
        eog.dedup();
        Tokenizer { engine, ids, specials, texts, pieces, kinds, eog, bos, eos, add_bos, add_space_prefix, chat_template }
    }

    /// Token ids of `text`, no BOS. With `parse_special`, control tokens written
    /// in the text (e.g. "<|im_start|>") become their ids; without, they are
    /// tokenized as plain text. User-defined tokens are always matched.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut frags: Vec<Frag> = vec![Frag::Text(text)];
        for s in self.specials.iter().filter(|s| parse_special || s.always) {
            if text.contains(s.text.as_str()) {
                frags = split_special(frags, s);
            }
        }
        let mut out = Vec::new();
        // SentencePiece puts a space before the text and after each special token.
        let mut after_special = true;
        for f in frags {
            match f {
                Frag::Id(id) => {
                    out.push(id);
                    after_special = true;
                }
                Frag::Text("") => {}
                Frag::Text(t) => {
                    match &self.engine {
                        Engine::Bpe(b) => b.encode(&self.ids, t, &mut out)?,
                        Engine::Spm(s) => {
                            let space = if self.add_space_prefix && after_special { "\u{2581}" } else { "" };
                            s.encode(&self.ids, &format!("{space}{}", t.replace(' ', "\u{2581}")), &mut out)?
                        }
                        Engine::Hf(inner) => {
                            let enc = inner.encode_fast(t, false).map_err(|e| hf::tk_err("tokenizing failed", e))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                    }
                    after_special = false;
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

    /// Text of `ids`: every token's bytes in order, special tokens as their
    /// text (skip them with `is_special` to hide markup), so for byte-level
    /// vocabularies `decode(encode(s, true)) == s`. Invalid UTF-8 (a sequence
    /// cut mid-character) becomes U+FFFD. SentencePiece vocabularies that add
    /// a space prefix keep the space their encoder put first (as the model
    /// sees it), so there `decode(encode(s, false)) == " " + s`.
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
        self.ids.get(text).copied()
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

    /// Whether SentencePiece encoding puts a space before the text.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Ids that end generation, sorted: eos and the tokens llama.cpp ends
    /// generation on by their text (end of turn, end of text, Qwen's
    /// fill-in-the-middle separators).
    pub fn eog_ids(&self) -> Vec<u32> {
        self.eog.clone()
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

/// The ids of the end-of-generation texts present; OpenAI's harmony format
/// (both <|return|> and <|call|>) uses <|end|> inside a turn, and Gemma 4
/// (<|tool_response>) has a normal </s>, so those two do not count there.
fn end_of_generation(ids: &HashMap<String, u32>) -> Vec<u32> {
    let has = |t: &str| ids.contains_key(t);
    let harmony = has("<|return|>") && has("<|call|>");
    let gemma4 = has("<|tool_response>");
    END_OF_GENERATION.iter().filter(|&&t| !((harmony && t == "<|end|>") || (gemma4 && t == "</s>"))).filter_map(|&t| ids.get(t).copied()).collect()
}

enum Frag<'a> {
    Text(&'a str),
    Id(u32),
}

/// C's `isspace`, which llama.cpp strips with.
fn c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Cuts every occurrence of `special` out of the text fragments.
fn split_special<'a>(frags: Vec<Frag<'a>>, special: &Special) -> Vec<Frag<'a>> {
    let s = special.text.as_str();
    let mut out = Vec::with_capacity(frags.len() + 2);
    for f in frags {
        let Frag::Text(mut rest) = f else {
            out.push(f);
            continue;
        };
        while let Some(pos) = rest.find(s) {
            let left = &rest[..pos];
            out.push(Frag::Text(if special.lstrip { left.trim_end_matches(c_space) } else { left }));
            out.push(Frag::Id(special.id));
            rest = &rest[pos + s.len()..];
            if special.rstrip {
                rest = rest.trim_start_matches(c_space);
            }
        }
        out.push(Frag::Text(rest));
    }
    out
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
    /// Reads the `tokenizer.ggml.*` keys (and `tokenizer.chat_template`,
    /// `general.name`). Absent special ids stay `None` here (llama.cpp would
    /// fall back to id 11 for "gpt2" vocabularies; no real file relies on
    /// that; SentencePiece's defaults 1, 2, 0 are applied when building).
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
        let opt_bool = |k: &str| -> Result<Option<bool>> { if has(k) { g.get_bool(&key(k)).map(Some) } else { Ok(None) } };
        let strings = |k: &str| -> Result<Vec<String>> { Ok(g.get_str_array(&key(k))?.into_iter().map(str::to_string).collect()) };
        let model = g.get_str(&key("model"))?.to_string();
        let merges = if has("merges") { strings("merges")? } else { Vec::new() };
        let token_types = if has("token_type") { g.get_i64_array(&key("token_type"))?.into_iter().map(|t| t as i32).collect() } else { Vec::new() };
        // Scores are floats; llama.cpp also takes integers.
        let scores = match has("scores") {
            false => Vec::new(),
            true => match g.get_f32_array(&key("scores")) {
                Ok(s) => s,
                Err(e) => g.get_i64_array(&key("scores")).map(|s| s.into_iter().map(|x| x as f32).collect()).map_err(|_| e)?,
            },
        };
        Ok(GgufVocab {
            pre: if has("pre") { g.get_str(&key("pre"))?.to_string() } else { String::new() },
            tokens: strings("tokens")?,
            scores,
            merges,
            token_types,
            bos: opt_id("bos_token_id")?,
            eos: opt_id("eos_token_id")?,
            unk: opt_id("unknown_token_id")?,
            pad: opt_id("padding_token_id")?,
            add_bos: opt_bool("add_bos_token")?,
            add_space_prefix: opt_bool("add_space_prefix")?,
            name: match g.get("general.name") {
                Some(_) => g.get_str("general.name")?.to_string(),
                None => String::new(),
            },
            chat_template: match g.get("tokenizer.chat_template") {
                Some(_) => Some(g.get_str("tokenizer.chat_template")?.to_string()),
                None => None,
            },
            model,
        })
    }
}
