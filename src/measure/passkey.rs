//! Quest's pass-key retrieval prompt (the protocol, not its code): a task
//! line, filler sentences repeated up to the context budget, the line
//! "The pass key is N. Remember it. N is the pass key." inserted at a chosen
//! depth of the filler, then the question "What is the pass key? The pass
//! key is". The model's greedy answer is scored by its first integer.
//!
//! The prompt is built from separately tokenized pieces whose ids are
//! concatenated, so every count and offset is exact whatever the tokenizer
//! (each piece starts with a space, where byte-level BPE splits anyway).
//! Depth is measured in filler tokens: the key line sits after the sentence
//! boundary whose share of the filler tokens is closest to the depth asked,
//! so 0% puts it right after the task line and 100% right before the question.

use super::SplitMix;
use crate::template::{ChatTemplate, Message};
use crate::{Error, Result};

/// The instruction that opens the context.
pub const TASK: &str =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.";

/// Filler sentences, cycled in this order.
pub const FILLER: [&str; 5] = [" The grass is green.", " The sky is blue.", " The sun is yellow.", " Here we go.", " There and back again."];

/// The question, fed through the decode path after the context.
pub const QUESTION: &str = " What is the pass key?";

/// The start of the answer the model completes.
pub const ANSWER_LEAD: &str = "The pass key is";

/// The line holding the key.
pub fn key_line(key: u32) -> String {
    format!(" The pass key is {key}. Remember it. {key} is the pass key.")
}

/// What surrounds the task text: `head` ids come first (BOS, or a chat
/// template up to the user's message), `tail` is the text between the
/// question and the answer lead (empty for raw text; the end of the user
/// turn and the assistant header for a chat template).
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub head: Vec<u32>,
    pub tail: String,
}

impl Frame {
    /// The question tokens' text: `QUESTION`, the tail, then the answer lead.
    pub fn question_text(&self) -> String {
        if self.tail.is_empty() { format!("{QUESTION} {ANSWER_LEAD}") } else { format!("{QUESTION}{}{ANSWER_LEAD}", self.tail) }
    }
}

/// Where a chat template puts the user's message: (text before it, text
/// after it up to the assistant's turn). Errors when the template drops or
/// rewrites the message.
pub fn chat_parts(t: &ChatTemplate) -> Result<(String, String)> {
    const MARK: &str = "\u{1}PASSKEY-CONTENT\u{1}";
    let text = t.render(&[Message::new("user", MARK)], true)?;
    let (head, tail) = text.split_once(MARK).ok_or_else(|| Error::msg("the chat template does not reproduce the user's message; use --format raw"))?;
    Ok((head.to_string(), tail.to_string()))
}

/// A built prompt: `context` is prefilled, `question` decoded token by token.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub context: Vec<u32>,
    pub question: Vec<u32>,
    pub key: u32,
    /// Index in `context` where the filler (with the key line) begins.
    pub filler_start: usize,
    /// Index in `context` of the key line's first token, and its length.
    pub key_start: usize,
    pub key_len: usize,
    /// Filler tokens in all, and before the key line.
    pub filler_tokens: usize,
    pub filler_before: usize,
    /// Filler sentences in all.
    pub sentences: usize,
    /// Most tokens one filler sentence takes: the placement's resolution.
    pub sentence_tokens_max: usize,
}

