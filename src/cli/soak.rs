//! `wgkv eval soak`: a long chat that never ends on its own. Turn after
//! turn a user message is answered, as `wgkv chat` would (only the new text
//! is prefilled, the cache is kept); when a policy without eviction fills
//! the context the conversation is reset, as a user would with `/reset`.
//! At checkpoints it reports the process's resident memory, the KV cache's
//! resident and allocated bytes and the turn's decode speed, so a leak or a
//! slowdown over thousands of turns shows as a trend.

use super::load::{RunArgs, load};
use crate::generate::generate;
use crate::sampler::{Sampler, SamplerConfig};
use crate::template::Message;
use crate::{Error, Result};
use serde_json::json;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Turns to run.
    #[arg(long, default_value_t = 2000)]
    pub turns: usize,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 16)]
    pub n: usize,
    /// Report every this many turns (and at turn 10 and the last).
    #[arg(long, default_value_t = 250)]
    pub every: usize,
    /// One JSON object at the end instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The user's lines, in turn.
const LINES: &[&str] = &[
    "Tell me one fact about the sea.",
    "Name a colour and a fruit of that colour.",
    "What is two plus three?",
    "Say something kind in a few words.",
    "Which is larger, a cat or a mouse?",
    "Give me a word that rhymes with light.",
];

/// One checkpoint.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub turn: usize,
    pub rss_mib: f64,
    pub kv_resident_mib: f64,
    pub kv_allocated_mib: f64,
    /// Decode tokens/s of this turn's answer.
    pub decode_tok_s: f64,
    /// Mean decode tokens/s since the previous checkpoint.
    pub window_tok_s: f64,
    pub cached_tokens: usize,
    pub resets: usize,
}

/// This process's resident set (VmRSS, Linux), in MiB; 0 where unknown.
fn rss_mib() -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = text.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

pub fn run(global: &super::Global, a: SoakArgs) -> Result<()> {
    if a.turns == 0 || a.n == 0 || a.every == 0 {
        return Err(Error::msg("--turns, -n and --every must be at least 1"));
    }
    let mut l = load(global, &a.run)?;
    let template = l.template.take().ok_or_else(|| Error::msg("this model has no chat template; soak runs a chat"))?;
    let eog = l.tokenizer.eog_ids();
    let mut sampler = Sampler::new(SamplerConfig { temperature: 0.0, ..SamplerConfig::default() });
    let (mut messages, mut fed) = (Vec::<Message>::new(), String::new());
    let (mut rows, mut resets) = (Vec::new(), 0);
    let (mut win_tokens, mut win_secs) = (0usize, 0f64);
    let t0 = Instant::now();
    for turn in 1..=a.turns {
        messages.push(Message::new("user", LINES[(turn - 1) % LINES.len()]));
        let mut full = template.render(&messages, true)?;
        let mut new_text = full.strip_prefix(fed.as_str()).filter(|_| !fed.is_empty()).map(str::to_string);
        let mut ids = match &new_text {
            Some(t) => l.tokenizer.encode(t, true)?,
            None => l.tokenizer.encode_prompt(&full)?,
        };
        if l.model.kv.room().is_some_and(|room| ids.len() + a.n > room) {
            // The context is full: start over with this message (`/reset`).
            resets += 1;
            messages = vec![messages.pop().unwrap()];
            l.model.reset();
            full = template.render(&messages, true)?;
            new_text = None;
            ids = l.tokenizer.encode_prompt(&full)?;
        }
        let g = generate(&mut l.model, &mut sampler, &ids, Some(a.n), &eog, |_| None)?;
        let stats = g.stats;
        // The cache holds every answer token but the last (unless it ended on an end token).
        let cached = l.tokenizer.decode(&g.tokens[..g.cached]);
        fed = match new_text {
            Some(t) => format!("{fed}{t}{cached}"),
            None => format!("{full}{cached}"),
        };
        messages.push(Message::new("assistant", l.tokenizer.decode(&g.tokens)));
        win_tokens += stats.gen_tokens;
        win_secs += stats.decode_secs;
        if turn == 10 || turn % a.every == 0 || turn == a.turns {
            let kv = &l.model.kv;
            let report = kv.report();
            let row = Row {
                turn,
                rss_mib: rss_mib(),
                kv_resident_mib: mib(report.resident),
                kv_allocated_mib: mib(report.allocated),
                decode_tok_s: stats.decode_tok_s(),
                window_tok_s: if win_secs > 0.0 { win_tokens as f64 / win_secs } else { 0.0 },
                cached_tokens: kv.len,
                resets,
            };
            (win_tokens, win_secs) = (0, 0.0);
            if !a.json {
                if rows.is_empty() {
                    println!(
                        "| turn | RSS MiB | KV resident MiB | KV allocated MiB | cached tokens | resets | decode t/s (turn) | decode t/s (since last row) |"
                    );
                    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
                }
                println!(
                    "| {} | {:.1} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} |",
                    row.turn, row.rss_mib, row.kv_resident_mib, row.kv_allocated_mib, row.cached_tokens, row.resets, row.decode_tok_s, row.window_tok_s
                );
            }
            rows.push(row);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let mut out = json!({
            "adapter": l.model.gpu.describe(),
            "kv": l.model.kv.spec.to_string(),
            "ctx": l.model.kv.capacity,
            "turns": a.turns,
            "tokens_per_answer": a.n,
            "seconds": secs,
            "rows": rows,
        });
        crate::measure::record::Stamp::new(Some(&l.model.gpu), &l.model_name).merge_into(&mut out);
        println!("{out}");
    } else {
        eprintln!("{} turns in {secs:.0} s under --kv {}", a.turns, l.model.kv.spec);
    }
    Ok(())
}
