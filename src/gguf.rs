//! GGUF v2/v3 reader (memory-mapped) and a small writer for tests.
//!
//! Layout (little-endian): magic "GGUF", version u32, tensor count u64,
//! metadata count u64, metadata (key string, type u32, value), tensor infos
//! (name, n_dims u32, dims u64 ne0-first, ggml type u32, offset u64 relative
//! to the data section), padding to `general.alignment` (default 32), data.
//!
//! Every count and size the header claims is capped by a named constant and
//! checked against the bytes left in the file before anything is allocated,
//! so a hostile or truncated file gives one error line, never a panic or a
//! huge allocation.

use crate::error::{Error, Result, show};
use crate::mapped::Storage;
use crate::quant::WType;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest `general.alignment` accepted (llama.cpp writes 32).
pub const MAX_ALIGNMENT: u64 = 1 << 16;
/// Real models have a few hundred to a few thousand tensors.
pub const MAX_TENSORS: u64 = 1 << 16;
pub const MAX_METADATA_KVS: u64 = 1 << 16;
/// Chat templates are the longest strings (tens of KiB).
pub const MAX_STRING_LEN: u64 = 1 << 24;
/// Vocabularies and merge lists are the longest arrays (a few 10^5).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays nest at most this deep.
pub const MAX_NESTING: usize = 4;

/// A metadata value, one variant per GGUF value type (ids 0..=12 in this order,
/// except `U64`, `I64`, `F64` which are 10, 11, 12 after `Array` = 9).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The GGUF value type id.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    pub fn type_name(&self) -> &'static str {
        TYPE_NAMES[self.type_id() as usize]
    }

    /// Any integer type as i128 (covers u64 and i64 without loss).
    fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

const TYPE_NAMES: [&str; 13] = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];

/// Smallest encoded size of one value of type `ty` (strings and arrays: their
/// length prefix), used to bound counts by the bytes left before allocating.
fn min_encoded(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// Names of ggml type ids, so an unsupported tensor type is named in the error.
fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2 (removed)",
        "Q4_3 (removed)",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4 (removed)",
        "Q4_0_4_8 (removed)",
        "Q4_0_8_8 (removed)",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4 (removed)",
        "IQ4_NL_4_8 (removed)",
        "IQ4_NL_8_8 (removed)",
        "MXFP4",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown")
}

/// Bytes of a tensor of `dims` (ne0 first) stored as `w`, with checked
/// arithmetic; rows (ne0) must be whole blocks. Err is the reason, unprefixed.
pub fn tensor_bytes(dims: &[u64], w: WType) -> std::result::Result<u64, String> {
    let cols = *dims.first().ok_or("has no dimensions")?;
    let block = w.block_elems() as u64;
    if cols % block != 0 {
        return Err(format!("rows of {cols} elements are not a multiple of the {} block size {block}", w.name()));
    }
    let overflow = || format!("size of dims {dims:?} overflows");
    let rows = dims[1..].iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    let elems = cols.checked_mul(rows).filter(|&e| e <= i64::MAX as u64).ok_or_else(overflow)?;
    (elems / block).checked_mul(w.block_bytes() as u64).ok_or_else(overflow)
}

/// One tensor's description; `offset` is absolute in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ne0 first: a matrix is `[cols, rows]`.
    pub dims: Vec<u64>,
    pub wtype: WType,
    pub offset: u64,
    pub bytes: u64,
}

/// A parsed GGUF file; tensor data stays in the (mapped) file.
pub struct Gguf {
    pub path: String,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    storage: Arc<Storage>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gguf({}, v{}, {} kvs, {} tensors)", self.path, self.version, self.metadata.len(), self.tensors.len())
    }
}

/// Cursor over the header; every read is bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: String) -> Error {
        Error::format(self.path, msg)
    }
    fn left(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(self.err(format!("truncated: {what} needs {n} bytes at offset {}, file has {}", self.pos, self.b.len())));
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64, what)?);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(self.err(format!("{what}: string length {len} exceeds the limit {MAX_STRING_LEN}")));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{what}: string is not valid UTF-8")))
    }
    fn value(&mut self, ty: u32, depth: usize, what: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.arr(what)?)),
            1 => Value::I8(i8::from_le_bytes(self.arr(what)?)),
            2 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            7 => match self.arr::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{what}: invalid bool byte {b}"))),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(self.err(format!("{what}: arrays nested deeper than {MAX_NESTING}")));
                }
                let ety = self.u32(what)?;
                let min = min_encoded(ety).ok_or_else(|| self.err(format!("{what}: unknown array element type {ety}")))?;
                let n = self.u64(what)?;
                if n > MAX_ARRAY_LEN {
                    return Err(self.err(format!("{what}: array length {n} exceeds the limit {MAX_ARRAY_LEN}")));
                }
                if n.checked_mul(min).is_none_or(|need| need > self.left()) {
                    return Err(self.err(format!(
                        "truncated: {what} claims {n} array elements at offset {}, the file has {} bytes left",
                        self.pos,
                        self.left()
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(ety, depth + 1, what)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(what)?)),
            t => return Err(self.err(format!("{what}: unknown metadata value type {t}"))),
        })
    }
    /// A header count, capped and bounded by the bytes left (`min` bytes each).
    fn count(&mut self, what: &str, cap: u64, min: u64) -> Result<u64> {
        let n = self.u64(what)?;
        if n > cap {
            return Err(self.err(format!("{what} {n} exceeds the limit {cap}")));
        }
        if n * min > self.left() {
            return Err(self.err(format!("truncated: {what} {n} needs at least {} bytes, file has {} left", n * min, self.left())));
        }
        Ok(n)
    }
}

