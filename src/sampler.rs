//! Next-token choice on the CPU from a candidate list the GPU narrowed.
//!
//! A decode step never reads back the whole vocabulary: the GPU top-k kernel
//! returns the K largest logits with their ids (plus the max and sum-of-exp
//! over the whole vocabulary, which the sampler does not need). Everything
//! here works on those K candidates.
//!
//! Chain, in llama.cpp's default order: repetition penalty, top-k, top-p,
//! min-p, temperature, draw. As in llama.cpp, top-p and min-p measure
//! probabilities at temperature 1 (over the candidates left by top-k), and the
//! temperature only reshapes the distribution among the survivors; so
//! `--temp` never changes *which* tokens are allowed, only how likely they are.
//!
//! Caveat of GPU narrowing: the repetition penalty can only reorder tokens
//! within the K candidates. A token outside them is never seen, so a penalised
//! token can fall out of the top-k set but nothing from beyond K can enter.
//! Hence K must be >= top_k, and a few more than top_k (64 by default, see
//! [`Sampler::candidates_needed`]) leaves room for penalised tokens to be
//! replaced. With `top_k = 0` (no limit) the GPU narrows nothing: every logit
//! is read back ([`Sampler::wants_every_logit`]), so top-p and min-p see the
//! whole vocabulary.
//!
//! Banned ids (`--ignore-eos` bans the end-of-generation tokens, as
//! llama.cpp's logit bias of -inf does) are never drawn, greedy included.

/// Candidates to ask the GPU for when sampling (>= the default top_k of 40).
pub const DEFAULT_CANDIDATES: usize = 64;

/// Sampling settings; `Default` gives llama.cpp's defaults with a random seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// <= 0 means greedy.
    pub temperature: f32,
    /// 0 keeps every candidate.
    pub top_k: usize,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// 1 disables.
    pub repeat_penalty: f32,
    /// How many recently accepted tokens the penalty looks at; 0 disables.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64, seed: random_seed() }
    }
}

impl SamplerConfig {
    /// Greedy decoding (temperature 0), no penalty.
    pub fn greedy() -> Self {
        SamplerConfig { temperature: 0.0, seed: 0, ..SamplerConfig::default() }
    }

    /// Checks user-given values; one line per problem, naming the CLI flag.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::msg(m));
        if self.temperature.is_nan() || self.temperature < 0.0 {
            return bad(format!("--temp must be 0 (greedy) or more, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("--top-p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("--min-p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!("--repeat-penalty must be a positive number (1 disables), got {}", self.repeat_penalty));
        }
        Ok(())
    }
}

/// A seed from the clock and the process id, for runs that did not pick one.
pub fn random_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    splitmix64(t ^ (u64::from(std::process::id()) << 32))
}

/// One entry of the GPU's candidate list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
}

