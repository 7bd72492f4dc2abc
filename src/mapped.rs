//! The bytes of a model file, kept for as long as any tensor views them:
//! `Storage` (the file, memory-mapped or owned) and `Bytes` (one range of it).
//! The parsers (`gguf`, `safetensors`) fill them; `weights` hands them out.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// The bytes of one model file: memory-mapped from disk, or owned (tests, fuzzing).
pub enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    /// Map `path` read-only.
    pub fn map(path: &Path) -> Result<Arc<Storage>> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::io(&shown, e))?;
        // SAFETY: the map is read-only and private to this process; like every
        // mmap-based loader we assume the model file is not truncated or
        // rewritten while it is open (that would be a bus error, not UB we can check).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&shown, e))?;
        Ok(Arc::new(Storage::Mapped(map)))
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A view of one tensor's bytes inside a kept file (mmap or owned); derefs to `&[u8]`.
/// Cloning shares the file, so views outlive the `Gguf`/`SafeTensors` they came from.
#[derive(Clone)]
pub struct Bytes {
    storage: Arc<Storage>,
    start: usize,
    len: usize,
}

impl Bytes {
    /// `start..start+len` of `storage`; callers pass ranges their parser checked.
    pub fn new(storage: &Arc<Storage>, start: u64, len: u64) -> Bytes {
        Bytes { storage: storage.clone(), start: start as usize, len: len as usize }
    }

    /// Bytes `start..start+len` of this view (clamped to it).
    pub fn slice(&self, start: usize, len: usize) -> Bytes {
        let start = start.min(self.len);
        Bytes { storage: self.storage.clone(), start: self.start + start, len: len.min(self.len - start) }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.storage.bytes().get(self.start..self.start.saturating_add(self.len)).unwrap_or(&[])
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} at {})", self.len, self.start)
    }
}