impl Gguf {
    /// Map and parse `path`.
    pub fn open(path: &Path) -> Result<Gguf> {
        Gguf::parse(path.display().to_string(), Storage::map(path)?)
    }

    /// Parse an in-memory file; `name` is used in error messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Gguf> {
        Gguf::parse(name.to_string(), Arc::new(Storage::Owned(bytes)))
    }

    /// Map `path` and parse only its header and metadata: no tensors are
    /// listed or checked, so a file whose tensors wgkv cannot load (yet)
    /// still gives its tokenizer and chat template.
    pub fn open_metadata(path: &Path) -> Result<Gguf> {
        Gguf::parse_with(path.display().to_string(), Storage::map(path)?, false)
    }

    fn parse(path: String, storage: Arc<Storage>) -> Result<Gguf> {
        Gguf::parse_with(path, storage, true)
    }

    fn parse_with(path: String, storage: Arc<Storage>, with_tensors: bool) -> Result<Gguf> {
        let b = storage.bytes();
        let mut r = Reader { b, pos: 0, path: &path };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            return Err(r.err(format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")));
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() <= 3 { " (big-endian file?)" } else { "" };
            return Err(r.err(format!("unsupported GGUF version {version}{hint}; supported: 2, 3")));
        }
        // Smallest tensor info: name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        let n_tensors = r.count("tensor count", MAX_TENSORS, 32)?;
        // Smallest metadata entry: key length (8) + type (4) + a u8 value (1).
        let n_kvs = r.count("metadata count", MAX_METADATA_KVS, 13)?;

        let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kvs as usize);
        let mut seen = std::collections::HashSet::with_capacity(n_kvs as usize);
        for i in 0..n_kvs {
            let key = r.string(&format!("metadata key #{i}"))?;
            let what = format!("metadata '{}'", show(&key));
            if !seen.insert(key.clone()) {
                return Err(r.err(format!("duplicate {what}")));
            }
            let ty = r.u32(&what)?;
            let v = r.value(ty, 0, &what)?;
            metadata.push((key, v));
        }
        if !with_tensors {
            let data_offset = r.pos as u64;
            return Ok(Gguf { path, version, metadata, tensors: Vec::new(), alignment: DEFAULT_ALIGNMENT, data_offset, storage, by_name: HashMap::new() });
        }

        let mut infos = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(&format!("tensor info #{i} name"))?;
            let what = format!("tensor info '{}'", show(&name));
            let n_dims = r.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.err(format!("{what} has {n_dims} dimensions (1 to {MAX_DIMS} supported)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(&what)?);
            }
            let ty = r.u32(&what)?;
            let offset = r.u64(&what)?;
            infos.push((name, dims, ty, offset));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_int() {
                Some(a) if a > 0 && a as u64 <= MAX_ALIGNMENT && (a as u64).is_power_of_two() => a as u64,
                Some(a) => return Err(r.err(format!("general.alignment {a} is not a power of two up to {MAX_ALIGNMENT}"))),
                None => return Err(r.err(format!("general.alignment is {}, expected an integer", v.type_name()))),
            },
        };
        let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
        let file_len = b.len() as u64;

        let mut tensors = Vec::with_capacity(infos.len());
        let mut by_name = HashMap::with_capacity(infos.len());
        for (name, dims, ty, rel) in infos {
            let bad = |msg: String| Error::format(&path, format!("tensor '{}': {msg}", show(&name)));
            let wtype = WType::from_ggml(ty).ok_or_else(|| bad(format!("unsupported ggml type {} (id {ty})", ggml_type_name(ty))))?;
            if dims.contains(&0) {
                return Err(bad(format!("has a zero dimension {dims:?}")));
            }
            let bytes = tensor_bytes(&dims, wtype).map_err(bad)?;
            if rel % alignment != 0 {
                return Err(bad(format!("data offset {rel} is not aligned to {alignment}")));
            }
            let offset = data_offset.checked_add(rel).filter(|o| o.checked_add(bytes).is_some_and(|end| end <= file_len));
            let Some(offset) = offset else {
                return Err(bad(format!("data ({bytes} bytes at data offset {rel}) extends beyond the end of the file ({file_len} bytes)")));
            };
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad("duplicate tensor name".into()));
            }
            tensors.push(TensorInfo { name, dims, wtype, offset, bytes });
        }

        let mut order: Vec<&TensorInfo> = tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for w in order.windows(2) {
            if w[0].offset + w[0].bytes > w[1].offset {
                let (a, b) = (show(&w[1].name), show(&w[0].name));
                return Err(Error::format(&path, format!("tensor '{a}' overlaps tensor '{b}'")));
            }
        }

        Ok(Gguf { path, version, metadata, tensors, alignment, data_offset, storage, by_name })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn need(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::format(&self.path, format!("missing metadata key '{}'", show(key))))
    }

    fn wrong(&self, key: &str, v: &Value, want: &str) -> Error {
        Error::format(&self.path, format!("metadata key '{}' is {}, expected {want}", show(key), v.type_name()))
    }

    fn wrong_elem(&self, key: &str, v: &Value, want: &str) -> Error {
        Error::format(&self.path, format!("metadata key '{}' has a {} element, expected an array of {want}", show(key), v.type_name()))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.need(key)? {
            Value::Str(s) => Ok(s),
            v => Err(self.wrong(key, v, "a string")),
        }
    }

    /// Any integer type, if it is not negative.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.need(key)?;
        match v.as_int() {
            Some(i) => u64::try_from(i).map_err(|_| Error::format(&self.path, format!("metadata key '{}' is negative ({i})", show(key)))),
            None => Err(self.wrong(key, v, "an integer")),
        }
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.need(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            v => Err(self.wrong(key, v, "a float")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.need(key)? {
            Value::Bool(x) => Ok(*x),
            v => Err(self.wrong(key, v, "a bool")),
        }
    }

    fn get_array(&self, key: &str) -> Result<&[Value]> {
        match self.need(key)? {
            Value::Array(a) => Ok(a),
            v => Err(self.wrong(key, v, "an array")),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.as_str()),
                v => Err(self.wrong_elem(key, v, "strings")),
            })
            .collect()
    }

    /// Elements of any integer type that fit in i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        self.get_array(key)?.iter().map(|v| v.as_int().and_then(|i| i64::try_from(i).ok()).ok_or_else(|| self.wrong_elem(key, v, "integers"))).collect()
    }

    /// Elements of type f32 or f64.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                v => Err(self.wrong_elem(key, v, "floats")),
            })
            .collect()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes. Ranges were checked at open; an info that does not
    /// come from this file (out of range) gives an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let (start, end) = (t.offset as usize, t.offset.saturating_add(t.bytes) as usize);
        self.storage.bytes().get(start..end).unwrap_or(&[])
    }

    /// The file's bytes, shared (weights keep views into them).
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }
}

