//! The bench timing loop, llama-bench style, shared by `wgkv bench` and
//! `benches/e2e.rs`.
//!
//! - `ppP`: prefill P tokens into an empty cache in one `forward` call
//!   (argmax readout); the whole call is timed.
//! - `tgN`: one untimed start token, then N tokens decoded one at a time,
//!   each feeding back the previous argmax; only the `forward` calls are timed.
//! - `tgN@dD`: the same after D tokens were prefilled (untimed, one `forward`
//!   call), so every decode step attends a cache of at least D tokens.
//!
//! Token ids are pseudo-random ids from the vocabulary (seeded, so every run
//! and every policy sees the same ones); no tokenizer, sampler or text is
//! involved. Each test starts with one untimed warm-up: a full run for `pp`
//! (it builds the prefill plans), a start token and a few decode steps for
//! `tg` (the decode plan does not depend on the depth). Every repetition
//! starts from an empty cache.

use super::SplitMix;
use super::record::{self, Device, Record};
use crate::model::{Model, Output, Readout};
use crate::{Error, Result};
use std::time::Instant;

/// Decode steps of a `tg` warm-up.
const WARMUP_DECODE: usize = 4;

/// What to measure: `-p`, `-n`, `--depth`, `-r`.
#[derive(Clone, Debug)]
pub struct Plan {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub depths: Vec<usize>,
    pub reps: usize,
    pub seed: u64,
}

/// One test: a prefill (`n_gen == 0`) or a decode at a depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub depth: usize,
}

impl Case {
    pub fn name(&self) -> String {
        record::test_name(self.n_prompt, self.n_gen, self.depth)
    }

    /// Cache slots the test fills.
    pub fn tokens(&self) -> usize {
        if self.n_gen == 0 { self.n_prompt } else { self.depth.max(1) + self.n_gen }
    }
}

impl Plan {
    /// `ppP` (when P > 0), then `tgN` / `tgN@dD` for every depth (when N > 0).
    pub fn cases(&self) -> Vec<Case> {
        let mut out = Vec::new();
        if self.n_prompt > 0 {
            out.push(Case { n_prompt: self.n_prompt, n_gen: 0, depth: 0 });
        }
        if self.n_gen > 0 {
            for &d in &self.depths {
                out.push(Case { n_prompt: 0, n_gen: self.n_gen, depth: d });
            }
        }
        out
    }

    /// Context the tests are loaded with: max(P, max depth + N + 1) (a
    /// `tgN@dD` fills D + N slots, a `tgN` 1 + N).
    pub fn ctx_needed(&self) -> usize {
        let decode = if self.n_gen > 0 { self.depths.iter().max().copied().unwrap_or(0) + self.n_gen + 1 } else { 0 };
        self.n_prompt.max(decode)
    }

    /// Forward runs the progress bar counts: per test, warm-up + reps.
    pub fn runs(&self) -> usize {
        self.cases().len() * (self.reps + 1)
    }

    pub fn validate(&self) -> Result<()> {
        if self.n_prompt == 0 && self.n_gen == 0 {
            return Err(Error::msg("nothing to measure: -p and -n are both 0"));
        }
        if self.reps == 0 {
            return Err(Error::msg("-r must be at least 1"));
        }
        Ok(())
    }
}

/// The numbers one test produced.
#[derive(Clone, Debug)]
pub struct Measured {
    pub case: Case,
    pub tokens_per_s: Vec<f64>,
    pub kv_bytes_resident: u64,
    pub kv_bytes_read_per_step: u64,
    pub kv_bytes_allocated: u64,
    pub kv_tokens_per_layer: Vec<usize>,
}

/// `n` pseudo-random token ids below `vocab`.
pub fn token_ids(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut r = SplitMix::new(seed);
    (0..n).map(|_| r.below(vocab as u64) as u32).collect()
}

