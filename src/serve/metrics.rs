//! The server's counters and gauges, written by the HTTP handlers and the
//! engine, read as Prometheus text by `GET /metrics`.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const RATE_WINDOW: Duration = Duration::from_secs(10);

/// One cached conversation, as `/metrics` lists it.
#[derive(Clone, Debug)]
pub struct ConversationInfo {
    pub id: u64,
    pub kv: String,
    pub bytes: u64,
    pub tokens: usize,
    /// `active` (generating now), `gpu` (idle, its cache on the GPU) or
    /// `host` (idle, parked in host memory as its kept rows).
    pub place: &'static str,
}

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    /// Requests answered with an error object (any status).
    pub errors: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens found in a cached conversation (not prefilled again).
    pub cached_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub queue_depth: AtomicU64,
    pub active: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub evictions: AtomicU64,
    pub kv_bytes_limit: AtomicU64,
    /// (start, tokens) of the engine's recent rounds, for the tokens/s gauge.
    rounds: Mutex<VecDeque<(Instant, usize)>>,
    pub prefill_seconds_micros: AtomicU64,
    pub decode_seconds_micros: AtomicU64,
    pub decode_steps: AtomicU64,
    pub conversations: Mutex<Vec<ConversationInfo>>,
    /// Bytes of GPU caches no conversation holds (kept for reuse).
    pub free_bytes: AtomicU64,
}

impl Metrics {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// A round of the engine that produced `tokens` tokens, begun at `start`.
    pub fn record_round(&self, start: Instant, tokens: usize) {
        if let Ok(mut r) = self.rounds.lock() {
            r.push_back((start, tokens));
            while r.front().is_some_and(|(t, _)| t.elapsed() > RATE_WINDOW) {
                r.pop_front();
            }
        }
    }

    /// Tokens per second over the rounds begun in the last `RATE_WINDOW`,
    /// over the time since the first of them.
    pub fn rate(&self) -> f64 {
        let Ok(r) = self.rounds.lock() else { return 0.0 };
        let recent: Vec<_> = r.iter().filter(|(t, _)| t.elapsed() <= RATE_WINDOW).collect();
        let span = recent.first().map_or(0.0, |(t, _)| t.elapsed().as_secs_f64());
        let tokens: usize = recent.iter().map(|(_, n)| n).sum();
        if span > 0.0 { tokens as f64 / span } else { 0.0 }
    }

    pub fn set_conversations(&self, list: Vec<ConversationInfo>, free_bytes: u64) {
        if let Ok(mut c) = self.conversations.lock() {
            *c = list;
        }
        self.free_bytes.store(free_bytes, Relaxed);
    }

    /// Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP wgkv_{name} {help}\n# TYPE wgkv_{name} {kind}\nwgkv_{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Relaxed).to_string();
        let secs = |c: &AtomicU64| format!("{}", c.load(Relaxed) as f64 / 1e6);
        metric("requests_total", "counter", "Generation requests received.", get(&self.requests));
        metric("request_errors_total", "counter", "Requests answered with an error object.", get(&self.errors));
        metric("requests_rejected_busy_total", "counter", "Requests refused with 503 because the queue was full.", get(&self.rejected_busy));
        metric("requests_cancelled_total", "counter", "Generations stopped because the client went away.", get(&self.cancelled));
        metric("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", get(&self.prompt_tokens));
        metric("prompt_tokens_cached_total", "counter", "Prompt tokens found in a cached conversation, not prefilled again.", get(&self.cached_tokens));
        metric("completion_tokens_total", "counter", "Tokens generated.", get(&self.completion_tokens));
        metric("queue_depth", "gauge", "Requests waiting for a generation slot.", get(&self.queue_depth));
        metric("requests_active", "gauge", "Requests generating now.", get(&self.active));
        metric("kv_cache_hits_total", "counter", "Requests that continued a cached conversation.", get(&self.cache_hits));
        metric("kv_cache_misses_total", "counter", "Requests that started a new cache.", get(&self.cache_misses));
        metric("kv_cache_evictions_total", "counter", "Cached conversations dropped to make room (least recently used first).", get(&self.evictions));
        metric("kv_bytes_limit", "gauge", "The server's --kv-memory.", get(&self.kv_bytes_limit));
        metric("prefill_seconds_total", "counter", "Time spent prefilling prompts.", secs(&self.prefill_seconds_micros));
        metric("decode_seconds_total", "counter", "Time spent in decode steps.", secs(&self.decode_seconds_micros));
        metric("decode_steps_total", "counter", "Decode steps run.", get(&self.decode_steps));
        metric(
            "decode_tokens_per_second",
            "gauge",
            "Tokens generated per second over the last 10 seconds, all requests together.",
            format!("{:.3}", self.rate()),
        );
        let convs = self.conversations.lock().map(|c| c.clone()).unwrap_or_default();
        let free = self.free_bytes.load(Relaxed);
        let resident: u64 = convs.iter().map(|c| c.bytes).sum::<u64>() + free;
        metric(
            "kv_bytes_resident",
            "gauge",
            "Bytes of every KV cache held: conversations (generating, idle on the GPU, parked in host memory) and free GPU caches; what --kv-memory bounds.",
            resident.to_string(),
        );
        metric("kv_bytes_free", "gauge", "Bytes of GPU caches no conversation holds, kept for reuse.", free.to_string());
        metric("conversations_cached", "gauge", "Conversations whose KV cache is held.", convs.len().to_string());
        let _ = writeln!(out, "# HELP wgkv_conversation_kv_bytes Bytes of one conversation's KV cache.\n# TYPE wgkv_conversation_kv_bytes gauge");
        for c in &convs {
            let _ = writeln!(out, "wgkv_conversation_kv_bytes{{conversation=\"{}\",kv=\"{}\",place=\"{}\"}} {}", c.id, escape(&c.kv), c.place, c.bytes);
        }
        let _ = writeln!(out, "# HELP wgkv_conversation_tokens Tokens in one conversation's KV cache.\n# TYPE wgkv_conversation_tokens gauge");
        for c in &convs {
            let _ = writeln!(out, "wgkv_conversation_tokens{{conversation=\"{}\",kv=\"{}\"}} {}", c.id, escape(&c.kv), c.tokens);
        }
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = Metrics::default();
        Metrics::add(&m.requests, 3);
        m.record_round(Instant::now() - Duration::from_secs(2), 25);
        m.record_round(Instant::now() - Duration::from_secs(60), 1000);
        m.set_conversations(vec![ConversationInfo { id: 7, kv: "snapkv:budget=10%".into(), bytes: 1000, tokens: 42, place: "host" }], 24);
        let text = m.render();
        assert!(text.contains("wgkv_requests_total 3\n"));
        let rate: f64 = text.lines().find_map(|l| l.strip_prefix("wgkv_decode_tokens_per_second ")).unwrap().parse().unwrap();
        assert!((rate - 12.5).abs() < 0.5, "25 tokens in the last 2 s (the old round is out of the window): {rate}");
        assert!(text.contains("wgkv_kv_bytes_resident 1024\n"));
        assert!(text.contains("wgkv_conversation_kv_bytes{conversation=\"7\",kv=\"snapkv:budget=10%\",place=\"host\"} 1000\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} has a TYPE line");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
