//! Model files to named tensors: a GGUF file or an HF folder (config.json +
//! safetensors) opened into one `ModelConfig` and tensors under canonical
//! (GGUF) names, each a view into the kept, memory-mapped file.
//!
//! HF Q/K weights keep their HF row order; the config then says
//! `RopeStyle::HalfSplit` (GGUF llama files: `Interleaved`). An HF folder
//! whose config.json asks for Llama 3 RoPE scaling gets the tensor a GGUF
//! carries instead, `rope_freqs.weight`, computed from it.

use crate::arch::Role;
use crate::config::{ModelConfig, RopeFreqs};
use crate::error::{Error, Result, show};
use crate::gguf::Gguf;
use crate::mapped::{Bytes, Storage};
use crate::quant::{Layout, WType};
use crate::safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One weight tensor. `dims` are ne0 first: a matrix is `[cols, rows]`
/// (`cols` = input features, rows stored contiguously).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub wtype: WType,
    pub data: Bytes,
}

impl Tensor {
    /// Elements per row (ne0).
    pub fn cols(&self) -> usize {
        self.dims.first().map_or(0, |&d| d as usize)
    }
    /// Number of rows (product of the other dims).
    pub fn rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
    pub fn n_elems(&self) -> usize {
        self.cols() * self.rows()
    }
}

/// A loaded model: config, tensors by canonical name, and what the tokenizer needs.
pub struct Weights {
    pub cfg: ModelConfig,
    /// "gguf" or "safetensors".
    pub format: &'static str,
    /// The GGUF file or the HF folder.
    pub path: PathBuf,
    /// The GGUF (its metadata holds the tokenizer and chat template).
    pub gguf: Option<Gguf>,
    /// The HF folder (tokenizer.json, tokenizer_config.json live there).
    pub hf_dir: Option<PathBuf>,
    tensors: HashMap<String, Tensor>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({}, {}, {} tensors)", self.path.display(), self.format, self.tensors.len())
    }
}

