//! Launch builders for Mustafar's compressed KV store (arXiv 2505.22913):
//! prune + compress 64-slot blocks on the GPU, expand them back to
//! dense rows, and decode attention read straight from the bitmap tiles.
//!
//! A [`Store`] holds one layer's compressed blocks: per (KV head, block) a
//! fixed set of tile bitmaps and offsets, and one pool of 16-byte units that
//! grows with the non-zeros the blocks really have (compress reserves each
//! block's run with an atomic bump; nothing is reserved for zeros). The
//! tile format is defined here (`T`, `keep_count`, `v_tiles`) and in the
//! shaders; `reference::mustafar` is an independent CPU version of it.

use super::attention::AttnShape;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, storage_size};
use crate::kernels::{Dispatch, Kernel, Spec};
use bytemuck::{Pod, Zeroable};

/// Tokens per block, and elements per tile.
pub const T: usize = 64;

/// Elements kept of a `d`-element vector at sparsity `s` (0 <= s < 1):
/// `d - floor(s * d)`, at least 1. The paper's code keeps one more (its
/// threshold is the k-th smallest magnitude, kept inclusively); wgkv keeps
/// exactly this many, so `s = 0.7` at `d = 64` keeps 20 of 64.
pub fn keep_count(d: usize, s: f64) -> usize {
    (d - (s * d as f64).floor() as usize).max(1)
}

/// Value tiles per token.
pub fn v_tiles(d: usize) -> usize {
    d.div_ceil(T)
}

/// Mustafar's geometry on top of an [`AttnShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MustafarShape {
    pub attn: AttnShape,
    /// Elements kept per key / value vector (`keep_count`).
    pub keep_k: u32,
    pub keep_v: u32,
}

impl MustafarShape {
    /// Refuses a sliding window: the compressed blocks form a ring whose
    /// tokens' positions `mustafar_attn` does not know (a softcap is fine).
    pub fn new(attn: AttnShape, keep_k: u32, keep_v: u32) -> Result<MustafarShape> {
        if attn.window > 0 {
            return Err(Error::msg(format!(
                "mustafar: a sliding window ({} tokens) is not supported: the compressed blocks do not know their positions",
                attn.window
            )));
        }
        let d = attn.head_dim;
        if d > 128 {
            return Err(Error::msg(format!("mustafar: head_dim {d} is above the 128 the kernels handle")));
        }
        if keep_k == 0 || keep_v == 0 || keep_k > d || keep_v > d {
            return Err(Error::msg(format!("mustafar: keeping {keep_k} / {keep_v} of {d} elements is outside 1..={d}")));
        }
        Ok(MustafarShape { attn, keep_k, keep_v })
    }

    /// Tiles per (KV head, block): one per key channel, `ceil(d / 64)` per token's value.
    pub fn tiles(&self) -> u32 {
        self.attn.head_dim + T as u32 * v_tiles(self.attn.head_dim as usize) as u32
    }

    /// Blocks per KV head that cover `max_seq` slots.
    pub fn max_blocks(&self) -> u32 {
        self.attn.max_seq / T as u32
    }

    /// Pages of 64 slots per KV head in Quest's metadata layout over
    /// `max_seq` slots (`QuestShape::max_pages` with page 64).
    pub fn meta_pages(&self) -> u32 {
        self.attn.max_seq.div_ceil(T as u32)
    }

    /// Most pool units `n` blocks of every KV head can take: each tile's
    /// non-zeros rounded up to whole units.
    pub fn units_bound(&self, n: u32) -> u64 {
        let per_block_nz = T as u64 * (self.keep_k + self.keep_v) as u64;
        let per_block = (per_block_nz + 7 * self.tiles() as u64).div_ceil(8);
        per_block * n as u64 * self.attn.n_kv_heads as u64
    }
}

/// One layer's compressed blocks.
pub struct Store {
    pub shape: MustafarShape,
    /// `[n_kv_heads][max_blocks][tiles]` vec2<u32>.
    pub bits: wgpu::Buffer,
    /// `[n_kv_heads][max_blocks][tiles]` u32 pool units.
    pub offs: wgpu::Buffer,
    /// The non-zeros, `units` x 16 bytes.
    pub pool: wgpu::Buffer,
    pub units: u32,
    /// (top, overflow) u32: units handed out, and whether a block did not fit.
    pub state: wgpu::Buffer,
    /// With Quest over the blocks: per block the max / min of its pruned
    /// keys per channel, `[n_kv_heads][max_blocks][head_dim]` kv_t (else 16
    /// bytes each, unused).
    pub kmax: wgpu::Buffer,
    pub kmin: wgpu::Buffer,
    pub meta: bool,
}

impl Store {
    /// A store whose pool holds `units` 16-byte units.
    pub fn new(gpu: &Gpu, shape: &MustafarShape, units: u32) -> Store {
        Store::with_meta(gpu, shape, units, false)
    }

