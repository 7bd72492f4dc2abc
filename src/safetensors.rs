//! safetensors reader (memory-mapped) and a small writer for tests.
//!
//! Layout: header length N (u64 LE), N bytes of JSON
//! `{"name": {"dtype", "shape" (row-major), "data_offsets": [begin, end]}, "__metadata__": {..}}`,
//! then the data section; offsets are relative to its start. Only float
//! dtypes a Llama checkpoint uses are accepted (F32, F16, BF16).

use crate::error::{Error, Result, show};
use crate::mapped::Storage;
use crate::quant::WType;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Largest JSON header accepted (a 10^5-tensor checkpoint needs ~15 MiB).
pub const MAX_HEADER_LEN: u64 = 32 << 20;
pub const MAX_DIMS: usize = 8;

/// One tensor: `shape` as in the file (row-major, outermost first), `offset` absolute.
#[derive(Clone, Debug, PartialEq)]
pub struct SafeTensor {
    pub name: String,
    pub wtype: WType,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub bytes: u64,
}

impl SafeTensor {
    /// Dimensions ne0 first (GGUF order): a `[rows, cols]` matrix gives `[cols, rows]`.
    pub fn dims(&self) -> Vec<u64> {
        self.shape.iter().rev().copied().collect()
    }
}

pub struct SafeTensors {
    pub path: String,
    /// Sorted by offset.
    pub tensors: Vec<SafeTensor>,
    pub metadata: Vec<(String, String)>,
    storage: Arc<Storage>,
    by_name: HashMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

fn dtype(name: &str) -> Option<WType> {
    match name {
        "F32" => Some(WType::F32),
        "F16" => Some(WType::F16),
        "BF16" => Some(WType::BF16),
        _ => None,
    }
}

fn dtype_name(w: WType) -> Option<&'static str> {
    match w {
        WType::F32 => Some("F32"),
        WType::F16 => Some("F16"),
        WType::BF16 => Some("BF16"),
        _ => None,
    }
}

impl SafeTensors {
    pub fn open(path: &Path) -> Result<SafeTensors> {
        SafeTensors::parse(path.display().to_string(), Storage::map(path)?)
    }

