//! Launch builders for Quest (query-aware page selection, arXiv
//! 2406.10774): page metadata after every KV append, and per decode
//! step page scores, top-k page selection and attention over the selected
//! pages, merged by `attn_merge`. Nothing is read back inside a step.
//!
//! Selection units: a unit is the set of query heads sharing one page list.
//! `unit = 1` gives every query head its own pages (the paper's MHA rule);
//! `unit = group` lets the query heads of a KV head share one list, chosen
//! by the sum of their page scores, so each selected K/V row is read once
//! for the group.

use super::attention::{AttnShape, DECODE_LANES, DecodeAttn, WG, attn_merge};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, storage_size};
use crate::kernels::{Dispatch, Kernel, Spec, grid_1d};
use bytemuck::{Pod, Zeroable};

/// Most pages per KV head: quest_select counts a page's rank over every page in
/// one invocation's loop (llvmpipe stops those after 65535 iterations in all).
pub const MAX_PAGES: u32 = 1 << 15;

/// Most full pages kept per step that `quest_select_radix` ranks (its
/// workgroup array `CAP`); more go to `quest_select`.
pub const RADIX_KEEP: u32 = 3072;

/// Quest's geometry on top of an [`AttnShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuestShape {
    pub attn: AttnShape,
    /// Slots per page.
    pub page: u32,
    /// Pages attended per step and unit, the current page included.
    pub budget_pages: u32,
    /// Query heads per selection unit: 1 or `attn.group()`.
    pub unit: u32,
}

impl QuestShape {
    pub fn new(attn: AttnShape, page: u32, budget_tokens: u32, unit: u32) -> Result<QuestShape> {
        if page == 0 || page > 1024 {
            return Err(Error::msg(format!("quest: page {page} is outside 1..=1024")));
        }
        if budget_tokens < page {
            return Err(Error::msg(format!("quest: budget {budget_tokens} is below one page of {page} tokens")));
        }
        let pages = attn.max_seq.div_ceil(page);
        if pages > MAX_PAGES {
            return Err(Error::msg(format!("quest: pages of {page} tokens over {} slots make {pages} pages; at most {MAX_PAGES} (raise page=)", attn.max_seq)));
        }
        if unit != 1 && unit != attn.group() {
            return Err(Error::msg(format!("quest: a selection unit of {unit} heads is neither 1 nor the KV group {}", attn.group())));
        }
        Ok(QuestShape { attn, page, budget_pages: budget_tokens / page, unit })
    }

    /// Pages per KV head that cover `max_seq` slots.
    pub fn max_pages(&self) -> u32 {
        self.attn.max_seq.div_ceil(self.page)
    }

    /// Selection units: `n_heads / unit`.
    pub fn n_units(&self) -> u32 {
        self.attn.n_heads / self.unit
    }

    /// Chunks the selected slots are split into (workgroups per unit): at most
    /// 128 slots each, 16 per lane, however large the budget (llvmpipe stops an
    /// invocation's loops after 65535 iterations in all).
    pub fn n_split(&self) -> u32 {
        (self.budget_pages * self.page).div_ceil(128).max(1)
    }

    /// Bytes of one layer's `kmax` (or `kmin`) buffer.
    pub fn meta_bytes(&self, f16: bool) -> u64 {
        let elem = if f16 { 2 } else { 4 };
        self.attn.n_kv_heads as u64 * self.max_pages() as u64 * self.attn.head_dim as u64 * elem
    }

    /// Pages a call of `n` new tokens can touch.
    pub fn span(&self, n: u32) -> u32 {
        n.div_ceil(self.page) + 1
    }
}

fn meta_spec(s: &AttnShape, page: u32) -> Spec {
    s.cache_format(Spec::new(Kernel::QuestMeta).with("WG", WG).with("HEAD_DIM", s.head_dim).with("PAGE", page))
}

fn score_spec(s: &QuestShape) -> Spec {
    Spec::new(Kernel::QuestScore).with("WG", WG).with("HEAD_DIM", s.attn.head_dim).with("PAGE", s.page).with("GROUP", s.attn.group()).with("UNIT", s.unit)
}