    /// A store that also keeps Quest's block metadata when `quest` is set.
    pub fn with_meta(gpu: &Gpu, shape: &MustafarShape, units: u32, quest: bool) -> Store {
        let [kmax, kmin, bits, offs, pool, state] = Store::buffers(shape, units, quest, gpu.caps.f16).map(|(label, bytes)| gpu.buffer(label, bytes));
        Store { kmax, kmin, meta: quest, shape: *shape, bits, offs, pool, units, state }
    }

    /// Bytes `with_meta` allocates for the same arguments (`f16`: the
    /// adapter's KV element is f16).
    pub fn bytes_for(shape: &MustafarShape, units: u32, quest: bool, f16: bool) -> u64 {
        Store::buffers(shape, units, quest, f16).iter().map(|&(_, b)| storage_size(b)).sum()
    }

    /// Bytes this store holds on the device now (its pool grows).
    pub fn allocated(&self) -> u64 {
        [&self.kmax, &self.kmin, &self.bits, &self.offs, &self.pool, &self.state].iter().map(|b| b.size()).sum()
    }

    /// (label, requested bytes) of kmax, kmin, bits, offs, pool and state.
    fn buffers(shape: &MustafarShape, units: u32, quest: bool, f16: bool) -> [(&'static str, u64); 6] {
        let meta = shape.attn.n_kv_heads as u64 * shape.max_blocks() as u64 * shape.tiles() as u64;
        let elem = if f16 { 2 } else { 4 };
        let rows = if quest { shape.attn.n_kv_heads as u64 * shape.meta_pages() as u64 * shape.attn.head_dim as u64 * elem } else { 16 };
        [
            ("mustafar.kmax", rows.max(16)),
            ("mustafar.kmin", rows.max(16)),
            ("mustafar.bits", (meta * 8).max(8)),
            ("mustafar.offs", (meta * 4).max(4)),
            ("mustafar.pool", (units as u64 * 16).max(16)),
            ("mustafar.state", 8),
        ]
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CompressParams {
    src_seq: u32,
    first_slot: u32,
    n_blocks: u32,
    dst_block: u32,
    max_blocks: u32,
    pool_cap: u32,
    keep_k: u32,
    keep_v: u32,
    meta: u32,
    meta_stride: u32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ExpandParams {
    dst_seq: u32,
    dst_slot: u32,
    n_blocks: u32,
    first_block: u32,
    max_blocks: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttnParams {
    n_heads: u32,
    max_blocks: u32,
    part_stride: u32,
    part_base: u32,
    scale: f32,
    list_len: u32,
    _p: [u32; 2],
}

fn compress_spec(head_dim: u32) -> Spec {
    Spec::new(Kernel::MustafarCompress).with("HEAD_DIM", head_dim)
}

fn expand_spec(head_dim: u32) -> Spec {
    Spec::new(Kernel::MustafarExpand).with("HEAD_DIM", head_dim)
}

fn place_spec(head_dim: u32) -> Spec {
    Spec::new(Kernel::KvPlace).with("WG", super::attention::WG).with("HEAD_DIM", head_dim)
}

/// The attention over the tiles, with the softcap of `s` (never a window:
/// [`MustafarShape::new`] refuses one).
fn attn_spec(s: &AttnShape) -> Spec {
    assert_eq!(s.window, 0, "mustafar: a sliding window is not supported (MustafarShape::new refuses it)");
    s.options(Spec::new(Kernel::MustafarAttn).with("HEAD_DIM", s.head_dim).with("GROUP", s.group()))
}

/// Every specialisation for the head dims and groups attention lists (the
/// softcap without the window, which Mustafar refuses).
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for &hd in super::attention::SPEC_HEAD_DIMS {
        v.push(compress_spec(hd));
        v.push(expand_spec(hd));
        v.push(place_spec(hd));
    }
    for s in super::attention::spec_shapes() {
        v.push(attn_spec(&AttnShape { window: 0, ..s }));
    }
    v
}

/// Prune and compress `n_blocks` blocks of 64 slots per KV head, read from
/// `k_src` / `v_src` (`[n_kv_heads][src_seq][head_dim]` kv_t) at slots
/// `first_slot ..`, into blocks `dst_block ..` of `store` (wrapping around
/// its `max_blocks`). Their non-zeros go to the pool from unit
/// `store.state.top` (the caller sets it) up to `pool_end`.
#[allow(clippy::too_many_arguments)]
pub fn compress(
    gpu: &Gpu,
    store: &Store,
    k_src: &wgpu::Buffer,
    v_src: &wgpu::Buffer,
    src_seq: u32,
    first_slot: u32,
    n_blocks: u32,
    dst_block: u32,
    pool_end: u32,
) -> Dispatch {
    let s = &store.shape;
    let params = CompressParams {
        src_seq,
        first_slot,
        n_blocks,
        dst_block,
        max_blocks: s.max_blocks(),
        pool_cap: pool_end.min(store.units),
        keep_k: s.keep_k,
        keep_v: s.keep_v,
        meta: store.meta as u32,
        meta_stride: s.meta_pages(),
        _p: [0; 2],
    };
    let params = gpu.uniform("mustafar_compress.params", bytemuck::bytes_of(&params));
    gpu.dispatch(
        &compress_spec(s.attn.head_dim),
        &[k_src, v_src, &store.bits, &store.offs, &store.pool, &store.state, &params, &store.kmax, &store.kmin],
        [n_blocks.max(1), s.attn.n_kv_heads, 1],
    )
}

/// Write blocks `first_block .. first_block + n_blocks` of `store` as dense
/// rows into `k_dst` / `v_dst` (`[n_kv_heads][dst_seq][head_dim]` kv_t) at
/// slots `dst_slot ..`, skipping blocks at or past `live` (a uniform of 4
/// u32, written per call: the live block count, and the store block of the
/// oldest: live block `i` is store block `(first + i) % max_blocks`).
#[allow(clippy::too_many_arguments)]
pub fn expand(
    gpu: &Gpu,
    store: &Store,
    k_dst: &wgpu::Buffer,
    v_dst: &wgpu::Buffer,
    dst_seq: u32,
    dst_slot: u32,
    first_block: u32,
    n_blocks: u32,
    live: &wgpu::Buffer,
) -> Dispatch {
    let s = &store.shape;
    let params = ExpandParams { dst_seq, dst_slot, n_blocks, first_block, max_blocks: s.max_blocks(), _p: [0; 3] };
    let params = gpu.uniform("mustafar_expand.params", bytemuck::bytes_of(&params));
    gpu.dispatch(&expand_spec(s.attn.head_dim), &[&store.bits, &store.offs, &store.pool, k_dst, v_dst, &params, live], [n_blocks.max(1), s.attn.n_kv_heads, 1])
}

/// Partial decode attention of `q` (row 0, `[n_heads][head_dim]` f32) over the
/// live compressed blocks (`blocks`: a uniform of 4 u32 as `expand`'s `live`): one (m, l, o) state per (head, block) at part index
/// `h * part_stride + part_base + b` of `part_o` / `part_ml`, for `attn_merge`.
/// With `list = Some((buffer, len))`, only the live blocks it names:
/// `len` per KV head (`quest_select`'s page list), partial `b` for entry `b`.
#[allow(clippy::too_many_arguments)]
pub fn attn_partial(
    gpu: &Gpu,
    store: &Store,
    q: &wgpu::Buffer,
    part_o: &wgpu::Buffer,
    part_ml: &wgpu::Buffer,
    part_stride: u32,
    part_base: u32,
    blocks: &wgpu::Buffer,
    list: Option<(&wgpu::Buffer, u32)>,
) -> Dispatch {
    let s = &store.shape;
    let params = AttnParams {
        n_heads: s.attn.n_heads,
        max_blocks: s.max_blocks(),
        part_stride,
        part_base,
        scale: s.attn.scale(),
        list_len: list.map_or(0, |l| l.1),
        _p: [0; 2],
    };
    let params = gpu.uniform("mustafar_attn.params", bytemuck::bytes_of(&params));
    // Without a list the kernel never reads it; any buffer fills the slot.
    let list_buf = list.map_or(&store.state, |l| l.0);
    gpu.dispatch(
        &attn_spec(&s.attn),
        &[q, &store.bits, &store.offs, &store.pool, part_o, part_ml, &params, blocks, list_buf],
        [s.max_blocks().max(1), s.attn.n_kv_heads, 1],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PlaceParams {
    n_kv_heads: u32,
    src_seq: u32,
    dst_seq: u32,
    _p: u32,
}

/// Copy the dense window (`k_src` / `v_src`, `[n_kv_heads][src_seq][head_dim]`,
/// `win.kv_len` valid slots) to slots `step.kv_len - win.kv_len ..` of the
/// dense `k_dst` / `v_dst` (`dst` shape's `max_seq` slots per head): behind
/// the compressed blocks `expand` wrote there. `step`, `win`: the
/// [`Step`](super::Step) uniforms of the whole context and of the window.
#[allow(clippy::too_many_arguments)]
pub fn place(
    gpu: &Gpu,
    src: &AttnShape,
    dst: &AttnShape,
    k_src: &wgpu::Buffer,
    v_src: &wgpu::Buffer,
    k_dst: &wgpu::Buffer,
    v_dst: &wgpu::Buffer,
    step: &wgpu::Buffer,
    win: &wgpu::Buffer,
) -> Dispatch {
    let params = PlaceParams { n_kv_heads: src.n_kv_heads, src_seq: src.max_seq, dst_seq: dst.max_seq, _p: 0 };
    let params = gpu.uniform("kv_place.params", bytemuck::bytes_of(&params));
    let n = src.n_kv_heads * src.max_seq * src.head_dim / 4;
    gpu.dispatch(&place_spec(src.head_dim), &[k_src, v_src, k_dst, v_dst, &params, step, win], crate::kernels::grid_1d(n.div_ceil(super::attention::WG)))
}
