//! The prefill/decode loop shared by `generate`, `chat`, `bench` and the
//! evaluations: feed a prompt, then one token at a time, with the sampler,
//! stop rules, streaming callback and timing; [`StopText`], which cuts
//! streamed text before a stop string; and [`PrefillBar`], a long prompt's
//! progress bar.

use crate::Result;
use crate::model::{Model, Output, Readout, TOPK};
use crate::sampler::{Candidate, Sampler};
use std::time::Instant;

/// Timings and counts of one prompt + answer.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub prompt_tokens: usize,
    pub prefill_secs: f64,
    pub gen_tokens: usize,
    pub decode_secs: f64,
}

impl Stats {
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_secs)
    }
    /// Decode rate over the tokens produced after the first (the first
    /// token comes out of the prefill).
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.gen_tokens.saturating_sub(1), self.decode_secs)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An end-of-generation token was produced (not emitted).
    EndOfText,
    /// The most tokens asked for (`-n`) were produced.
    Length,
    /// The callback asked to stop (e.g. Ctrl-C, a closed output).
    Interrupted,
    /// The context is full.
    ContextFull,
    /// The text reached a stop string (`--stop`).
    StopString,
}

impl Stop {
    /// The name used in `--json` output: `eos`, `length`, `interrupted`, `context_full`, `stop_string`.
    pub fn name(self) -> &'static str {
        match self {
            Stop::EndOfText => "eos",
            Stop::Length => "length",
            Stop::Interrupted => "interrupted",
            Stop::ContextFull => "context_full",
            Stop::StopString => "stop_string",
        }
    }

    /// Why it stopped, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Stop::EndOfText => "the model ended its answer",
            Stop::Length => "reached the token limit (-n)",
            Stop::Interrupted => "interrupted",
            Stop::ContextFull => "the context is full",
            Stop::StopString => "reached a stop string",
        }
    }
}

/// One prompt's answer.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Ids produced, without an end-of-generation token.
    pub tokens: Vec<u32>,
    pub stop: Stop,
    pub stats: Stats,
    /// How many of `tokens` are in the KV cache: all after an end token
    /// (the model read the last one to produce it), else all but the last.
    pub cached: usize,
}

/// Next token from the model's readout through the sampler.
pub fn choose(model: &mut Model, sampler: &mut Sampler, input: &[u32]) -> Result<u32> {
    if sampler.candidates_needed() <= 1 {
        match model.forward(input, Readout::Argmax)? {
            Output::Argmax(id) => return Ok(id),
            _ => unreachable!("argmax readout"),
        }
    }
    if sampler.wants_every_logit() {
        match model.forward(input, Readout::Logits)? {
            Output::Logits(l) => {
                let c: Vec<Candidate> = l.into_iter().enumerate().map(|(id, logit)| Candidate { id: id as u32, logit }).collect();
                return Ok(sampler.sample(&c));
            }
            _ => unreachable!("logits readout"),
        }
    }
    match model.forward(input, Readout::TopK)? {
        Output::TopK { cands, .. } => {
            let c: Vec<Candidate> = cands.into_iter().map(|(id, logit)| Candidate { id, logit }).collect();
            Ok(sampler.sample(&c))
        }
        _ => unreachable!("top-k readout"),
    }
}

/// `choose` from logits already read back (a batched decode step's): the
/// same candidates, taken on the CPU: the argmax where one is enough, else
/// every logit or the `TOPK` largest, as `choose` reads them.
pub fn choose_from(sampler: &mut Sampler, logits: &[f32]) -> u32 {
    let order = |a: &Candidate, b: &Candidate| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id));
    let c = logits.iter().enumerate().map(|(id, &logit)| Candidate { id: id as u32, logit });
    if sampler.candidates_needed() <= 1 {
        return c.min_by(order).map_or(0, |best| best.id);
    }
    let mut c: Vec<Candidate> = c.collect();
    if !sampler.wants_every_logit() && c.len() > TOPK {
        c.select_nth_unstable_by(TOPK - 1, order);
        c.truncate(TOPK);
    }
    sampler.sample(&c)
}

/// Feed `prompt` after what is cached, then generate up to `max_new` tokens
/// (`None`: until the model stops or the context is full). An id in `eog`
/// ends the answer (the sampler's banned ids are never drawn, see
/// `--ignore-eos`). `on_token(id)` is called for every produced token that
/// is not an end-of-generation id; returning `Some(reason)` stops there.
pub fn generate(
    model: &mut Model,
    sampler: &mut Sampler,
    prompt: &[u32],
    max_new: Option<usize>,
    eog: &[u32],
    mut on_token: impl FnMut(u32) -> Option<Stop>,
) -> Result<Generation> {
    let mut stats = Stats { prompt_tokens: prompt.len(), ..Default::default() };
    let mut out = Vec::new();
    if max_new == Some(0) {
        return Ok(Generation { tokens: out, stop: Stop::Length, stats, cached: 0 });
    }
    let t0 = Instant::now();
    let mut next = choose(model, sampler, prompt)?;
    stats.prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let stop = loop {
        stats.gen_tokens += 1;
        if eog.contains(&next) {
            break Stop::EndOfText;
        }
        sampler.accept(next);
        out.push(next);
        if let Some(reason) = on_token(next) {
            break reason;
        }
        if max_new.is_some_and(|m| out.len() >= m) {
            break Stop::Length;
        }
        if model.kv.room() == Some(0) {
            break Stop::ContextFull;
        }
        next = choose(model, sampler, &[next])?;
    };
    stats.decode_secs = t1.elapsed().as_secs_f64();
    let cached = if stop == Stop::EndOfText { out.len() } else { out.len().saturating_sub(1) };
    Ok(Generation { tokens: out, stop, stats, cached })
}

