//! Flags shared by `generate` and `chat`: sampling, the token limit and the
//! stop rules.

use crate::sampler::{SamplerConfig, random_seed};

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep the K most likely tokens; 0 = no limit (the whole vocabulary).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Repetition penalty over the last 64 tokens; 1 = off.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Random seed (default: a random one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when the text reaches STR (repeatable); the text stops before it.
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
    /// Never end on the model's end-of-generation tokens (they are not drawn).
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// The sampler's settings and whether the seed was drawn at random.
    pub fn config(&self) -> (SamplerConfig, bool) {
        let cfg = SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed.unwrap_or_else(random_seed),
            ..SamplerConfig::default()
        };
        (cfg, self.seed.is_none())
    }
}

/// `-n`: the most tokens to generate; `-1` means no limit (until the model
/// stops or the context is full), as in llama.cpp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxTokens(pub Option<usize>);

pub fn parse_max_tokens(s: &str) -> Result<MaxTokens, String> {
    match s.trim() {
        "-1" => Ok(MaxTokens(None)),
        t => t.parse::<usize>().map(|n| MaxTokens(Some(n))).map_err(|_| format!("-n takes a token count or -1 (no limit), got '{s}'")),
    }
}
