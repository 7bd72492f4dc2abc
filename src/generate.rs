//! The prefill/decode loop shared by `generate`, `chat`, `bench` and the
//! evaluations: feed a prompt, then one token at a time, with the sampler,
//! stop rules, streaming callback and timing.

use crate::model::{Model, Output, Readout};
use crate::sampler::{Candidate, Sampler};
use crate::Result;
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
    /// `max_new` tokens were produced.
    Length,
    /// The callback asked to stop (e.g. Ctrl-C).
    Interrupted,
    /// The context is full.
    ContextFull,
}

/// Next token from the model's readout through the sampler.
fn choose(model: &mut Model, sampler: &mut Sampler, input: &[u32]) -> Result<u32> {
    if sampler.candidates_needed() <= 1 {
        match model.forward(input, Readout::Argmax)? {
            Output::Argmax(id) => return Ok(id),
            _ => unreachable!("argmax readout"),
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

/// Feed `prompt` after what is cached, then generate up to `max_new` tokens.
/// `on_token(id)` is called for every produced token that is not an
/// end-of-generation id; returning `false` stops. Returns the ids produced
/// (without the end token), why it stopped, and timings.
pub fn generate(
    model: &mut Model,
    sampler: &mut Sampler,
    prompt: &[u32],
    max_new: usize,
    eog: &[u32],
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(Vec<u32>, Stop, Stats)> {
    let mut stats = Stats { prompt_tokens: prompt.len(), ..Default::default() };
    let mut out = Vec::new();
    if max_new == 0 {
        return Ok((out, Stop::Length, stats));
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
        if !on_token(next) {
            break Stop::Interrupted;
        }
        if out.len() >= max_new {
            break Stop::Length;
        }
        if model.kv.room() == Some(0) {
            break Stop::ContextFull;
        }
        next = choose(model, sampler, &[next])?;
    };
    stats.decode_secs = t1.elapsed().as_secs_f64();
    Ok((out, stop, stats))
}