/// The sampling chain with its seeded RNG and recent-token window.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Pcg32,
    /// The last `repeat_last_n` accepted tokens, oldest first.
    recent: std::collections::VecDeque<u32>,
    /// Scratch reused across calls (one allocation per sampler).
    work: Vec<Candidate>,
    probs: Vec<f64>,
    /// Ids never drawn.
    banned: Vec<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler {
            rng: Pcg32::new(cfg.seed),
            recent: std::collections::VecDeque::with_capacity(cfg.repeat_last_n),
            work: Vec::new(),
            probs: Vec::new(),
            banned: Vec::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Never draw `ids` (e.g. the end-of-generation tokens under `--ignore-eos`).
    pub fn ban(&mut self, ids: &[u32]) {
        self.banned.extend_from_slice(ids);
    }

    /// Temperature <= 0 (or NaN): always the highest penalised logit.
    pub fn is_greedy(&self) -> bool {
        self.cfg.temperature.is_nan() || self.cfg.temperature <= 0.0
    }

    fn penalty_active(&self) -> bool {
        self.cfg.repeat_penalty != 1.0 && self.cfg.repeat_last_n > 0
    }

    /// How many candidates (K) the GPU should return: 1 for greedy without a
    /// penalty or banned ids (the argmax is enough), else max(top_k, 64) so
    /// K >= top_k with spare room for penalised and banned tokens.
    pub fn candidates_needed(&self) -> usize {
        if self.is_greedy() && !self.penalty_active() && self.banned.is_empty() { 1 } else { self.cfg.top_k.max(DEFAULT_CANDIDATES + self.banned.len()) }
    }

    /// Whether the draw needs every logit: sampling with no top-k limit.
    pub fn wants_every_logit(&self) -> bool {
        !self.is_greedy() && self.cfg.top_k == 0
    }

    /// Picks the next token from `cands` (any order; the GPU sends them
    /// sorted descending). Does not record it: call [`Sampler::accept`] with
    /// the token actually used. `cands` must not be empty (the GPU always
    /// returns at least one); an empty list yields id 0.
    pub fn sample(&mut self, cands: &[Candidate]) -> u32 {
        self.penalise(cands);
        if self.work.is_empty() {
            return 0;
        }
        if self.is_greedy() {
            return argmax(&self.work);
        }
        // Highest first; equal logits by smaller id, so results do not depend
        // on the order the GPU happened to emit ties in.
        self.work.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
        let mut n = self.work.len();
        if self.cfg.top_k > 0 {
            n = n.min(self.cfg.top_k);
        }
        let top = self.work[0].logit;
        if top == f32::NEG_INFINITY {
            return self.work[0].id; // nothing has any probability: behave greedily
        }
        // Temperature-1 probabilities of the top-k survivors, for top-p and min-p.
        self.probs.clear();
        self.probs.extend(self.work[..n].iter().map(|c| f64::from(c.logit - top).exp()));
        let sum: f64 = self.probs.iter().sum();
        if self.cfg.top_p < 1.0 {
            let target = f64::from(self.cfg.top_p) * sum;
            let mut cum = 0.0;
            for (i, p) in self.probs[..n].iter().enumerate() {
                cum += p;
                if cum >= target {
                    n = i + 1;
                    break;
                }
            }
        }
        if self.cfg.min_p > 0.0 {
            // Sorted, so the survivors are a prefix; the first (p = max) always stays.
            let cut = f64::from(self.cfg.min_p) * self.probs[0];
            n = 1 + self.probs[1..n].iter().take_while(|&&p| p >= cut).count();
        }
        // Temperature reshapes the survivors; the draw renormalises.
        let inv_t = 1.0 / f64::from(self.cfg.temperature);
        for (p, c) in self.probs[..n].iter_mut().zip(&self.work[..n]) {
            *p = (f64::from(c.logit - top) * inv_t).exp();
        }
        let total: f64 = self.probs[..n].iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (p, c) in self.probs[..n].iter().zip(&self.work[..n]) {
            if r < *p {
                return c.id;
            }
            r -= p;
        }
        self.work[n - 1].id // rounding left r just past the end
    }

    /// Records the token that was emitted, for the repetition penalty.
    pub fn accept(&mut self, id: u32) {
        if self.cfg.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// Back to the state `new` left: empty window, RNG re-seeded, so a reset
    /// sampler repeats the same draws.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.rng = Pcg32::new(self.cfg.seed);
    }

    /// Copies `cands` into `work` with the penalty applied (NaN logits, a GPU
    /// bug, become -inf so they are never chosen). llama.cpp's rule: positive
    /// logits are divided, negative ones multiplied, so the token always
    /// becomes less likely; once per distinct recent token.
    fn penalise(&mut self, cands: &[Candidate]) {
        self.work.clear();
        let on = self.penalty_active();
        let pen = self.cfg.repeat_penalty;
        self.work.extend(cands.iter().map(|c| {
            let mut logit = if c.logit.is_nan() { f32::NEG_INFINITY } else { c.logit };
            if on && self.recent.contains(&c.id) {
                logit = if logit > 0.0 { logit / pen } else { logit * pen };
            }
            if self.banned.contains(&c.id) {
                logit = f32::NEG_INFINITY;
            }
            Candidate { id: c.id, logit }
        }));
    }
}

/// Highest logit, ties to the smaller id.
fn argmax(c: &[Candidate]) -> u32 {
    let mut best = c[0];
    for &x in &c[1..] {
        if x.logit > best.logit || (x.logit == best.logit && x.id < best.id) {
            best = x;
        }
    }
    best.id
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// PCG32 (XSH-RR): small, fast, statistically sound, and fully determined by
/// the seed (state and stream both derived from it with splitmix64).
struct Pcg32 {
    state: u64,
    inc: u64,
}

impl Pcg32 {
    const MUL: u64 = 6364136223846793005;

    fn new(seed: u64) -> Pcg32 {
        let mut rng = Pcg32 { state: 0, inc: (splitmix64(seed ^ 0xDA3E_39CB_94B9_5BDB) << 1) | 1 };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(splitmix64(seed));
        rng.next_u32();
        rng
    }

    fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        let hi = u64::from(self.next_u32()) << 21;
        let lo = u64::from(self.next_u32()) >> 11;
        (hi | lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}
