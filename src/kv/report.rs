//! What a cache holds, allocates and reads, in one place: the figures
//! `/kv`, `generate --json`, `bench` and `soak` print, and the `/kv` lines.
//! Each axis reports its own share: the storage each layer's bytes (rows
//! outside pages, and the pages), the selection part its metadata and what
//! a decode step reads of the pages, the eviction part its line.

use super::KvCache;

/// A cache's figures now.
#[derive(Clone, Debug, PartialEq)]
pub struct KvReport {
    /// Bytes of KV holding valid tokens, page metadata included: every
    /// layer's kept rows (under Mustafar: the window and the compressed
    /// blocks) and a selection part's metadata.
    pub resident: u64,
    /// Bytes the cache holds on the device: every buffer of every part and
    /// the attention scratch (Mustafar's pools as they have grown).
    pub allocated: u64,
    /// KV bytes the next decode step reads.
    pub read_per_step: u64,
    /// Tokens kept per layer.
    pub tokens_per_layer: Vec<usize>,
    /// The `/kv` lines.
    pub lines: Vec<String>,
}

impl KvCache {
    /// KV bytes resident now ([`KvReport::resident`], without the lines).
    pub fn resident(&self) -> u64 {
        self.bytes().0
    }

    /// (resident, read per decode step): the policy's layers, then the
    /// windowed ones.
    fn bytes(&self) -> (u64, u64) {
        let (mut resident, mut read_per_step) = (0, 0);
        for (l, n) in self.global_lens().into_iter().enumerate() {
            let b = self.storage.layer_bytes(l, n);
            resident += b.unpaged + b.paged + self.selection.meta_resident(l, b.paged_tokens);
            read_per_step += b.unpaged + self.selection.read(l, b.paged_tokens, b.paged);
        }
        if let Some(w) = &self.local {
            let (layers, token) = (w.slots.k.len() as u64, w.slots.token_bytes());
            resident += layers * w.len as u64 * token;
            read_per_step += layers * w.visible() as u64 * token;
        }
        (resident, read_per_step)
    }

    pub fn report(&self) -> KvReport {
        let tokens_per_layer = self.tokens_per_layer();
        let (resident, read_per_step) = self.bytes();
        let mut allocated = self.storage.allocated() + self.selection.allocated() + self.eviction.allocated() + self.scratch.allocated();
        let mut windowed = None;
        if let Some(w) = &self.local {
            let layers = w.slots.k.len() as u64;
            allocated += w.allocated();
            windowed = Some(format!(
                "windowed layers: {layers} of {} attend their last {} tokens, kept in {} slots each (the policy holds the others)",
                tokens_per_layer.len(),
                w.size,
                w.slots.shape.max_seq
            ));
        }
        let mib = |b: u64| b as f64 / 1048576.0;
        let layers = match tokens_per_layer.iter().all(|&n| n == tokens_per_layer[0]) {
            true => format!("{} in each of {} layers", tokens_per_layer[0], tokens_per_layer.len()),
            false => format!("{tokens_per_layer:?} per layer"),
        };
        let mut lines = vec![format!(
            "kv {}: {} tokens of {} ({:.2} MiB resident, {:.2} MiB allocated, {:.2} MiB read per decode step); tokens kept: {layers}; {resident} bytes resident",
            self.spec,
            self.len,
            self.capacity,
            mib(resident),
            mib(allocated),
            mib(read_per_step),
        )];
        let (storage, pages) = self.storage.describe(self.len);
        let paged = self.storage.layer_bytes(0, self.len).paged_tokens;
        if let Some(s) = self.selection.describe(paged) {
            lines.push(match pages {
                Some(p) => format!("{s} [{p}]"),
                None => s,
            });
        }
        lines.extend(storage);
        lines.extend(self.eviction.describe(self.pos, self.evicted));
        lines.extend(windowed);
        KvReport { resident, allocated, read_per_step, tokens_per_layer, lines }
    }
}
