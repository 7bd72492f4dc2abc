//! One `wgkv bench` result row as a JSON record (`--json`), and reading
//! earlier records back (`--compare`). The field list is the schema;
//! `SCHEMA` goes up whenever a field changes meaning or is removed, so old
//! files are read correctly or refused with a clear line.

use crate::gpu::Gpu;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Version of the record layout below.
pub const SCHEMA: u32 = 1;

/// The commit this binary was built from (see build.rs).
pub fn git_commit() -> &'static str {
    option_env!("WGKV_GIT_COMMIT").unwrap_or("unknown")
}

/// Where a measurement ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Adapter name as the driver reports it, e.g. "llvmpipe (LLVM 19.1.7, 256 bits)".
    pub adapter: String,
    /// wgpu backend: "Vulkan", "Metal", "Dx12", "Gl".
    pub backend: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub device_type: String,
    /// Whether the KV cache (and other half-precision storage) is f16; else f32.
    pub f16: bool,
    /// The kernel shapes the adapter got (`ops::tuning::Tuning::describe`);
    /// empty in records written before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tuning: String,
}

impl Device {
    pub fn of(gpu: &Gpu) -> Device {
        Device {
            adapter: gpu.info.name.clone(),
            backend: format!("{:?}", gpu.info.backend),
            device_type: format!("{:?}", gpu.info.device_type),
            f16: gpu.caps.f16,
            tuning: crate::ops::tuning::Tuning::for_caps(&gpu.caps).describe(),
        }
    }

    /// The key rows are grouped by when several machines are compared.
    pub fn key(&self) -> String {
        format!("{} ({})", self.adapter, self.backend)
    }
}

/// What every `--json` output carries, whichever command wrote it: the
/// build, the device and the model (`device` is absent where a command
/// opens none, as `tokenize`; `model` is empty for `devices`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub wgkv_version: String,
    pub git_commit: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    pub model: String,
}

impl Stamp {
    pub fn new(gpu: Option<&Gpu>, model: &str) -> Stamp {
        Stamp {
            wgkv_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: git_commit().to_string(),
            device: gpu.map(Device::of),
            model: model.to_string(),
        }
    }

    /// The stamp's fields merged into a JSON object `o` (other values are left as they are).
    pub fn merge_into(&self, o: &mut serde_json::Value) {
        if let (Some(map), Ok(serde_json::Value::Object(stamp))) = (o.as_object_mut(), serde_json::to_value(self)) {
            for (k, v) in stamp {
                map.entry(k).or_insert(v);
            }
        }
    }
}

/// One row of `wgkv bench`: one test under one KV policy on one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `SCHEMA` of the writer.
    pub schema: u32,
    /// `CARGO_PKG_VERSION` and the short git commit of the binary.
    pub wgkv_version: String,
    pub git_commit: String,
    /// Seconds since the Unix epoch when the row was measured.
    pub unix_time: u64,
    #[serde(flatten)]
    pub device: Device,
    /// Model file name and its weight types (`Q4_1×210 Q6_K×1`).
    pub model: String,
    pub weight_type: String,
    /// The `--kv` policy, printed canonically.
    pub kv: String,
    /// KV cache capacity in tokens the model was loaded with.
    pub ctx: usize,
    /// `pp512`, `tg128` or `tg128@d2048`.
    pub test: String,
    /// Tokens prefilled (timed) by a `pp` test, 0 for `tg`.
    pub n_prompt: usize,
    /// Tokens decoded one by one (timed) by a `tg` test, 0 for `pp`.
    pub n_gen: usize,
    /// Tokens in the cache (prefilled, untimed) before a `tg` test decodes.
    pub depth: usize,
    /// Timed repetitions (after one untimed warm-up).
    pub reps: usize,
    /// Tokens per second of each repetition, then their mean and sample standard deviation.
    pub tokens_per_s: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    /// KV cache bytes holding tokens at the end of the test's last repetition.
    pub kv_bytes_resident: u64,
    /// KV bytes one decode step reads in that state (what the next decode step would read).
    pub kv_bytes_read_per_step: u64,
    /// KV bytes allocated on the device for the whole context.
    pub kv_bytes_allocated: u64,
    /// Tokens the cache keeps per layer at the end of the test.
    pub kv_tokens_per_layer: Vec<usize>,
    /// The file `--compare` read the record from (empty for a record this
    /// run measured); a merged file's records keep the file they first came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl Record {
    pub fn is_decode(&self) -> bool {
        self.n_gen > 0
    }

    /// The run a record comes from, as tables and plots name it when they
    /// compare several: `a.json (abc1234)`, the commit alone for a record
    /// this run measured.
    pub fn origin(&self) -> String {
        if self.source.is_empty() { self.git_commit.clone() } else { format!("{} ({})", self.source, self.git_commit) }
    }
}

/// Name of a test: `pp512`, `tg128`, `tg128@d2048`.
pub fn test_name(n_prompt: usize, n_gen: usize, depth: usize) -> String {
    match (n_gen, depth) {
        (0, _) => format!("pp{n_prompt}"),
        (n, 0) => format!("tg{n}"),
        (n, d) => format!("tg{n}@d{d}"),
    }
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Records as a JSON array, one record per line (easy to diff and grep).
pub fn to_json(records: &[Record]) -> String {
    // Serialising plain data (strings, integers, finite floats) cannot fail.
    let rows: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap_or_else(|_| "{}".to_string())).collect();
    if rows.is_empty() { "[]".to_string() } else { format!("[\n  {}\n]", rows.join(",\n  ")) }
}

/// Records from a JSON array (or a single object) written by `--json`.
/// `path` names the source in errors.
pub fn from_json(path: &str, text: &str) -> Result<Vec<Record>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
    let items = match value {
        serde_json::Value::Array(a) => a,
        o @ serde_json::Value::Object(_) => vec![o],
        _ => return Err(Error::format(path, "expected a JSON array of `wgkv bench --json` records")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let schema = item.get("schema").and_then(|s| s.as_u64());
        match schema {
            None => return Err(Error::format(path, format!("record {i} has no 'schema' field: not a `wgkv bench --json` file"))),
            Some(s) if s > SCHEMA as u64 => {
                return Err(Error::format(path, format!("record {i} has schema {s}; this wgkv reads up to {SCHEMA} (upgrade wgkv)")));
            }
            Some(_) => {}
        }
        let r: Record = serde_json::from_value(item).map_err(|e| Error::format(path, format!("record {i}: {e}")))?;
        out.push(r);
    }
    Ok(out)
}

/// Reads a `--json` file; its records name `path` as their source unless
/// they name one already (a file `--compare` merged).
pub fn read_file(path: &str) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut records = from_json(path, &text)?;
    for r in records.iter_mut().filter(|r| r.source.is_empty()) {
        r.source = path.to_string();
    }
    Ok(records)
}

/// The distinct origins of `records` (`Record::origin`), in first-seen order.
pub fn origins(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in records {
        let o = r.origin();
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