/// Writes valid GGUF v3 files (tests, fuzz corpora, tiny models).
pub struct GgufWriter {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, WType, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter { alignment: DEFAULT_ALIGNMENT, metadata: Vec::new(), tensors: Vec::new() }
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Data alignment; written as `general.alignment` (u32) unless it is the default.
    pub fn alignment(&mut self, a: u64) -> &mut Self {
        self.alignment = a;
        self.metadata.retain(|(k, _)| k != "general.alignment");
        if a != DEFAULT_ALIGNMENT {
            self.metadata.push(("general.alignment".into(), Value::U32(a as u32)));
        }
        self
    }

    /// Set a metadata value (replacing an earlier one with the same key).
    pub fn add(&mut self, key: &str, v: Value) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), v));
        self
    }

    /// Drop a metadata value.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    /// Add a tensor: `dims` ne0 first, `data` in `wtype`'s block layout.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], wtype: WType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), dims.to_vec(), wtype, data));
        self
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bad = |m: String| Error::format("GgufWriter", m);
        if !self.alignment.is_power_of_two() || self.alignment > MAX_ALIGNMENT {
            return Err(bad(format!("alignment {} is not a power of two up to {MAX_ALIGNMENT}", self.alignment)));
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut out, v).map_err(|m| bad(format!("metadata '{k}': {m}")))?;
        }
        let mut rel = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for (name, dims, w, data) in &self.tensors {
            let want = tensor_bytes(dims, *w).map_err(|m| bad(format!("tensor '{name}': {m}")))?;
            if want != data.len() as u64 {
                return Err(bad(format!("tensor '{name}': {} bytes given, {dims:?} {} needs {want}", data.len(), w.name())));
            }
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&w.ggml_id().to_le_bytes());
            out.extend_from_slice(&rel.to_le_bytes());
            offsets.push(rel);
            rel = (rel + want).div_ceil(self.alignment) * self.alignment;
        }
        let data_start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(data);
        }
        out.resize((data_start + rel).max(out.len() as u64) as usize, 0);
        Ok(out)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()?).map_err(|e| Error::io(path.display().to_string(), e))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Write a value's payload (its type id is written by the caller).
fn put_value(out: &mut Vec<u8>, v: &Value) -> std::result::Result<(), String> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => put_str(out, s),
        Value::Array(items) => {
            // An empty array is written with element type u8.
            let ety = items.first().map_or(0, Value::type_id);
            if items.iter().any(|i| i.type_id() != ety) {
                return Err("array elements have different types".into());
            }
            out.extend_from_slice(&ety.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i)?;
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
    Ok(())
}
