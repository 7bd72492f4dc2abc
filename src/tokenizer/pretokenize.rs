//! Pre-tokenizers: how a byte-pair vocabulary cuts text into words before
//! merging, one entry per `tokenizer.ggml.pre` name llama.cpp knows and wgkv
//! supports (llama.cpp's `src/llama-vocab.cpp` holds the same table).
//!
//! A rule is a list of regexes applied in order, each to the pieces the
//! previous one left: every match becomes a piece, and so does every stretch
//! between matches (the "isolated" split of Hugging Face tokenizers), so no
//! text is ever lost. The regexes are the models' own (from their
//! `tokenizer.json`), with `(?i:'s|...)` spelled out case by case as llama.cpp
//! does.

use crate::error::{Error, Result, show};
use fancy_regex::Regex;

/// How a byte-pair vocabulary treats text before and around merging.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreRules {
    pub regexes: &'static [&'static str],
    /// A word that is itself a token is taken whole, without merges (Llama 3).
    pub ignore_merges: bool,
    /// Whether prompts start with BOS when the file does not say.
    pub add_bos: bool,
    /// Words go through GPT-2's byte-to-character alphabet before merging;
    /// when false they stay UTF-8 and unknown bytes become `<0xXX>` tokens.
    pub byte_encode: bool,
    /// Spaces become U+2581 before splitting (SentencePiece-style BPE: Gemma 4).
    pub escape_spaces: bool,
    /// A word of newlines only is taken whole when it is a token (Gemma 4).
    pub whole_newlines: bool,
}

/// GPT-2's split (llama.cpp's `unicode_regex_split_custom_gpt2` implements the same).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3: letters may take one leading non-letter, digits in threes, newlines kept with punctuation.
const LLAMA3: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2: as Llama 3 with single digits.
const QWEN2: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5: as Qwen 2 with combining marks kept in words.
const QWEN35: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Characters outside ASCII are written as `\x{..}` escapes: a copy of the
/// characters themselves could be Unicode-normalized on the way (U+1F7D to U+03CE).
///
/// DeepSeek LLM: newlines, Latin/Greek/Cyrillic/... words, ASCII and full-width punctuation, trailing spaces, CJK runs, digit runs.
const DEEPSEEK_LLM: &[&str] = &[
    r"[\r\n]",
    r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+",
    r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
    r"\s+$",
    r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
    r"\p{N}+",
];
/// DeepSeek Coder: newlines, words, punctuation runs, CJK runs, single digits.
const DEEPSEEK_CODER: &[&str] = &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+", r"\p{N}"];
/// Falcon: punctuation and symbol runs first, then GPT-2, then digits in threes.
const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"];
/// llama.cpp's fallback for a vocabulary that names no pre-tokenizer.
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
/// Runs of newlines and runs of anything else.
const NEWLINES: &str = "[^\n]+|\n+";

const fn rules(regexes: &'static [&'static str]) -> PreRules {
    PreRules { regexes, ignore_merges: false, add_bos: false, byte_encode: true, escape_spaces: false, whole_newlines: false }
}

/// Names grouped by the rules they share, as llama.cpp groups them.
const TABLE: &[(&[&str], PreRules)] = &[
    (&["", "default"], rules(DEFAULT)),
    (&["gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4", "gigachat", "a.x-4.0", "mellum", "modern-bert"], rules(&[GPT2])),
    // Digits one by one, then the GPT-2 split.
    (&["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"], rules(&[r"\p{N}", GPT2])),
    (
        &["llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
        PreRules { ignore_merges: true, add_bos: true, ..rules(&[LLAMA3]) },
    ),
    (&["dbrx", "smaug-bpe"], rules(&[LLAMA3])),
    (&["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2"], rules(&[QWEN2])),
    (&["qwen35"], rules(&[QWEN35])),
    (&["deepseek-llm"], rules(DEEPSEEK_LLM)),
    (&["deepseek-coder"], rules(DEEPSEEK_CODER)),
    (&["falcon"], rules(FALCON)),
    (&["gemma4", "granite-embed-multi-311m"], PreRules { byte_encode: false, escape_spaces: true, whole_newlines: true, add_bos: true, ..rules(&[NEWLINES]) }),
];

/// The rules for a `tokenizer.ggml.pre` name; an unknown name is one error line listing the known ones.
pub(crate) fn rules_for(pre: &str) -> Result<PreRules> {
    if let Some((_, r)) = TABLE.iter().find(|(names, _)| names.contains(&pre)) {
        return Ok(*r);
    }
    let known: Vec<&str> = TABLE.iter().flat_map(|(names, _)| names.iter().copied()).filter(|n| !n.is_empty()).collect();
    Err(Error::msg(format!("unsupported pre-tokenizer '{}' (supported: {})", show(pre), known.join(", "))))
}

/// Compiled split rules.
pub(crate) struct PreTokenizer {
    regexes: Vec<Regex>,
}

impl PreTokenizer {
    pub fn new(rules: &PreRules) -> Result<PreTokenizer> {
        let regexes =
            rules.regexes.iter().map(|re| Regex::new(re).map_err(|e| Error::msg(format!("pre-tokenizer regex {re:?}: {e}")))).collect::<Result<_>>()?;
        Ok(PreTokenizer { regexes })
    }

    /// The words of `text`, in order; together they are exactly `text`.
    pub fn split<'a>(&self, text: &'a str) -> Result<Vec<&'a str>> {
        let mut pieces = if text.is_empty() { Vec::new() } else { vec![text] };
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for p in pieces {
                let mut last = 0;
                for m in re.find_iter(p) {
                    let m = m.map_err(|e| Error::msg(format!("pre-tokenizer: {e}")))?;
                    // The text before a match is a piece too; an empty match only marks a cut.
                    if m.start() > last {
                        next.push(&p[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < p.len() {
                    next.push(&p[last..]);
                }
            }
            pieces = next;
        }
        Ok(pieces)
    }
}
