//! Cached conversations: KV caches kept after their requests, found again
//! by the longest shared prefix of token ids (a request that extends an
//! earlier one prefills only its new tokens), dropped least recently used
//! first when a new cache needs their memory (the engine decides how many).

/// What the store needs of a cache: whether it can be cut back to a prefix.
pub trait Slot {
    fn can_truncate(&self) -> bool;
    /// Keep the first `n` tokens (only called where `can_truncate`).
    fn truncate(&mut self, n: usize);
}

pub struct Entry<S> {
    pub id: u64,
    pub slot: S,
    /// The token ids in the cache, in order.
    pub ids: Vec<u32>,
    /// The KV policy (its `--kv` text): a cache serves requests of the same policy only.
    pub kv: String,
    pub bytes: u64,
    used: u64,
}

pub struct Store<S> {
    entries: Vec<Entry<S>>,
    clock: u64,
}

impl<S> Default for Store<S> {
    fn default() -> Self {
        Store { entries: Vec::new(), clock: 0 }
    }
}

impl<S: Slot> Store<S> {
    pub fn entries(&self) -> impl Iterator<Item = &Entry<S>> {
        self.entries.iter()
    }

    /// Bytes of every cached conversation.
    pub fn resident(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// Keep `slot` holding `ids` as the most recently used conversation.
    pub fn put(&mut self, id: u64, slot: S, ids: Vec<u32>, kv: String, bytes: u64) {
        self.clock += 1;
        self.entries.push(Entry { id, slot, ids, kv, bytes, used: self.clock });
    }

    /// The conversation under policy `kv` that shares the longest usable
    /// prefix with `ids`, taken out of the store and cut to that prefix,
    /// with its length. Usable: its whole cache when `ids` extends it, else
    /// the shared part where the cache can be cut back and it is at least
    /// half of the cache; always leaving at least one token of `ids` to run.
    pub fn take_prefix(&mut self, kv: &str, ids: &[u32]) -> Option<(Entry<S>, usize)> {
        let usable = |e: &Entry<S>| {
            let common = e.ids.iter().zip(ids).take_while(|(a, b)| a == b).count();
            match common == e.ids.len() && common < ids.len() {
                true => common,
                // Cut back only a conversation mostly shared (as llama-server's
                // slot similarity of 0.5): a stranger sharing a few tokens must
                // not take over a cache worth more to its own conversation.
                false if e.slot.can_truncate() && 2 * common >= e.ids.len() => common.min(ids.len().saturating_sub(1)),
                false => 0,
            }
        };
        let (i, n) =
            self.entries.iter().enumerate().filter(|(_, e)| e.kv == kv).map(|(i, e)| (i, usable(e))).max_by_key(|&(i, n)| (n, self.entries[i].used))?;
        if n == 0 {
            return None;
        }
        let mut e = self.entries.swap_remove(i);
        if n < e.ids.len() {
            e.slot.truncate(n);
            e.ids.truncate(n);
        }
        Some((e, n))
    }

    /// An empty conversation's cache under policy `kv` (one whose tokens were dropped), to reuse.
    pub fn take_empty(&mut self, kv: &str) -> Option<Entry<S>> {
        let i = self.entries.iter().position(|e| e.kv == kv && e.ids.is_empty())?;
        Some(self.entries.swap_remove(i))
    }

    /// Drop the least recently used conversation, returning it.
    pub fn evict_lru(&mut self) -> Option<Entry<S>> {
        let i = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used)?;
        Some(self.entries.swap_remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache that records its cut.
    struct Fake {
        cut: bool,
        len: Option<usize>,
    }

    impl Slot for Fake {
        fn can_truncate(&self) -> bool {
            self.cut
        }
        fn truncate(&mut self, n: usize) {
            self.len = Some(n);
        }
    }

    fn store(convs: &[(&[u32], &str, bool)]) -> Store<Fake> {
        let mut s = Store::default();
        for (i, (ids, kv, cut)) in convs.iter().enumerate() {
            s.put(i as u64, Fake { cut: *cut, len: None }, ids.to_vec(), kv.to_string(), 100);
        }
        s
    }

    #[test]
    fn a_request_extending_a_conversation_takes_its_whole_cache() {
        let mut s = store(&[(&[1, 2, 3], "full", false), (&[1, 2, 3, 4, 5], "full", false), (&[1, 2, 3, 4, 5, 6], "q", false)]);
        let (e, n) = s.take_prefix("full", &[1, 2, 3, 4, 5, 9]).unwrap();
        assert_eq!((e.id, n, e.slot.len), (1, 5, None));
        assert_eq!(s.entries().count(), 2);
        // A diverging cache that cannot be cut is not used.
        let mut s = store(&[(&[1, 2, 7], "full", false)]);
        assert!(s.take_prefix("full", &[1, 2, 3]).is_none());
    }

    #[test]
    fn a_cache_that_can_be_cut_serves_the_shared_part() {
        let mut s = store(&[(&[1, 2, 7, 8], "full", true)]);
        let (e, n) = s.take_prefix("full", &[1, 2, 3]).unwrap();
        assert_eq!((n, e.slot.len, e.ids.clone()), (2, Some(2), vec![1, 2]));
        // The same prompt again: one token is left to run.
        let mut s = store(&[(&[1, 2, 3], "full", true)]);
        let (e, n) = s.take_prefix("full", &[1, 2, 3]).unwrap();
        assert_eq!((n, e.slot.len), (2, Some(2)));
        let mut s = store(&[(&[1, 2, 3], "full", false)]);
        assert!(s.take_prefix("full", &[1, 2, 3]).is_none(), "nothing would be left to run");
        assert!(store(&[(&[5], "full", true)]).take_prefix("full", &[1]).is_none());
        assert!(store(&[(&[1, 2, 7, 8, 9], "full", true)]).take_prefix("full", &[1, 2, 3]).is_none(), "less than half is shared");
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut s = store(&[(&[1], "a", false), (&[2], "b", false), (&[3], "c", false)]);
        let (e, _) = s.take_prefix("b", &[2, 5]).unwrap();
        s.put(e.id, e.slot, e.ids, e.kv, e.bytes);
        let order: Vec<u64> = std::iter::from_fn(|| s.evict_lru().map(|e| e.id)).collect();
        assert_eq!(order, vec![0, 2, 1], "b was used last");
        assert_eq!(s.resident(), 0);
        assert!(s.take_empty("a").is_none());
        let mut s = store(&[(&[], "a", false), (&[1], "a", false)]);
        assert_eq!(s.take_empty("a").map(|e| e.id), Some(0));
    }
}