impl Prompt {
    /// Context plus question tokens.
    pub fn len(&self) -> usize {
        self.context.len() + self.question.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the key line sits, as a fraction of the filler tokens (0..=1).
    pub fn depth(&self) -> f64 {
        if self.filler_tokens == 0 { 0.0 } else { self.filler_before as f64 / self.filler_tokens as f64 }
    }
}

/// Builds the prompt for `key` at `depth_pct` percent of the filler, with at
/// most `budget` tokens of context plus question (leave room for the answer
/// when choosing the budget). `tokenize` turns text into ids (no BOS;
/// special tokens parsed, for chat markup).
pub fn build(tokenize: &mut dyn FnMut(&str) -> Result<Vec<u32>>, frame: &Frame, budget: usize, depth_pct: f64, key: u32) -> Result<Prompt> {
    if !(0.0..=100.0).contains(&depth_pct) {
        return Err(Error::msg(format!("depth {depth_pct}% is outside 0..=100")));
    }
    let task = tokenize(TASK)?;
    let key_ids = tokenize(&key_line(key))?;
    let question = tokenize(&frame.question_text())?;
    let fillers: Vec<Vec<u32>> = FILLER.iter().map(|s| tokenize(s)).collect::<Result<_>>()?;
    let sentence_tokens_max = fillers.iter().map(Vec::len).max().unwrap_or(0);
    if fillers.iter().any(Vec::is_empty) {
        return Err(Error::msg("the tokenizer gives no tokens for a filler sentence"));
    }
    let fixed = frame.head.len() + task.len() + key_ids.len() + question.len();
    // At least a couple of filler sentences, or depth means nothing.
    let least = fixed + fillers[0].len() + fillers[1].len();
    if least > budget {
        return Err(Error::msg(format!("a pass-key prompt needs at least {least} tokens but only {budget} fit: raise --ctx")));
    }
    let mut chosen: Vec<usize> = Vec::new();
    let mut used = fixed;
    loop {
        let next = chosen.len() % fillers.len();
        if used + fillers[next].len() > budget {
            break;
        }
        used += fillers[next].len();
        chosen.push(next);
    }
    // Prefix sums of filler tokens at each sentence boundary.
    let mut prefix = vec![0usize];
    for &i in &chosen {
        prefix.push(prefix.last().copied().unwrap_or(0) + fillers[i].len());
    }
    let total = *prefix.last().unwrap_or(&0);
    let want = depth_pct / 100.0 * total as f64;
    let split = (0..prefix.len()).min_by(|&a, &b| (prefix[a] as f64 - want).abs().total_cmp(&(prefix[b] as f64 - want).abs())).unwrap_or(0);

    let mut context = Vec::with_capacity(used);
    context.extend_from_slice(&frame.head);
    context.extend_from_slice(&task);
    let filler_start = context.len();
    for &i in &chosen[..split] {
        context.extend_from_slice(&fillers[i]);
    }
    let key_start = context.len();
    context.extend_from_slice(&key_ids);
    for &i in &chosen[split..] {
        context.extend_from_slice(&fillers[i]);
    }
    Ok(Prompt {
        context,
        question,
        key,
        filler_start,
        key_start,
        key_len: key_ids.len(),
        filler_tokens: total,
        filler_before: prefix[split],
        sentences: chosen.len(),
        sentence_tokens_max,
    })
}

/// The first run of ASCII digits in `text` as a number (None when there is
/// none, or it does not fit in u64).
pub fn first_integer(text: &str) -> Option<u64> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: &str = &text[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Whether a decoded answer already holds a whole number: a run of digits
/// followed by something that is not a digit. Decoding stops there.
pub fn number_complete(text: &str) -> bool {
    match text.find(|c: char| c.is_ascii_digit()) {
        Some(start) => text[start..].contains(|c: char| !c.is_ascii_digit()),
        None => false,
    }
}

/// Whether an answer retrieves `key`: its first integer equals the key.
pub fn is_correct(answer: &str, key: u32) -> bool {
    first_integer(answer) == Some(key as u64)
}

/// The key of one trial: 5 digits (10000..=99999), fixed by the seed, the
/// trial and the depth, so every policy is asked the same keys.
pub fn key_for(seed: u64, trial: usize, depth_index: usize) -> u32 {
    let mut r = SplitMix::new(seed ^ ((trial as u64) << 24) ^ ((depth_index as u64) << 48));
    r.next_u64();
    10_000 + r.below(90_000) as u32
}
