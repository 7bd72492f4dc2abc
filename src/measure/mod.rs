//! Measuring instruments: the `wgkv bench` timing loop and its JSON records,
//! markdown tables, SVG plots (speed, and quality against the KV budget),
//! and Quest's pass-key prompt. Nothing here
//! parses flags or prints; `cli::bench` and `cli::passkey` (and
//! `benches/e2e.rs`) put the pieces together.

pub mod budget;
pub mod frontier;
pub mod passkey;
pub mod plot;
pub mod record;
pub mod runner;
pub mod table;

/// Deterministic pseudo-random numbers (splitmix64): benchmark token ids and
/// pass keys must be the same on every machine and for every policy.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed ^ 0x5EED_0FC0_FFEE)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Bytes for people: `512 B`, `1.50 KiB`, `12.25 MiB`, `1.00 GiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

/// A comma-separated list of non-negative integers (`0,2048`), for flags.
pub fn parse_list(flag: &str, text: &str) -> crate::Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v = part.parse::<usize>().map_err(|_| crate::Error::msg(format!("{flag}: '{part}' is not a non-negative integer (expected e.g. 0,2048)")))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(crate::Error::msg(format!("{flag}: empty list")));
    }
    Ok(out)
}

/// `--kv 'SPEC;SPEC'`: each spec parsed (and printed back canonically), duplicates dropped.
pub fn parse_specs(text: &str) -> crate::Result<Vec<crate::kv::KvSpec>> {
    let mut out: Vec<crate::kv::KvSpec> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let spec = crate::kv::KvSpec::parse(part)?;
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    if out.is_empty() {
        return Err(crate::Error::msg("--kv: no policy given (try `full`)"));
    }
    Ok(out)
}
