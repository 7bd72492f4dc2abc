//! `streaming` eviction (StreamingLLM, arXiv 2309.17453): keep the
//! first `sinks` tokens and the most recent ones within a fixed budget of
//! slots per layer, so a chat can run on indefinitely in bounded memory.
//!
//! When a call of `n` tokens would pass the budget, the cache is compacted
//! to `budget - max(n, slack)` slots (the sinks plus the most recent tokens),
//! then the call appends its tokens: at most `budget` slots are ever used,
//! and a decode step compacts once every `slack` tokens instead of every
//! step. Keys are stored post-RoPE, so kept tokens keep their original
//! positions (StreamingLLM re-numbers positions inside the cache; that needs
//! keys stored before RoPE, which wgkv does not do).

use super::super::seam::Cut;
use super::super::spec::{Budget, Part};
use crate::ops::evict::MAX_KEEP;
use crate::{Error, Result};

/// Options of the `streaming` part: `budget=N|P%` (default 1024), `sinks=4`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamingOptions {
    pub budget: Budget,
    pub sinks: usize,
}

impl StreamingOptions {
    pub fn from_part(p: &Part) -> Result<StreamingOptions> {
        let mut o = StreamingOptions { budget: p.budget()?.unwrap_or(Budget::Tokens(1024)), sinks: 4 };
        for (k, v) in &p.options {
            match k.as_str() {
                "budget" => {}
                "sinks" => {
                    o.sinks = v.parse().map_err(|_| Error::msg(format!("--kv streaming: sinks={v} is not a count")))?;
                }
                "alloc" if v == "uniform" => {}
                "alloc" => {
                    return Err(Error::msg(format!("--kv streaming: alloc={v} is not available in this build yet (available: uniform)")));
                }
                _ => return Err(Error::msg(format!("--kv streaming has no option '{k}'"))),
            }
        }
        Ok(o)
    }
}

/// The policy for one cache.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Streaming {
    /// Slots per layer and KV head (the cache's whole allocation).
    pub budget: usize,
    pub sinks: usize,
    /// Tokens freed beyond a call's own need when compacting.
    pub slack: usize,
}

impl Streaming {
    /// The policy for a context of `ctx` tokens (a percentage budget is of it).
    pub fn new(o: StreamingOptions, ctx: usize) -> Result<Streaming> {
        let budget = o.budget.tokens(ctx).min(ctx);
        if budget <= o.sinks.saturating_add(1) {
            return Err(Error::msg(format!(
                "--kv streaming: a budget of {budget} tokens leaves no room beside {} sinks (raise budget= or lower sinks=)",
                o.sinks
            )));
        }
        if budget > MAX_KEEP as usize {
            return Err(Error::msg(format!("--kv streaming: budget {budget} is above the {MAX_KEEP} tokens supported")));
        }
        let slack = 64.min((budget - o.sinks) / 4).max(1);
        Ok(Streaming { budget, sinks: o.sinks, slack })
    }

    /// Most tokens one call may add (the rest of the budget past the sinks).
    pub fn max_call(&self) -> usize {
        self.budget - self.sinks - 1
    }

    /// The cut before a call of `n` tokens on `len` cached ones, or None
    /// when the call fits: at least what passes the budget, and (for a
    /// storage of single slots) the slots kept when `max(n, slack)` are freed.
    pub fn plan(&self, len: usize, n: usize) -> Option<Cut> {
        if len + n <= self.budget {
            return None;
        }
        let target = self.budget - n.max(self.slack).min(self.budget - self.sinks);
        Some(Cut { sinks: self.sinks, at_least: len + n - self.budget, keep: streaming_keep(len, target, self.sinks) })
    }
}

/// StreamingLLM's kept slots when `len` cached tokens must shrink to `target`:
/// the first `sinks` (attention sinks) and the most recent `target - sinks`,
/// in slot order. Everything when `len <= target`.
pub fn streaming_keep(len: usize, target: usize, sinks: usize) -> Vec<usize> {
    if len <= target {
        return (0..len).collect();
    }
    let sinks = sinks.min(target);
    (0..sinks).chain(len - (target - sinks)..len).collect()
}