/// Streamed text cut before the first stop string: `push` returns what can
/// be shown now, holding back a tail that may still begin a stop string.
#[derive(Clone, Debug, Default)]
pub struct StopText {
    stops: Vec<String>,
    held: String,
    /// Every piece of text let through so far.
    pub text: String,
    /// Whether a stop string was reached (nothing more is let through).
    pub matched: bool,
}

impl StopText {
    /// Empty stop strings are ignored.
    pub fn new(stops: &[String]) -> StopText {
        StopText { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), ..StopText::default() }
    }

    /// Adds `piece`; returns the text that can no longer be part of a stop string.
    pub fn push(&mut self, piece: &str) -> String {
        if self.matched {
            return String::new();
        }
        self.held.push_str(piece);
        let first = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        let emit = match first {
            Some(at) => {
                self.matched = true;
                let out = self.held[..at].to_string();
                self.held.clear();
                out
            }
            None => {
                // The longest tail that begins some stop string stays back.
                let keep =
                    self.held.char_indices().map(|(i, _)| i).find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..]))).unwrap_or(self.held.len());
                let out = self.held[..keep].to_string();
                self.held.drain(..keep);
                out
            }
        };
        self.text.push_str(&emit);
        emit
    }

    /// At the end of the stream: `rest` (what the decoder still held) and
    /// the held-back tail, cut like any piece (nothing after a match).
    pub fn finish(&mut self, rest: &str) -> String {
        let mut out = self.push(rest);
        let tail = std::mem::take(&mut self.held);
        self.text.push_str(&tail);
        out.push_str(&tail);
        out
    }
}

/// Prompts at least this long show a prefill bar in `generate` and `chat`.
pub const PREFILL_BAR_TOKENS: usize = 1024;

/// A prefill bar for a prompt of `n` tokens on `model` (none for short
/// prompts): the model reports each chunk; `done` clears it.
pub struct PrefillBar<'m> {
    model: &'m mut Model,
    bar: Option<indicatif::ProgressBar>,
}

impl<'m> PrefillBar<'m> {
    pub fn new(model: &'m mut Model, n: usize) -> PrefillBar<'m> {
        let bar = (n >= PREFILL_BAR_TOKENS).then(|| {
            let b = crate::progress::bar(n as u64, "prefill {bar:30} {pos}/{len} tokens, {elapsed}");
            let report = b.clone();
            model.on_prefill = Some(Box::new(move |done, all| match done < all {
                true => report.set_position(done as u64),
                false => report.finish_and_clear(),
            }));
            b
        });
        PrefillBar { model, bar }
    }

    /// The model, to run the prompt on.
    pub fn model(&mut self) -> &mut Model {
        self.model
    }
}

impl Drop for PrefillBar<'_> {
    fn drop(&mut self) {
        self.model.on_prefill = None;
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopText;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let mut s = StopText::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut shown: Vec<String> = pieces.iter().map(|p| s.push(p)).collect();
        shown.push(s.finish(""));
        (shown, s.text.clone(), s.matched)
    }

    #[test]
    fn cuts_before_a_stop_string_split_over_pieces() {
        let (shown, text, matched) = run(&["\nUser:"], &["Hello", " there\n", "Us", "er: more", " ignored"]);
        assert_eq!(shown, ["Hello", " there", "", "", "", ""]);
        assert_eq!(text, "Hello there");
        assert!(matched);
    }

    #[test]
    fn a_false_start_is_let_through_once_it_diverges() {
        let (shown, text, matched) = run(&["END"], &["the E", "N", "d of it"]);
        assert_eq!(shown, ["the ", "", "ENd of it", ""]);
        assert_eq!(text, "the ENd of it");
        assert!(!matched);
    }

    #[test]
    fn earliest_of_several_stops_wins_and_unicode_is_kept_whole() {
        let (_, text, matched) = run(&["zz", "é!"], &["caf", "é", "!zz"]);
        assert_eq!(text, "caf");
        assert!(matched);
        let (_, text, matched) = run(&[], &["a", "b"]);
        assert_eq!((text.as_str(), matched), ("ab", false));
    }
}