impl Weights {
    /// Open a GGUF file, an HF folder, or a config.json / .safetensors file
    /// inside one; the result is validated against its config.
    pub fn open(path: &Path) -> Result<Weights> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(&shown, e))?;
        if meta.is_dir() {
            return Weights::from_hf_dir(path);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "config.json" || name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json") {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            return Weights::from_hf_dir(dir);
        }
        let mut magic = Vec::with_capacity(4);
        let read = std::fs::File::open(path).and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4), &mut magic));
        match read {
            Ok(_) if magic == b"GGUF" => Weights::from_gguf(Gguf::open(path)?),
            Ok(_) => Err(Error::format(&shown, "not a GGUF file, an HF model folder, or a config.json/.safetensors file in one")),
            Err(e) => Err(Error::io(&shown, e)),
        }
    }

    /// Tensors of a parsed GGUF (views into its file), validated.
    pub fn from_gguf(g: Gguf) -> Result<Weights> {
        let cfg = ModelConfig::from_gguf(&g)?;
        let tensors = g
            .tensors
            .iter()
            .map(|t| {
                let data = Bytes::new(g.storage(), t.offset, t.bytes);
                (t.name.clone(), Tensor { name: t.name.clone(), dims: t.dims.clone(), wtype: t.wtype, data })
            })
            .collect();
        let tensors = split_fused(&cfg, tensors).map_err(|m| Error::format(&g.path, m))?;
        let w = Weights { cfg, format: "gguf", path: PathBuf::from(&g.path), gguf: Some(g), hf_dir: None, tensors };
        w.validate()?;
        Ok(w)
    }

    /// An HF folder: config.json plus model.safetensors, or shards listed in
    /// model.safetensors.index.json. Validated.
    pub fn from_hf_dir(dir: &Path) -> Result<Weights> {
        let shown = dir.display().to_string();
        let cfg_path = dir.join("config.json");
        let cfg_shown = cfg_path.display().to_string();
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_shown, e))?;
        let cfg = ModelConfig::from_hf_json(&cfg_shown, &text)?;

        let index = dir.join("model.safetensors.index.json");
        let files: Vec<(PathBuf, Vec<String>)> = if index.exists() {
            shards(&index)?.into_iter().map(|(f, names)| (dir.join(f), names)).collect()
        } else if dir.join("model.safetensors").exists() {
            vec![(dir.join("model.safetensors"), Vec::new())]
        } else {
            return Err(Error::format(&shown, "no model.safetensors or model.safetensors.index.json"));
        };

        let norms = if cfg.family.recipe().hf_norm_plus_one { norm_names(&cfg) } else { Default::default() };
        let mut tensors = HashMap::new();
        for (file, listed) in files {
            let st = SafeTensors::open(&file)?;
            if let Some(missing) = listed.iter().find(|n| st.tensor(n).is_none()) {
                return Err(Error::format(&st.path, format!("the index lists tensor '{}' in this file but it is not there", show(missing))));
            }
            for t in &st.tensors {
                if t.name.ends_with(".rotary_emb.inv_freq") {
                    continue; // a cached RoPE table some checkpoints carry; recomputed from the config
                }
                let Some(name) = cfg.family.hf_to_canonical(&t.name) else {
                    return Err(Error::format(&st.path, format!("unexpected tensor '{}' (not a {} weight)", show(&t.name), cfg.family.title())));
                };
                if name == "output.weight" && cfg.tied_embeddings {
                    continue; // a copy of the embeddings; tied models read token_embd
                }
                let mut tensor = Tensor { name: name.clone(), dims: t.dims(), wtype: t.wtype, data: Bytes::new(st.storage(), t.offset, t.bytes) };
                if norms.contains(&name) {
                    tensor = plus_one(tensor).map_err(|e| Error::format(&st.path, format!("tensor '{}': {e}", show(&t.name))))?;
                }
                if tensors.insert(name, tensor).is_some() {
                    return Err(Error::format(&st.path, format!("tensor '{}' appears twice", show(&t.name))));
                }
            }
        }
        if let Some(RopeFreqs::Llama3(p)) = cfg.rope_freqs {
            let name = cfg.family.tensor_name(Role::RopeFreqs, None);
            let bytes: Vec<u8> = p.factors(cfg.head_dim, cfg.rope_theta as f64).iter().flat_map(|f| f.to_le_bytes()).collect();
            let (len, storage) = (bytes.len() as u64, std::sync::Arc::new(Storage::Owned(bytes)));
            let t = Tensor { name: name.clone(), dims: vec![cfg.head_dim as u64 / 2], wtype: WType::F32, data: Bytes::new(&storage, 0, len) };
            tensors.insert(name, t);
        }
        let w = Weights { cfg, format: "safetensors", path: dir.to_path_buf(), gguf: None, hf_dir: Some(dir.to_path_buf()), tensors };
        w.validate()?;
        Ok(w)
    }

    /// Bytes of all tensors as the GPU holds them: matrices of a type with
    /// a split layout take their padded rows when `split` (see
    /// `quant::Layout`), everything else its stored bytes.
    pub fn gpu_bytes(&self, split: bool) -> u64 {
        let bytes = |t: &Tensor| match t.dims.len() {
            n if n >= 2 => (t.rows() * t.wtype.row_bytes_in(t.cols(), Layout::for_type(t.wtype, split))) as u64,
            _ => t.data.len() as u64,
        };
        self.tensors.values().map(bytes).sum()
    }

    /// A tensor by canonical name.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| self.err(format!("missing tensor {}", self.shown_name(name))))
    }

    /// The LM head: `output.weight`, or `token_embd.weight` when tied.
    pub fn output(&self) -> Result<&Tensor> {
        self.get(if self.cfg.tied_embeddings { "token_embd.weight" } else { "output.weight" })
    }

    /// Llama 3 RoPE frequency factors (`rope_freqs.weight`) as f32, when the
    /// model has them: one divisor per rotated pair, each finite and positive.
    pub fn rope_factors(&self) -> Result<Option<Vec<f32>>> {
        if self.cfg.rope_freqs.is_none() {
            return Ok(None);
        }
        let name = self.cfg.family.tensor_name(Role::RopeFreqs, None);
        let t = self.get(&name)?;
        let v = crate::quant::dequantize(t.wtype, &t.data, t.n_elems())?;
        if let Some((j, f)) = v.iter().enumerate().find(|(_, f)| !(f.is_finite() && **f > 0.0)) {
            return Err(self.err(format!("tensor {} holds {f} at pair {j}: RoPE frequency factors must be positive numbers", self.shown_name(&name))));
        }
        Ok(Some(v))
    }

    /// All canonical tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// tokenizer.json of an HF folder.
    pub fn tokenizer_json(&self) -> Option<PathBuf> {
        self.hf_dir.as_ref().map(|d| d.join("tokenizer.json"))
    }

    /// Every tensor a model with `cfg` needs, with its dims (ne0 first):
    /// the family's tensor table (`arch`) over the config.
    pub fn expected(cfg: &ModelConfig) -> Vec<(String, Vec<u64>)> {
        cfg.tensors().into_iter().map(|n| (n.name, n.dims)).collect()
    }

    /// Every expected tensor present with the config's shape and a layout the
    /// kernels can read (`quant::check_shape`), and nothing else.
    pub fn validate(&self) -> Result<()> {
        let expected = Weights::expected(&self.cfg);
        for (name, want) in &expected {
            let t = self.get(name)?;
            // Trailing unit dims (a vector stored as [n, 1]) are the same shape.
            let mut found = t.dims.as_slice();
            while found.len() > want.len() && found.last() == Some(&1) {
                found = &found[..found.len() - 1];
            }
            if found != want.as_slice() {
                return Err(self.err(format!("tensor {} has shape {:?}, expected {want:?} for this config (dims ne0 first)", self.shown_name(name), t.dims)));
            }
            // Readable by the GPU kernels: whole blocks per row, byte offsets within u32.
            crate::quant::check_shape(t.wtype, t.rows(), t.cols()).map_err(|e| self.err(format!("tensor {}: {e}", self.shown_name(name))))?;
        }
        if self.tensors.len() != expected.len() {
            let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
            let mut extra: Vec<&str> = self.names().into_iter().filter(|n| !known.contains(n)).collect();
            extra.truncate(3);
            let extra: Vec<String> = extra.iter().map(|n| self.shown_name(n)).collect();
            return Err(self.err(format!("unexpected tensor(s) {} for a {}-layer {}", extra.join(", "), self.cfg.n_layers, self.cfg.family.title())));
        }
        self.rope_factors()?;
        Ok(())
    }

    fn err(&self, msg: String) -> Error {
        Error::format(self.path.display().to_string(), msg)
    }

    /// The name quoted, with the HF spelling for HF folders: `'canonical' (HF 'name')`.
    fn shown_name(&self, name: &str) -> String {
        match (self.format, self.cfg.family.canonical_to_hf(name)) {
            ("safetensors", Some(hf)) => format!("'{}' (HF '{}')", show(name), show(&hf)),
            _ => format!("'{}'", show(name)),
        }
    }
}

