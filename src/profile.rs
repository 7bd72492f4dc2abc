//! Per-kernel timing of a recorded forward pass, for `wgkv bench --profile`.
//!
//! With TIMESTAMP_QUERY every dispatch runs in its own compute pass whose
//! beginning and end write GPU timestamps, all in one submit: the figures are
//! device time and exclude submission. Without it, every dispatch is
//! submitted and waited on alone and timed on the host, which includes the
//! submit cost of each (documented as the `host` method).

use crate::gpu::{Gpu, PassTimer};
use crate::kernels::Dispatch;
use std::collections::BTreeMap;
use std::time::Instant;

/// One step of a timed sequence: a dispatch, or a buffer copy between them.
pub enum Item<'a> {
    Dispatch(&'a Dispatch),
    Copy { src: &'a wgpu::Buffer, offset: u64, dst: &'a wgpu::Buffer, dst_offset: u64, bytes: u64 },
}

/// Time per kernel class over one forward call.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Profile {
    /// `timestamps` (GPU time per dispatch) or `host` (wall time per submit).
    pub method: &'static str,
    /// Summed time of all dispatches, microseconds.
    pub total_us: f64,
    /// Kernel class (kernel name plus weight type where it reads weights), calls and microseconds, slowest first.
    pub rows: Vec<ProfileRow>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ProfileRow {
    pub class: String,
    pub calls: usize,
    pub us: f64,
    /// Weight bytes the calls stream (matvec, matmul), else 0.
    pub weight_bytes: u64,
}

impl ProfileRow {
    /// Weight bytes streamed per second of kernel time, in GB/s (None for
    /// kernels that read no weight matrix). A matmul may read its weights
    /// more than once: this is the rate against one read.
    pub fn gb_per_s(&self) -> Option<f64> {
        (self.weight_bytes > 0 && self.us > 0.0).then(|| self.weight_bytes as f64 / self.us / 1e3)
    }
}

/// Run `items` once, timing each dispatch, and group the times by class.
pub fn run(gpu: &Gpu, items: &[Item]) -> Profile {
    let dispatches: Vec<&Dispatch> = items
        .iter()
        .filter_map(|i| match i {
            Item::Dispatch(d) => Some(*d),
            Item::Copy { .. } => None,
        })
        .collect();
    let (method, times) = match gpu.timer(dispatches.len()) {
        Some(timer) => ("timestamps", with_timestamps(gpu, items, &timer)),
        None => ("host", with_host_clock(gpu, items)),
    };
    let mut by: BTreeMap<String, (usize, f64, u64)> = BTreeMap::new();
    for (d, t) in dispatches.iter().zip(&times) {
        let e = by.entry(d.class()).or_default();
        e.0 += 1;
        e.1 += t;
        e.2 += d.weights.map_or(0, |(_, _, b)| b);
    }
    let mut rows: Vec<ProfileRow> = by.into_iter().map(|(class, (calls, us, weight_bytes))| ProfileRow { class, calls, us, weight_bytes }).collect();
    rows.sort_by(|a, b| b.us.total_cmp(&a.us));
    Profile { method, total_us: times.iter().sum(), rows }
}

/// Record `items` into `enc`, each run of dispatches in one compute pass
/// named `label`: how a forward records them when it is not timed.
pub fn record(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, label: &str, items: &[Item]) {
    let mut i = 0;
    while i < items.len() {
        let run = items[i..].iter().take_while(|it| matches!(it, Item::Dispatch(_))).count();
        if run == 0 {
            record_copy(gpu, enc, &items[i]);
            i += 1;
            continue;
        }
        gpu.record(
            enc,
            label,
            items[i..i + run].iter().map(|it| match it {
                Item::Dispatch(d) => *d,
                Item::Copy { .. } => unreachable!("a run of dispatches"),
            }),
        );
        i += run;
    }
}

fn record_copy(gpu: &Gpu, enc: &mut wgpu::CommandEncoder, item: &Item) {
    if let Item::Copy { src, offset, dst, dst_offset, bytes } = item {
        gpu.copy(enc, src, *offset, dst, *dst_offset, *bytes);
    }
}

fn with_timestamps(gpu: &Gpu, items: &[Item], timer: &PassTimer) -> Vec<f64> {
    let mut enc = gpu.encoder();
    let mut i = 0u32;
    for item in items {
        match item {
            Item::Dispatch(d) => {
                gpu.record_timed(&mut enc, timer, i, d);
                i += 1;
            }
            copy => record_copy(gpu, &mut enc, copy),
        }
    }
    gpu.read_timer(enc, timer)
}

fn with_host_clock(gpu: &Gpu, items: &[Item]) -> Vec<f64> {
    let mut times = Vec::new();
    for item in items {
        let mut enc = gpu.encoder();
        match item {
            Item::Dispatch(d) => {
                gpu.record(&mut enc, "profile", [*d]);
                let t = Instant::now();
                gpu.submit(enc);
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            copy => {
                record_copy(gpu, &mut enc, copy);
                gpu.submit(enc);
            }
        }
    }
    times
}

/// The profile as a text table: class (a weight matrix's `rows×cols`),
/// calls, total ms, share, µs per call, weight GB/s; then the weight bytes
/// and their rate over all weight kernels.
pub fn table(p: &Profile, title: &str) -> String {
    let mut s = format!("{title} — {:.2} ms of kernels ({} method)\n", p.total_us / 1e3, p.method);
    s.push_str("| kernel | calls | ms | share | µs/call | weights GB/s |\n|---|---:|---:|---:|---:|---:|\n");
    for r in &p.rows {
        s.push_str(&format!(
            "| {} | {} | {:.3} | {:.1}% | {:.1} | {} |\n",
            r.class,
            r.calls,
            r.us / 1e3,
            100.0 * r.us / p.total_us.max(1e-9),
            r.us / r.calls as f64,
            r.gb_per_s().map_or(String::new(), |g| format!("{g:.2}"))
        ));
    }
    let (bytes, us) = p.rows.iter().filter(|r| r.weight_bytes > 0).fold((0u64, 0f64), |(b, t), r| (b + r.weight_bytes, t + r.us));
    if bytes > 0 {
        s.push_str(&format!(
            "weights: {:.1} MB streamed in {:.2} ms of weight kernels ({:.2} GB/s)\n",
            bytes as f64 / 1e6,
            us / 1e3,
            bytes as f64 / us.max(1e-9) / 1e3
        ));
    }
    s
}