fn select_spec(s: &QuestShape) -> Spec {
    if s.budget_pages - 1 <= RADIX_KEEP {
        Spec::new(Kernel::QuestSelectRadix).with("PAGE", s.page)
    } else {
        Spec::new(Kernel::QuestSelect).with("WG", WG).with("PAGE", s.page)
    }
}

/// The paged attention, with the attention core's options of `s.attn` (the
/// window applies to the slots of the listed pages).
fn pages_spec(s: &QuestShape) -> Spec {
    s.attn.options(
        Spec::new(Kernel::AttnDecodePages)
            .with("LANES", DECODE_LANES)
            .with("HEAD_DIM", s.attn.head_dim)
            .with("PAGE", s.page)
            .with("GROUP", s.attn.group())
            .with("UNIT", s.unit),
    )
}

/// The specialisations the tests and the real model use (head dim 64; groups
/// 1 and 3; page 16 and the tests' odd pages; a softcap and a window).
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for &page in &[16, 5] {
        let attn = AttnShape { n_heads: 1, n_kv_heads: 1, head_dim: 64, max_seq: 64, ..Default::default() };
        for budget_pages in [2, RADIX_KEEP + 2] {
            v.push(select_spec(&QuestShape { attn, page, budget_pages, unit: 1 }));
        }
        for &(group, unit) in &[(3, 1), (3, 3), (1, 1)] {
            for kvq in [0, 8, 4] {
                let attn = AttnShape { n_heads: group, n_kv_heads: 1, head_dim: 64, max_seq: 64, kvq, ..Default::default() };
                let s = QuestShape { attn, page, budget_pages: 2, unit };
                v.extend([meta_spec(&attn, page), score_spec(&s), pages_spec(&s)]);
            }
        }
    }
    let attn = AttnShape { n_heads: 3, n_kv_heads: 1, head_dim: 64, max_seq: 64, softcap: 50.0, window: 4096, ..Default::default() };
    v.push(pages_spec(&QuestShape { attn, page: 16, budget_pages: 2, unit: 3 }));
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MetaParams {
    n_kv_heads: u32,
    max_seq: u32,
    max_pages: u32,
    span: u32,
}