/// The shard files of a model.safetensors.index.json, each with the tensors
/// the index places in it. File names must be plain names inside the folder.
/// The family's RMSNorm weights (canonical names).
fn norm_names(cfg: &ModelConfig) -> std::collections::HashSet<String> {
    use crate::arch::Role::*;
    cfg.tensors()
        .into_iter()
        .filter(|n| matches!(n.role, AttnNorm | FfnNorm | PostAttnNorm | PostFfnNorm | QNorm | KNorm | OutputNorm))
        .map(|n| n.name)
        .collect()
}

/// A norm weight `w` stored for a scale of `1 + w`, as F32 `1 + w`.
fn plus_one(t: Tensor) -> Result<Tensor> {
    let n = t.n_elems();
    if n == 0 || t.data.len() > 1 << 24 {
        return Err(Error::msg(format!("a norm weight of {n} elements")));
    }
    let v = crate::quant::dequantize(t.wtype, &t.data, n)?;
    let bytes: Vec<u8> = v.iter().flat_map(|x| (1.0 + x).to_le_bytes()).collect();
    let (len, storage) = (bytes.len() as u64, std::sync::Arc::new(Storage::Owned(bytes)));
    Ok(Tensor { wtype: WType::F32, data: Bytes::new(&storage, 0, len), ..t })
}

/// The recipe's fused tensors ([`crate::arch::Fused`]) a GGUF stores whole,
/// split into the table's matrices: each part a view of its rows. A fused
/// tensor of another height, or beside its parts, is left for `validate`
/// to report.
fn split_fused(cfg: &ModelConfig, mut tensors: HashMap<String, Tensor>) -> std::result::Result<HashMap<String, Tensor>, String> {
    for f in cfg.family.recipe().fused {
        let rows: Vec<u64> = f.parts.iter().map(|&(_, d)| cfg.size(d)).collect();
        for l in 0..cfg.n_layers {
            let name = format!("blk.{l}.{}.weight", f.gguf);
            let part_name = |p: &str| format!("blk.{l}.{p}.weight");
            let whole = tensors.get(&name).is_some_and(|t| t.dims.len() == 2 && t.dims[1] == rows.iter().sum::<u64>());
            if !whole || f.parts.iter().any(|&(p, _)| p != f.gguf && tensors.contains_key(&part_name(p))) {
                continue;
            }
            let t = tensors.remove(&name).expect("checked above");
            crate::quant::check_shape(t.wtype, t.rows(), t.cols()).map_err(|e| format!("tensor {name}: {e}"))?;
            let row_bytes = t.data.len() / t.rows();
            let mut at = 0;
            for (&(p, _), &r) in f.parts.iter().zip(&rows) {
                let len = r as usize * row_bytes;
                tensors.insert(part_name(p), Tensor { name: part_name(p), dims: vec![t.dims[0], r], wtype: t.wtype, data: t.data.slice(at, len) });
                at += len;
            }
        }
    }
    Ok(tensors)
}

fn shards(index: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let shown = index.display().to_string();
    let err = |m: String| Error::format(&shown, m);
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(&shown, e))?;
    let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let map = j.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| err("no \"weight_map\" object".into()))?;
    let mut files: Vec<(String, Vec<String>)> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| err(format!("weight_map entry '{}' is not a file name", show(tensor))))?;
        let plain = !file.is_empty() && file != "." && file != ".." && !file.contains(['/', '\\']);
        if !plain {
            return Err(err(format!("shard name '{}' is not a plain file name in the model folder", show(file))));
        }
        match files.iter_mut().find(|(f, _)| f == file) {
            Some((_, names)) => names.push(tensor.clone()),
            None => files.push((file.to_string(), vec![tensor.clone()])),
        }
    }
    if files.is_empty() {
        return Err(err("weight_map is empty".into()));
    }
    Ok(files)
}