    /// Parse an in-memory file; `name` is used in error messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<SafeTensors> {
        SafeTensors::parse(name.to_string(), Arc::new(Storage::Owned(bytes)))
    }

    fn parse(path: String, storage: Arc<Storage>) -> Result<SafeTensors> {
        let err = |m: String| Error::format(&path, m);
        let b = storage.bytes();
        let file_len = b.len() as u64;
        let Some(len_bytes) = b.get(..8) else {
            return Err(err(format!("truncated: {file_len} bytes, a safetensors file starts with an 8-byte header length")));
        };
        let n = u64::from_le_bytes(len_bytes.try_into().map_err(|_| err("bad header length".into()))?);
        if n > MAX_HEADER_LEN {
            return Err(err(format!("header length {n} exceeds the limit {MAX_HEADER_LEN}")));
        }
        if 8 + n > file_len {
            return Err(err(format!("truncated: header length {n} extends beyond the end of the file ({file_len} bytes)")));
        }
        let header = &b[8..8 + n as usize];
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| err(format!("header is not a JSON object: {e}")))?;
        let data_start = 8 + n;
        let data_len = file_len - data_start;

        let mut tensors = Vec::with_capacity(json.len());
        let mut metadata = Vec::new();
        for (name, v) in json {
            let shown = show(&name);
            if name == "__metadata__" {
                let map = v.as_object().ok_or_else(|| err("__metadata__ is not a JSON object".into()))?;
                for (k, v) in map {
                    let s = v.as_str().ok_or_else(|| err(format!("__metadata__ value '{}' is not a string", show(k))))?;
                    metadata.push((k.clone(), s.to_string()));
                }
                continue;
            }
            let bad = |m: String| err(format!("tensor '{shown}': {m}"));
            let e: Entry = serde_json::from_value(v).map_err(|e| bad(format!("bad header entry: {e}")))?;
            let wtype = dtype(&e.dtype).ok_or_else(|| bad(format!("dtype {} is not supported (F32, F16, BF16 are)", show(&e.dtype))))?;
            if e.shape.len() > MAX_DIMS {
                return Err(bad(format!("{} dimensions (at most {MAX_DIMS} supported)", e.shape.len())));
            }
            let [begin, end] = e.data_offsets;
            if begin > end || end > data_len {
                return Err(bad(format!("data_offsets [{begin}, {end}] are outside the data section ({data_len} bytes)")));
            }
            let bytes = e
                .shape
                .iter()
                .try_fold(wtype.block_bytes() as u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("size of shape {:?} overflows", e.shape)))?;
            if bytes != end - begin {
                return Err(bad(format!("shape {:?} of {} needs {bytes} bytes, data_offsets [{begin}, {end}] hold {}", e.shape, e.dtype, end - begin)));
            }
            tensors.push(SafeTensor { name, wtype, shape: e.shape, offset: data_start + begin, bytes });
        }

        tensors.sort_by_key(|t| t.offset);
        let mut last: Option<&SafeTensor> = None;
        for t in tensors.iter().filter(|t| t.bytes > 0) {
            if let Some(p) = last.filter(|p| p.offset + p.bytes > t.offset) {
                return Err(err(format!("tensor '{}' overlaps tensor '{}'", show(&t.name), show(&p.name))));
            }
            last = Some(t);
        }
        let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(SafeTensors { path, tensors, metadata, storage, by_name })
    }

    pub fn tensor(&self, name: &str) -> Option<&SafeTensor> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes (checked at open; a foreign tensor gives an empty slice).
    pub fn tensor_data(&self, t: &SafeTensor) -> &[u8] {
        let (start, end) = (t.offset as usize, t.offset.saturating_add(t.bytes) as usize);
        self.storage.bytes().get(start..end).unwrap_or(&[])
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }
}

/// Writes safetensors files (tests, tiny models).
#[derive(Default)]
pub struct SafeTensorsWriter {
    tensors: Vec<(String, WType, Vec<u64>, Vec<u8>)>,
    metadata: Vec<(String, String)>,
}

impl SafeTensorsWriter {
    pub fn new() -> SafeTensorsWriter {
        SafeTensorsWriter::default()
    }

    /// Add a tensor: `shape` row-major as safetensors stores it.
    pub fn add(&mut self, name: &str, wtype: WType, shape: &[u64], data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), wtype, shape.to_vec(), data));
        self
    }

    pub fn meta(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            let m = self.metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
            header.insert("__metadata__".into(), serde_json::Value::Object(m));
        }
        let mut at = 0u64;
        for (name, w, shape, data) in &self.tensors {
            let dt = dtype_name(*w).ok_or_else(|| Error::format("SafeTensorsWriter", format!("{name}: {} has no safetensors dtype", w.name())))?;
            let want = shape.iter().try_fold(w.block_bytes() as u64, |a, &d| a.checked_mul(d));
            if want != Some(data.len() as u64) {
                return Err(Error::format("SafeTensorsWriter", format!("{name}: {} bytes given, shape {shape:?} needs {want:?}", data.len())));
            }
            let end = at + data.len() as u64;
            header.insert(name.clone(), serde_json::json!({"dtype": dt, "shape": shape, "data_offsets": [at, end]}));
            at = end;
        }
        let mut json = serde_json::Value::Object(header).to_string().into_bytes();
        // Pad the header with spaces so the data section starts 8-byte aligned.
        json.resize(json.len().div_ceil(8) * 8, b' ');
        let mut out = Vec::with_capacity(8 + json.len() + at as usize);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
        }
        Ok(out)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()?).map_err(|e| Error::io(path.display().to_string(), e))
    }
}