/// Recompute `kmax` / `kmin` (`[n_kv_heads][max_pages][head_dim]` kv_t) for the
/// pages holding the call's new slots; record after the layer's `kv_append`.
/// `max_tokens` sizes the grid.
pub fn quest_meta(
    gpu: &Gpu,
    s: &QuestShape,
    k_cache: &wgpu::Buffer,
    kmax: &wgpu::Buffer,
    kmin: &wgpu::Buffer,
    step: &wgpu::Buffer,
    max_tokens: u32,
) -> Dispatch {
    let span = s.span(max_tokens);
    let params = MetaParams { n_kv_heads: s.attn.n_kv_heads, max_seq: s.attn.max_seq, max_pages: s.max_pages(), span };
    let params = gpu.uniform("quest_meta.params", bytemuck::bytes_of(&params));
    let n = span * s.attn.n_kv_heads * s.attn.head_dim / 4;
    gpu.dispatch(&meta_spec(&s.attn, s.page), &[k_cache, kmax, kmin, &params, step], grid_1d(n.div_ceil(WG)))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SelectParams {
    max_seq: u32,
    max_pages: u32,
    budget_pages: u32,
    /// quest_score's weight of the box width (quest_select ignores it).
    width: f32,
}

fn select_params(gpu: &Gpu, s: &QuestShape, width: f32) -> wgpu::Buffer {
    let p = SelectParams { max_seq: s.attn.max_seq, max_pages: s.max_pages(), budget_pages: s.budget_pages, width };
    gpu.uniform("quest.params", bytemuck::bytes_of(&p))
}

/// Page scores `[n_units][max_pages]` f32 of the decode query (row 0 of
/// `q`): `q · centre + width · |q| · half-width` of each page's key box;
/// `width` 1 is Quest's upper bound.
#[allow(clippy::too_many_arguments)]
pub fn quest_score(
    gpu: &Gpu,
    s: &QuestShape,
    width: f32,
    q: &wgpu::Buffer,
    kmax: &wgpu::Buffer,
    kmin: &wgpu::Buffer,
    score: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let params = select_params(gpu, s, width);
    gpu.dispatch(&score_spec(s), &[q, kmax, kmin, score, &params, step], [s.max_pages().div_ceil(WG), s.n_units(), 1])
}

/// The page list `[n_units][budget_pages]` u32 each unit attends: by
/// `quest_select_radix` (a workgroup per unit) when at most [`RADIX_KEEP`]
/// full pages are kept, else by `quest_select` (an invocation per page).
/// Both write the same lists.
pub fn quest_select(gpu: &Gpu, s: &QuestShape, score: &wgpu::Buffer, list: &wgpu::Buffer, step: &wgpu::Buffer) -> Dispatch {
    let params = select_params(gpu, s, 1.0);
    let spec = select_spec(s);
    let grid = if spec.kernel == Kernel::QuestSelectRadix { [1, s.n_units(), 1] } else { [s.max_pages().div_ceil(WG), s.n_units(), 1] };
    gpu.dispatch(&spec, &[score, list, &params, step], grid)
}

/// Per-step buffers shared by every Quest layer: scores, page lists and the
/// partial softmax states.
pub struct QuestScratch {
    pub shape: QuestShape,
    pub score: wgpu::Buffer,
    pub list: wgpu::Buffer,
    pub part_o: wgpu::Buffer,
    pub part_ml: wgpu::Buffer,
}

impl QuestScratch {
    pub fn new(gpu: &Gpu, s: &QuestShape) -> QuestScratch {
        let [score, list, part_o, part_ml] = QuestScratch::buffers(s).map(|(label, bytes)| gpu.buffer(label, bytes));
        QuestScratch { shape: *s, score, list, part_o, part_ml }
    }

    /// Bytes `new` allocates for `s`.
    pub fn bytes_for(s: &QuestShape) -> u64 {
        QuestScratch::buffers(s).iter().map(|&(_, b)| storage_size(b)).sum()
    }

    /// (label, requested bytes) of score, list, part_o and part_ml.
    fn buffers(s: &QuestShape) -> [(&'static str, u64); 4] {
        let parts = s.attn.n_heads as u64 * s.n_split() as u64 * DECODE_LANES as u64;
        [
            ("quest.score", 4 * s.n_units() as u64 * s.max_pages() as u64),
            ("quest.list", 4 * s.n_units() as u64 * s.budget_pages as u64),
            ("quest.part_o", parts * s.attn.head_dim as u64 * 4),
            ("quest.part_ml", parts * 8),
        ]
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PagesParams {
    max_seq: u32,
    budget_pages: u32,
    n_split: u32,
    scale: f32,
}

/// Attention of the decode query (row 0 of `q`) over the pages in
/// `scratch.list`: partial states, then `attn_merge` into row 0 of `out`
/// and `lse` (the log-sum-exp over the attended slots).
#[allow(clippy::too_many_arguments)]
pub fn attn_decode_pages(
    gpu: &Gpu,
    s: &QuestShape,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    scratch: &QuestScratch,
    out: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> DecodeAttn {
    debug_assert_eq!(scratch.shape, *s, "quest scratch built for another shape");
    let n_split = s.n_split();
    let params = PagesParams { max_seq: s.attn.max_seq, budget_pages: s.budget_pages, n_split, scale: s.attn.scale() };
    let params = gpu.uniform("attn_decode_pages.params", bytemuck::bytes_of(&params));
    let partial =
        gpu.dispatch(&pages_spec(s), &[q, k_cache, v_cache, &scratch.list, &scratch.part_o, &scratch.part_ml, &params, step], [n_split, s.n_units(), 1]);
    let merge = attn_merge(gpu, &s.attn, s.attn.n_heads, &scratch.part_o, &scratch.part_ml, n_split * DECODE_LANES, out, lse, step);
    DecodeAttn { partial, merge }
}
