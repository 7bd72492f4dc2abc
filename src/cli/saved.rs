//! A conversation saved by `/save` in `wgkv chat`: a small binary header,
//! the messages and counts as JSON, then the KV cache's kept rows (see
//! `kv::snapshot`), so `/load` resumes without prefilling the history again.
//!
//! Layout: `WGKVCHAT`, format version (u32 LE), JSON length (u64 LE), the
//! JSON [`Saved`], the cache bytes. Nothing is allocated from a length the
//! file claims beyond the file's own size.

use crate::kv::snapshot::KvState;
use crate::template::Message;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"WGKVCHAT";
const VERSION: u32 = 1;
const PREFIX: u64 = 8 + 4 + 8;

/// What a saved conversation holds besides the cache's bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Saved {
    pub wgkv_version: String,
    /// The model file's name and sha256 (`fetch::model_checksum`).
    pub model: String,
    pub model_sha256: String,
    /// `--kv` and `--ctx` of the run that saved it.
    pub kv: String,
    pub ctx: usize,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    /// The cache holds the tokens of the conversation's rendered text
    /// (the template over `system` and `messages`) up to this byte.
    pub fed_len: usize,
    /// The cache's counts; `None` when the policy's cache cannot be saved
    /// (the messages are prefilled again on load).
    pub cache: Option<KvState>,
}

/// Writes `saved` and the cache bytes to `path`; returns the file's size.
pub fn write(path: &str, saved: &Saved, cache: &[u8]) -> Result<u64> {
    let json = serde_json::to_vec(saved).map_err(|e| Error::msg(format!("{path}: {e}")))?;
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(&mut f);
    let io = |e| Error::io(path, e);
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&VERSION.to_le_bytes()).map_err(io)?;
    w.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&json).map_err(io)?;
    w.write_all(cache).map_err(io)?;
    w.flush().map_err(io)?;
    Ok(PREFIX + json.len() as u64 + cache.len() as u64)
}

/// Reads a file `write` made: the header and the cache bytes.
pub fn read(path: &str) -> Result<(Saved, Vec<u8>)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let bad = |why: &str| Error::format(path, format!("not a conversation saved by wgkv chat's /save ({why})"));
    let mut prefix = [0u8; PREFIX as usize];
    if size < PREFIX || f.read_exact(&mut prefix).is_err() || &prefix[..8] != MAGIC {
        return Err(bad("no WGKVCHAT header"));
    }
    let version = u32::from_le_bytes(prefix[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(bad(&format!("format version {version}; this wgkv reads {VERSION}")));
    }
    let json_len = u64::from_le_bytes(prefix[12..20].try_into().unwrap_or_default());
    if json_len > size - PREFIX {
        return Err(bad("its header runs past the end of the file"));
    }
    let mut json = vec![0u8; json_len as usize];
    f.read_exact(&mut json).map_err(|e| Error::io(path, e))?;
    let saved: Saved = serde_json::from_slice(&json).map_err(|e| bad(&format!("header: {e}")))?;
    let mut cache = Vec::with_capacity((size - PREFIX - json_len) as usize);
    f.read_to_end(&mut cache).map_err(|e| Error::io(path, e))?;
    let want = saved.cache.as_ref().map_or(0, KvState::data_bytes);
    if cache.len() as u64 != want {
        return Err(bad(&format!("{} bytes of cache where its header counts {want}", cache.len())));
    }
    Ok((saved, cache))
}