fn argmax(o: Output) -> Result<u32> {
    match o {
        Output::Argmax(id) => Ok(id),
        _ => Err(Error::msg("internal: expected an argmax readout")),
    }
}

/// Tokens per second, finite even for a zero duration.
fn rate(tokens: usize, secs: f64) -> f64 {
    tokens as f64 / secs.max(1e-9)
}

/// One repetition of `case` from an empty cache; returns tokens per second.
/// `decode_limit` shortens a `tg` run (warm-up).
fn run_once(model: &mut Model, case: &Case, ids: &[u32], decode_limit: usize) -> Result<f64> {
    model.reset();
    if case.n_gen == 0 {
        let t = Instant::now();
        model.forward(&ids[..case.n_prompt], Readout::Argmax)?;
        return Ok(rate(case.n_prompt, t.elapsed().as_secs_f64()));
    }
    // Untimed: the depth's prefill, or a single start token.
    let start = case.depth.max(1);
    let mut next = argmax(model.forward(&ids[..start], Readout::Argmax)?)?;
    let n = case.n_gen.min(decode_limit);
    let mut secs = 0.0;
    for _ in 0..n {
        let t = Instant::now();
        next = argmax(model.forward(&[next], Readout::Argmax)?)?;
        secs += t.elapsed().as_secs_f64();
    }
    Ok(rate(n, secs))
}

/// Runs `case`: one warm-up, then `reps` timed repetitions. `progress` is
/// called after every run with its tokens per second (None for the warm-up).
pub fn run_case(model: &mut Model, case: &Case, reps: usize, seed: u64, progress: &mut dyn FnMut(Option<f64>)) -> Result<Measured> {
    if model.kv.room().is_some() && case.tokens() > model.kv.capacity {
        return Err(Error::msg(format!("{} needs {} cache slots but the model was loaded with --ctx {}", case.name(), case.tokens(), model.kv.capacity)));
    }
    let ids = token_ids(seed ^ ((case.n_prompt as u64) << 32) ^ case.depth as u64, case.tokens(), model.cfg.vocab_size);
    let warm = if case.n_gen == 0 { usize::MAX } else { WARMUP_DECODE };
    let warm_case = if case.n_gen == 0 { *case } else { Case { depth: 0, ..*case } };
    run_once(model, &warm_case, &ids, warm)?;
    progress(None);
    let mut tokens_per_s = Vec::with_capacity(reps);
    for _ in 0..reps {
        let r = run_once(model, case, &ids, usize::MAX)?;
        tokens_per_s.push(r);
        progress(Some(r));
    }
    let kv = model.kv.report();
    Ok(Measured {
        case: *case,
        tokens_per_s,
        kv_bytes_resident: kv.resident,
        kv_bytes_read_per_step: kv.read_per_step,
        kv_bytes_allocated: kv.allocated,
        kv_tokens_per_layer: kv.tokens_per_layer,
    })
}

/// The JSON record of a measured test.
pub fn to_record(model: &Model, model_name: &str, m: &Measured) -> Record {
    let (mean, std) = record::mean_std(&m.tokens_per_s);
    Record {
        schema: record::SCHEMA,
        wgkv_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: record::git_commit().to_string(),
        unix_time: record::unix_time(),
        device: Device::of(&model.gpu),
        model: model_name.to_string(),
        weight_type: model.weight_type.clone(),
        kv: model.kv.spec.to_string(),
        ctx: model.kv.capacity,
        test: m.case.name(),
        n_prompt: m.case.n_prompt,
        n_gen: m.case.n_gen,
        depth: m.case.depth,
        reps: m.tokens_per_s.len(),
        tokens_per_s: m.tokens_per_s.clone(),
        mean,
        std,
        kv_bytes_resident: m.kv_bytes_resident,
        kv_bytes_read_per_step: m.kv_bytes_read_per_step,
        kv_bytes_allocated: m.kv_bytes_allocated,
        kv_tokens_per_layer: m.kv_tokens_per_layer.clone(),
        source: String::new(),
    }
}
