//! What the three axes of a KV policy hand each other, and nothing else:
//! a storage's page metadata ([`Pages`]) that a selection part scores, the
//! page list ([`PageList`]) a selection part hands the storage to attend,
//! and the cut ([`Cut`]) an eviction part asks of the storage. The axes
//! (`storage/`, `eviction/`, `selection/`) know these types, never each
//! other; `KvCache` passes them along in `attend.rs` and `mod.rs`.

use crate::ops::quest::{QuestScratch, QuestShape};

/// Per-page key summaries of one layer that a storage keeps itself (under
/// Mustafar, each compressed 64-token block's per-channel key max / min,
/// written at compression): `step`'s `kv_len` counts the slots the pages
/// cover.
pub struct Pages<'a> {
    pub kmax: &'a wgpu::Buffer,
    pub kmin: &'a wgpu::Buffer,
    pub step: &'a wgpu::Buffer,
}

/// The pages a selection part chose for one decode step: per selection
/// unit `shape.budget_pages` page indices in `scratch.list`, and the
/// scratch the page attention writes its partial states to.
#[derive(Clone, Copy)]
pub struct PageList<'a> {
    pub shape: &'a QuestShape,
    pub scratch: &'a QuestScratch,
}

impl<'a> PageList<'a> {
    /// The list buffer and its entries per selection unit.
    pub fn list(self) -> (&'a wgpu::Buffer, u32) {
        (&self.scratch.list, self.shape.budget_pages)
    }
}

/// What an eviction part asks of the storage before a call: drop at least
/// `at_least` of the oldest tokens after the first `sinks`. A storage that
/// addresses single slots keeps exactly the slots `keep` (increasing: the
/// sinks and the most recent tokens); one that drops whole blocks drops as
/// few as cover `at_least`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cut {
    pub sinks: usize,
    pub at_least: usize,
    pub keep: Vec<usize>,
}
