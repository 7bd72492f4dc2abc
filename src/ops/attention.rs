//! Launch builders for the KV-cache append and attention: causal prefill
//! (flash attention) and decode (flash-decoding: per-chunk partials, then a
//! log-sum-exp merge).
//!
//! Shared conventions (see the shader headers for the details):
//! - q, out: f32 `[tokens][n_heads * head_dim]`; new k, v: f32
//!   `[tokens][n_kv_heads * head_dim]`, already rotated.
//! - One K and one V cache buffer per layer, each `[n_kv_heads][max_seq][head_dim]`
//!   of `kv_t` (f16 when the device has SHADER_F16, else f32): [`AttnShape::cache_bytes`].
//! - Positions come from the shared [`Step`](super::Step) uniform: the call's tokens are
//!   stored at slots `kv_len - n_tokens + i`, and query token `i` attends slots
//!   `0 ..= kv_len - n_tokens + i`. Slots are not positions (eviction compacts them).
//! - Query head `h` reads KV head `h / (n_heads / n_kv_heads)`; scores are scaled by
//!   `1 / sqrt(head_dim)`, then softcapped when [`AttnShape::softcap`] is set.
//! - With [`AttnShape::window`] `W > 0`, the query at slot `at` sees only slots
//!   `at - W < j <= at` (a sliding window over slots, which are positions where the
//!   cache is contiguous). Both options are pipeline constants of the attention core
//!   (`shaders/attn_core.wgsl`); (0, 0) builds the kernels without them.
//! - Grids are sized for the largest call (`max_tokens`, `max_seq`) and kernels read
//!   the live sizes from the step uniform, so one bind group per layer serves every call.
//!
//! Work split: a prefill workgroup takes one KV head and 64 (token, query head of the
//! group) rows, so the group's heads share every K/V tile. A decode workgroup takes one
//! (chunk of slots, KV head) pair and all query heads of that KV head, reading the
//! chunk's K and V once for the whole group; the chunk length follows `kv_len` (at most
//! [`DECODE_CHUNK`] slots, at least 64), so short contexts use few workgroups and long
//! ones all `n_split`. Workgroup memory: [`AttnShape::shared_bytes`] (8 KiB prefill,
//! 4.5 KiB decode for the real model; both under 16 KiB up to head_dim 128 and 8 query
//! heads per KV head).
//!
//! CPU adapters run the lanes kernels, which split the slots too: llvmpipe ends every
//! loop of an invocation, silently, once it has run 65535 iterations in all, so no
//! invocation may walk a whole long context ([`LANES_LOOP_BUDGET`]). The lanes prefill
//! writes partial states per split of [`AttnShape::prefill_lanes_chunk`] slots and
//! `attn_merge` combines them, as in decode.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, storage_size};
use crate::kernels::{Dispatch, KIVI, KIVI_CONSTS, KVQ, Kernel, SOFTCAP, Spec, WINDOW, grid_1d};
use bytemuck::{Pod, Zeroable};

/// Invocations per workgroup of every attention kernel (a power of two).
pub const WG: u32 = 64;
/// Prefill stages `PREFILL_TILE / head_dim` keys per shared-memory tile, i.e. K and V
/// tiles of 4 KiB each in f32.
pub const PREFILL_TILE: u32 = 1024;
/// Most slots one decode workgroup handles when a KV head serves at most
/// [`DECODE_WIDE_GROUP`] query heads (fewer above, to bound shared memory).
pub const DECODE_CHUNK: u32 = 256;
pub const DECODE_WIDE_GROUP: u32 = 8;
/// Most cache slots per KV head: attn_merge walks up to `max_seq / 16` decode
/// partials (Quest's the same for its budget) in one invocation's loop.
pub const MAX_SEQ: u32 = 1 << 19;
/// Loop iterations one lanes-kernel invocation may spend on its slots: under
/// llvmpipe's 65535 per invocation (LP_MAX_TGSI_LOOP_ITERATIONS, shared by all
/// loops; past it every loop exits silently), with room for the setup loops.
pub const LANES_LOOP_BUDGET: u32 = 49152;

/// Most tokens one forward call carries (`kv::attend::MAX_CHUNK`; longer
/// prompts go in chunks of this size).
pub const MAX_CALL: u32 = 512;

/// Head dims and query heads per KV head that [`specs`] lists: the real model's
/// (64, 3) plus those the tests exercise.
pub const SPEC_HEAD_DIMS: &[u32] = &[32, 64, 96, 128];
pub const SPEC_GROUPS: &[u32] = &[1, 3, 8];

/// Attention geometry of one layer (the same for every layer of a model), and
/// the attention core's options. `Eq` and `Hash` compare `softcap` by its bits.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttnShape {
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: u32,
    /// Dims per head (a multiple of 4).
    pub head_dim: u32,
    /// Cache slots per KV head.
    pub max_seq: u32,
    /// Logit softcap `c` (Gemma 2): a scaled score `s` becomes `c * tanh(s / c)`.
    /// 0: none.
    pub softcap: f32,
    /// Sliding window `W` (Mistral, Gemma 3): a query sees the `W` most recent
    /// slots, its own included. 0: none (causal over every slot).
    pub window: u32,
    /// How the cache holds K/V rows: 0 as `kv_t` (dense), or 8 / 4 bits per
    /// element in per-row blocks of 32 with an f16 scale each.
    pub kvq: u32,
    /// With `kvq`: K and V rows are rotated by an orthonormal Walsh-Hadamard
    /// matrix over groups of this many elements before they are quantized
    /// (0: not rotated); the queries and the attention output are rotated
    /// by the same matrix ([`kv_rotate`]), so the scores and the output are
    /// unchanged while outlier channels are spread over their group.
    pub kvrot: u32,
    /// KIVI (`kivi.rs` in `reference`, `shaders/kivi_format.wgsl`): 2 or 4
    /// bits (0: not KIVI); keys per channel over groups of `kivi_group`
    /// slots, values per token over groups of `min(kivi_group, head_dim)`
    /// channels; slots past the last multiple of `kivi_res` stay f16, and
    /// so do the first `kivi_sink` (a multiple of `kivi_group`).
    pub kivi: u32,
    pub kivi_group: u32,
    pub kivi_res: u32,
    pub kivi_sink: u32,
}

impl PartialEq for AttnShape {
    fn eq(&self, o: &AttnShape) -> bool {
        self.key() == o.key()
    }
}

impl Eq for AttnShape {}

impl std::hash::Hash for AttnShape {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.key().hash(h)
    }
}

impl AttnShape {
    fn key(&self) -> [u32; 12] {
        let (a, b, c, d) = (self.n_heads, self.n_kv_heads, self.head_dim, self.max_seq);
        let kivi = [self.kivi, self.kivi_group, self.kivi_res, self.kivi_sink];
        [a, b, c, d, self.softcap.to_bits(), self.window, self.kvq, self.kvrot, kivi[0], kivi[1], kivi[2], kivi[3]]
    }

    /// `spec` with the attention core's options of this shape as prelude
    /// constants; only those that are on, so the default shape's specs (and
    /// kernels) are those without options.
    pub fn options(&self, spec: Spec) -> Spec {
        let spec = if self.softcap > 0.0 { spec.with_f32(SOFTCAP, self.softcap) } else { spec };
        let spec = if self.window > 0 { spec.with(WINDOW, self.window) } else { spec };
        self.cache_format(spec)
    }

    /// `spec` reading this shape's cache: with `KVQ` where rows are quantized
    /// (the kernel then reads them through `kv_k` / `kv_v`, `kernels.rs`).
    pub fn cache_format(&self, spec: Spec) -> Spec {
        if self.kivi > 0 {
            let values = [self.kivi_group, self.kivi_gv(), self.kivi_res, self.kivi_sink, self.max_seq, self.kivi_stage(), self.n_kv_heads];
            return KIVI_CONSTS.iter().zip(values).fold(spec.with(KIVI, self.kivi), |s, (n, v)| s.with(n, v));
        }
        if self.kvq > 0 { spec.with(KVQ, self.kvq) } else { spec }
    }

    /// The dense shape a compaction gathers rows in: this one without KIVI
    /// (`evict::kivi_compaction` gathers its rows as `kv_t`).
    pub fn compacted(&self) -> AttnShape {
        AttnShape { kivi: 0, kivi_group: 0, kivi_res: 0, kivi_sink: 0, ..*self }
    }

    /// KIVI's value group: `kivi_group` channels, at most the head.
    pub fn kivi_gv(&self) -> u32 {
        self.kivi_group.min(self.head_dim)
    }

    /// KIVI's staging rows per KV head: the sink, the residual and the most
    /// tokens of a call, at most every slot.
    pub fn kivi_stage(&self) -> u32 {
        (self.kivi_sink + self.kivi_res + MAX_CALL).min(self.max_seq)
    }

    /// KIVI: how many of the first `len` slots are quantized: those below
    /// the boundary (the last multiple of the residual) past the sink.
    pub fn kivi_quantized(&self, len: usize) -> usize {
        let r = self.kivi_res.max(1) as usize;
        (len / r * r).saturating_sub(self.kivi_sink as usize)
    }

    /// KIVI: the slots that may be quantized (whole multiples of the residual).
    pub fn kivi_nq(&self) -> u32 {
        self.max_seq / self.kivi_res.max(1) * self.kivi_res
    }

    /// KIVI: bytes one quantized slot of one KV head takes, keys and values
    /// (codes, and the keys' per-channel words shared by their group).
    pub fn kivi_slot_bytes(&self) -> (f64, f64) {
        let (hd, cw) = (self.head_dim as f64, (self.head_dim * self.kivi / 32) as f64);
        (4.0 * (cw + hd / self.kivi_group as f64), 4.0 * (cw + hd / self.kivi_gv() as f64))
    }

    /// Bytes of one layer's K and V cache buffers.
    pub fn kv_cache_bytes(&self, f16: bool) -> [u64; 2] {
        if self.kivi == 0 {
            return [self.cache_bytes(f16); 2];
        }
        let (heads, hd, nq) = (self.n_kv_heads as u64, self.head_dim as u64, self.kivi_nq() as u64);
        let cw = hd * self.kivi as u64 / 32;
        let stage = heads * self.kivi_stage() as u64 * hd / 2;
        let k = heads * (nq / self.kivi_group as u64) * (self.kivi_group as u64 * cw + hd);
        let v = heads * nq * (cw + hd / self.kivi_gv() as u64);
        [4 * (k + stage), 4 * (v + stage)]
    }

    /// Bytes one layer holds (K and V, every KV head) when it caches `len`
    /// tokens: KIVI's quantized slots plus its f16 ones, else `len` rows.
    pub fn held_bytes(&self, len: usize, f16: bool) -> u64 {
        let heads = self.n_kv_heads as u64;
        if self.kivi == 0 {
            return 2 * heads * len as u64 * self.row_bytes(f16);
        }
        let q = self.kivi_quantized(len);
        let (k, v) = self.kivi_slot_bytes();
        heads * (q as f64 * (k + v)).round() as u64 + 2 * heads * (len - q) as u64 * 2 * self.head_dim as u64
    }

    /// Words (u32) one quantized row of `head_dim` takes: the quants, then
    /// one word per two blocks' f16 scales. 0 for a dense cache.
    pub fn quant_row_words(&self) -> u32 {
        if self.kvq == 0 { 0 } else { self.head_dim * self.kvq / 32 + self.head_dim.div_ceil(64) }
    }

    /// Bytes of one cached K (or V) row of one KV head.
    pub fn row_bytes(&self, f16: bool) -> u64 {
        match self.kvq {
            0 => self.head_dim as u64 * if f16 { 2 } else { 4 },
            _ => 4 * self.quant_row_words() as u64,
        }
    }

    /// The cache buffers' units per row: `kv4_t` vectors when dense, u32
    /// words when quantized (what `kv_compact` moves).
    pub fn row_units(&self) -> u32 {
        if self.kvq == 0 { self.head_dim / 4 } else { self.quant_row_words() }
    }

    /// Query heads per KV head.
    pub fn group(&self) -> u32 {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// Softmax scale `1 / sqrt(head_dim)`.
    pub fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }

    /// Bytes of one layer's K (or V) cache buffer.
    pub fn cache_bytes(&self, f16: bool) -> u64 {
        self.n_kv_heads as u64 * self.max_seq as u64 * self.row_bytes(f16)
    }

    /// Keys per prefill tile.
    pub fn prefill_tile(&self) -> u32 {
        (PREFILL_TILE / self.head_dim.max(1)).max(1)
    }

    /// Most slots per decode chunk (a multiple of [`WG`]).
    pub fn decode_chunk(&self) -> u32 {
        if self.group() <= DECODE_WIDE_GROUP { DECODE_CHUNK } else { WG }
    }

    /// Decode chunks (workgroups per KV head) needed to cover `max_seq` slots.
    pub fn n_split(&self) -> u32 {
        self.max_seq.div_ceil(self.decode_chunk()).max(1)
    }

    /// Partial results per `attn_decode` chunk and query head: each workgroup sums
    /// p·V in `WG / (head_dim / 4)` interleaved key subsets, merged by attn_merge.
    pub fn decode_parts(&self) -> u32 {
        (WG / (self.head_dim / 4).max(1)).max(1)
    }

    /// Slots per iteration of `attn_prefill_lanes`'s key loop: each lane's
    /// query and accumulator vectors (more than fit in registers) are loaded
    /// once per block, and the running max rescales once per block. On
    /// lavapipe, 512-token prefill, ms per call against one slot at a time:
    /// SmolLM2 (group 3) 77 -> 58 at 4, 51 at 8, 50 at 16; Qwen2.5 0.5B
    /// (group 7) 139 -> 64 at 4, 53 at 8, 143 at 16; Gemma 3 (group 4, head_dim
    /// 256) 161 -> 95 at 4, 78 at 8. The block's scores (group x KB vectors)
    /// leave registers past about 64 vectors.
    pub fn prefill_lanes_kb(&self) -> u32 {
        if self.group() <= 8 { 8 } else { 4 }
    }

    /// Loop iterations an `attn_prefill_lanes` lane runs per block of
    /// [`Self::prefill_lanes_kb`] slots if nothing is unrolled: the block's own, the
    /// K and the V walks (`d4` each, holding a load loop of `KB` and a head loop
    /// of `group` with a block loop of `KB` inside) and the softmax (`group`
    /// heads, two block loops each).
    pub fn prefill_lanes_block_iterations(&self) -> u32 {
        let (d4, g, kb) = (self.head_dim / 4, self.group(), self.prefill_lanes_kb());
        1 + 2 * d4 * (1 + kb + g + g * kb) + g * (1 + 2 * kb)
    }

    /// Most slots one `attn_prefill_lanes` split walks: llvmpipe ends an
    /// invocation's loops after 65535 iterations in total.
    pub fn prefill_lanes_chunk(&self) -> u32 {
        let blocks = LANES_LOOP_BUDGET / self.prefill_lanes_block_iterations().max(1);
        let slots = (blocks * self.prefill_lanes_kb()).clamp(DECODE_LANES, 1024);
        1 << (31 - slots.leading_zeros()) // the power of two at or below
    }

    /// Splits of the slots per `attn_prefill_lanes` call (covering `max_seq`).
    pub fn prefill_lanes_split(&self) -> u32 {
        self.max_seq.div_ceil(self.prefill_lanes_chunk()).max(1)
    }

    /// Workgroup memory of (prefill, decode) in bytes.
    pub fn shared_bytes(&self) -> (u32, u32) {
        let prefill = 2 * self.prefill_tile() * self.head_dim * 4;
        let decode = 4 * self.group() * (self.head_dim + self.decode_chunk() + WG);
        (prefill, decode)
    }

    /// Whether the kernels can run this shape on `gpu`; call once when a model is
    /// loaded (the builders assume a checked shape).
    pub fn check(&self, gpu: &Gpu) -> Result<()> {
        let AttnShape { n_heads, n_kv_heads, head_dim, max_seq, softcap, .. } = *self;
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::msg(format!("attention: {n_heads} query heads cannot share {n_kv_heads} KV heads evenly")));
        }
        if head_dim == 0 || head_dim % 4 != 0 || head_dim > 4 * WG {
            return Err(Error::msg(format!("attention: head_dim {head_dim} unsupported (needs a multiple of 4, at most {})", 4 * WG)));
        }
        if max_seq == 0 {
            return Err(Error::msg("attention: context length 0"));
        }
        if !matches!(self.kvq, 0 | 4 | 8) || (self.kvq > 0 && !head_dim.is_multiple_of(32)) {
            return Err(Error::msg(format!(
                "attention: a {}-bit KV cache needs head_dim a multiple of 32 (blocks of 32); this model's is {head_dim}",
                self.kvq
            )));
        }
        if !(softcap.is_finite() && softcap >= 0.0) {
            return Err(Error::msg(format!("attention: softcap {softcap} unsupported (needs a finite value >= 0; 0 = none)")));
        }
        if max_seq > MAX_SEQ {
            return Err(Error::msg(format!("attention: context {max_seq} is above the {MAX_SEQ} slots the kernels support (lower --ctx)")));
        }
        let (prefill, decode) = self.shared_bytes();
        let limit = gpu.caps.max_workgroup_storage;
        if prefill.max(decode) > limit {
            return Err(Error::msg(format!(
                "attention: {n_heads} heads / {n_kv_heads} KV heads of dim {head_dim} need {} bytes of workgroup memory; the adapter has {limit}",
                prefill.max(decode)
            )));
        }
        if self.kivi > 0 {
            let (g, r, sink) = (self.kivi_group, self.kivi_res, self.kivi_sink);
            let groups = g > 0 && g.is_multiple_of(32) && r > 0 && r.is_multiple_of(g) && sink.is_multiple_of(g);
            if !matches!(self.kivi, 2 | 4) || !head_dim.is_multiple_of(32) || !groups {
                return Err(Error::msg(format!(
                    "attention: a {}-bit KIVI cache with group {g}, residual {r} and sink {sink} needs head_dim a multiple of 32 (this model's is {head_dim}), group a multiple of 32, residual and sink multiples of group",
                    self.kivi
                )));
            }
        }
        let bytes = self.kv_cache_bytes(gpu.caps.f16)[1];
        if bytes > gpu.caps.max_storage_binding {
            return Err(Error::msg(format!(
                "attention: a {max_seq}-slot KV cache needs {bytes} bytes per layer and tensor; the adapter binds at most {} (lower --ctx)",
                gpu.caps.max_storage_binding
            )));
        }
        Ok(())
    }
}

/// The append: a conversion per `kv4_t`, or (quantized) per pair of blocks.
fn append_spec(s: &AttnShape) -> Spec {
    if s.kivi > 0 {
        return s.cache_format(Spec::new(Kernel::KiviAppend).with("WG", WG).with("HEAD_DIM", s.head_dim));
    }
    match s.kvq {
        0 => Spec::new(Kernel::KvAppend).with("WG", WG).with("HEAD_DIM", s.head_dim),
        _ => s.cache_format(Spec::new(Kernel::KvQuant).with("WG", WG).with("HEAD_DIM", s.head_dim)).with("KVROT", s.kvrot),
    }
}

fn rotate_spec(group: u32) -> Spec {
    Spec::new(Kernel::KvRotate).with("WG", WG).with("KVROT", group)
}

/// The Walsh-Hadamard group a quantized cache of `head_dim` rotates over:
/// 64 where it divides the head (as llama.cpp's V), else 32.
pub fn rotation_group(head_dim: u32) -> u32 {
    if head_dim.is_multiple_of(64) { 64 } else { 32 }
}

fn prefill_spec(s: &AttnShape) -> Spec {
    s.options(Spec::new(Kernel::AttnPrefill).with("WG", WG).with("HEAD_DIM", s.head_dim).with("BK", s.prefill_tile()))
}

fn decode_spec(s: &AttnShape) -> Spec {
    s.options(Spec::new(Kernel::AttnDecode).with("WG", WG).with("HEAD_DIM", s.head_dim).with("GROUP", s.group()).with("CHUNK", s.decode_chunk()))
}

fn prefill_lanes_spec(s: &AttnShape) -> Spec {
    let spec = Spec::new(Kernel::AttnPrefillLanes).with("LANES", DECODE_LANES).with("HEAD_DIM", s.head_dim).with("GROUP", s.group());
    s.options(spec.with("CHUNK", s.prefill_lanes_chunk()).with("KB", s.prefill_lanes_kb()))
}

fn decode_lanes_spec(s: &AttnShape) -> Spec {
    let spec = Spec::new(Kernel::AttnDecodeLanes).with("LANES", DECODE_LANES).with("HEAD_DIM", s.head_dim).with("GROUP", s.group());
    s.options(spec.with("CHUNK", s.decode_chunk()))
}

fn merge_spec(head_dim: u32) -> Spec {
    Spec::new(Kernel::AttnMerge).with("WG", WG).with("HEAD_DIM", head_dim)
}

/// The shapes whose kernels [`specs`] (and Quest's, Mustafar's and eviction's
/// lists) hold: every [`SPEC_HEAD_DIMS`] x [`SPEC_GROUPS`] without options, then
/// the real model's head dim and group with a softcap and a window.
pub fn spec_shapes() -> Vec<AttnShape> {
    let mut v = Vec::new();
    for &head_dim in SPEC_HEAD_DIMS {
        for &g in SPEC_GROUPS {
            v.push(AttnShape { n_heads: g, n_kv_heads: 1, head_dim, max_seq: 1, ..Default::default() });
        }
    }
    v.push(AttnShape { n_heads: 3, n_kv_heads: 1, head_dim: 64, max_seq: 1, softcap: 50.0, window: 4096, ..Default::default() });
    v
}

/// The quantized caches' shapes [`specs`] (and eviction's and Quest's lists)
/// hold: the real models' head dims and groups, and the tests' one-block row.
pub fn quant_spec_shapes() -> Vec<AttnShape> {
    let mut v = Vec::new();
    for kvq in [8, 4] {
        for (head_dim, g) in [(64, 3), (64, 1), (32, 1), (128, 3)] {
            v.push(AttnShape { n_heads: g, n_kv_heads: 1, head_dim, max_seq: 1, kvq, ..Default::default() });
            v.push(AttnShape { n_heads: g, n_kv_heads: 1, head_dim, max_seq: 1, kvq, kvrot: rotation_group(head_dim), ..Default::default() });
        }
    }
    for (kivi, kivi_group, kivi_sink, head_dim) in [(2, 32, 32, 64), (4, 32, 0, 64), (2, 128, 128, 64), (2, 32, 32, 128)] {
        let kivi_res = 128;
        v.push(AttnShape { n_heads: 3, n_kv_heads: 1, head_dim, max_seq: 256, kivi, kivi_group, kivi_res, kivi_sink, ..Default::default() });
    }
    v
}

/// Every specialisation these builders create for [`spec_shapes`].
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for s in spec_shapes().into_iter().chain(quant_spec_shapes()) {
        v.extend([append_spec(&s), prefill_spec(&s), merge_spec(s.head_dim)]);
        v.extend([decode_spec(&s), decode_lanes_spec(&s), prefill_lanes_spec(&s)]);
        if s.kivi > 0 {
            v.push(pack_spec(&s));
        }
    }
    v.extend([rotate_spec(32), rotate_spec(64)]);
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RotateParams {
    row: u32,
    max_tokens: u32,
    _p: [u32; 2],
}

/// Rotate `buf` (f32 `[step.n_tokens][row]`, `row` a multiple of `group`) in
/// place by the orthonormal Walsh-Hadamard matrix of size `group` (32 or
/// 64), group by group: a quantized cache's queries before attention, and
/// its output after (the matrix is its own inverse). `max_tokens` sizes the
/// grid.
pub fn kv_rotate(gpu: &Gpu, buf: &wgpu::Buffer, row: u32, group: u32, step: &wgpu::Buffer, max_tokens: u32) -> Dispatch {
    let params = RotateParams { row, max_tokens, _p: [0; 2] };
    let params = gpu.uniform("kv_rotate.params", bytemuck::bytes_of(&params));
    let n = max_tokens * row / group;
    gpu.dispatch(&rotate_spec(group), &[buf, &params, step], grid_1d(n.div_ceil(WG)))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AppendParams {
    n_kv_heads: u32,
    max_seq: u32,
    max_tokens: u32,
    _p: u32,
}

/// Store the call's new K and V rows (f32 `[step.n_tokens][n_kv_heads * head_dim]`,
/// post-RoPE) into one layer's caches at slots `step.kv_len - step.n_tokens + i`,
/// converting to the cache type, or quantizing them (`shape.kvq`, `kv_quant.wgsl`). `max_tokens`: the most tokens any call will pass
/// (the grid's size); `step`: the [`Step`](super::Step) uniform.
#[allow(clippy::too_many_arguments)]
pub fn kv_append(
    gpu: &Gpu,
    shape: &AttnShape,
    k_new: &wgpu::Buffer,
    v_new: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    step: &wgpu::Buffer,
    max_tokens: u32,
) -> Dispatch {
    let params = AppendParams { n_kv_heads: shape.n_kv_heads, max_seq: shape.max_seq, max_tokens, _p: 0 };
    let params = gpu.uniform("kv_append.params", bytemuck::bytes_of(&params));
    // Dense: one invocation per vec4; quantized: per pair of 32-blocks (one scale word).
    let per_row = if shape.kvq == 0 || shape.kivi > 0 { shape.head_dim / 4 } else { shape.head_dim.div_ceil(64) };
    let n = max_tokens * shape.n_kv_heads * per_row;
    gpu.dispatch(&append_spec(shape), &[k_new, v_new, k_cache, v_cache, &params, step], grid_1d(n.div_ceil(WG)))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PackParams {
    n_kv_heads: u32,
    max_groups: u32,
    max_slots: u32,
    _p: u32,
}

/// KIVI (`shape.kivi`): after a call of at most `max_tokens` tokens has
/// attended, quantize the staged slots its boundary passes
/// (`kivi_pack.wgsl`).
pub fn kivi_pack(gpu: &Gpu, shape: &AttnShape, k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer, step: &wgpu::Buffer, max_tokens: u32) -> Dispatch {
    let r = shape.kivi_res;
    let max_slots = (max_tokens.div_ceil(r) * r).min(shape.kivi_nq());
    let max_groups = max_slots / shape.kivi_group;
    let params = PackParams { n_kv_heads: shape.n_kv_heads, max_groups, max_slots, _p: 0 };
    let params = gpu.uniform("kivi_pack.params", bytemuck::bytes_of(&params));
    let keys = shape.n_kv_heads * max_groups * shape.head_dim * shape.kivi / 32;
    let values = shape.n_kv_heads * max_slots * (shape.head_dim / shape.kivi_gv());
    gpu.dispatch(&pack_spec(shape), &[k_cache, v_cache, &params, step], grid_1d((keys + values).div_ceil(WG).max(1)))
}

fn pack_spec(s: &AttnShape) -> Spec {
    s.cache_format(Spec::new(Kernel::KiviPack).with("WG", WG).with("HEAD_DIM", s.head_dim))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PrefillParams {
    n_heads: u32,
    n_kv_heads: u32,
    max_seq: u32,
    group: u32,
    scale: f32,
    max_tokens: u32,
    n_split: u32,
    _p: u32,
}

/// Scratch of `attn_prefill_lanes` (partial states per split, merged by
/// `attn_merge`) for one shape and chunk size; one serves every layer. The
/// tiled kernel needs none.
pub struct PrefillScratch {
    pub shape: AttnShape,
    pub kind: AttnKind,
    pub max_tokens: u32,
    /// Splits of the slots (`AttnShape::prefill_lanes_split`), 0 for `Shared`.
    pub n_split: u32,
    /// Unnormalised partial outputs `[max_tokens][n_heads][n_split][head_dim]` f32.
    pub part_o: Option<wgpu::Buffer>,
    /// Partial (max, sum of exp) `[max_tokens][n_heads][n_split][2]` f32.
    pub part_ml: Option<wgpu::Buffer>,
    /// Log-sum-exp per (token, query head) of the last prefill, `[max_tokens][n_heads]` f32.
    pub lse: wgpu::Buffer,
}

impl PrefillScratch {
    /// Bytes of the `(part_o, part_ml)` partial states a `kind` prefill of
    /// `max_tokens` tokens keeps for `shape` (none for `Shared`).
    pub fn partial_bytes(shape: &AttnShape, kind: AttnKind, max_tokens: u32) -> (u64, u64) {
        if kind != AttnKind::Lanes {
            return (0, 0);
        }
        let parts = max_tokens as u64 * shape.n_heads as u64 * shape.prefill_lanes_split() as u64;
        (parts * shape.head_dim as u64 * 4, parts * 8)
    }

    /// Bytes the scratch of a `kind` prefill of `max_tokens` tokens over
    /// `shape` allocates: the log-sum-exp and, for `Lanes`, the partials.
    pub fn bytes_for(shape: &AttnShape, kind: AttnKind, max_tokens: u32) -> u64 {
        let (o, ml) = PrefillScratch::partial_bytes(shape, kind, max_tokens);
        let partials = if kind == AttnKind::Lanes { storage_size(o) + storage_size(ml) } else { 0 };
        storage_size(PrefillScratch::lse_bytes(shape, max_tokens)) + partials
    }

    fn lse_bytes(shape: &AttnShape, max_tokens: u32) -> u64 {
        max_tokens as u64 * shape.n_heads as u64 * 4
    }

    /// Most tokens, up to `want`, whose `kind` partials over `shape` fit a
    /// binding of `limit` bytes: `want`, else the largest power of two that
    /// fits (at least 1). Long contexts on CPU adapters prefill in shorter
    /// chunks rather than fail.
    pub fn tokens_within(shape: &AttnShape, kind: AttnKind, want: u32, limit: u64) -> u32 {
        let fits = |t: u32| PrefillScratch::partial_bytes(shape, kind, t).0 <= limit;
        if fits(want) {
            return want;
        }
        let mut t = 1u32 << (31 - want.max(1).leading_zeros());
        while t > 1 && !fits(t) {
            t /= 2;
        }
        t
    }

    /// Scratch for the adapter's prefill kernel.
    pub fn new(gpu: &Gpu, shape: &AttnShape, max_tokens: u32) -> Result<PrefillScratch> {
        PrefillScratch::with_kind(gpu, shape, AttnKind::for_gpu(gpu), max_tokens)
    }

    /// Fails when the partial outputs would not fit one storage binding.
    pub fn with_kind(gpu: &Gpu, shape: &AttnShape, kind: AttnKind, max_tokens: u32) -> Result<PrefillScratch> {
        let lse = gpu.buffer("attn_prefill.lse", PrefillScratch::lse_bytes(shape, max_tokens));
        let mut s = PrefillScratch { shape: *shape, kind, max_tokens, n_split: 0, part_o: None, part_ml: None, lse };
        if kind == AttnKind::Lanes {
            s.n_split = shape.prefill_lanes_split();
            let (bytes, ml_bytes) = PrefillScratch::partial_bytes(shape, kind, max_tokens);
            if bytes > gpu.caps.max_storage_binding {
                return Err(Error::msg(format!(
                    "attention: prefill partials for {max_tokens} tokens over {} slots need {bytes} bytes; the adapter binds at most {} (lower --ctx)",
                    shape.max_seq, gpu.caps.max_storage_binding
                )));
            }
            s.part_o = Some(gpu.buffer("attn_prefill.part_o", bytes));
            s.part_ml = Some(gpu.buffer("attn_prefill.part_ml", ml_bytes));
        }
        Ok(s)
    }
}

/// Causal attention of the call's `step.n_tokens` query rows of `q` over the
/// layer's cache (after this call's [`kv_append`]), written to the same rows of
/// `out`; rows past `step.n_tokens` are left untouched. The scratch's
/// `max_tokens` sizes the grid; its kind picks the kernel: the tiled
/// `attn_prefill` (one dispatch) or `attn_prefill_lanes` + `attn_merge` (two).
#[allow(clippy::too_many_arguments)]
pub fn attn_prefill(
    gpu: &Gpu,
    shape: &AttnShape,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    scratch: &PrefillScratch,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Vec<Dispatch> {
    debug_assert_eq!(scratch.shape, *shape, "prefill scratch built for another shape");
    let group = shape.group();
    let max_tokens = scratch.max_tokens;
    let params = PrefillParams {
        n_heads: shape.n_heads,
        n_kv_heads: shape.n_kv_heads,
        max_seq: shape.max_seq,
        group,
        scale: shape.scale(),
        max_tokens,
        n_split: scratch.n_split,
        _p: 0,
    };
    let params = gpu.uniform("attn_prefill.params", bytemuck::bytes_of(&params));
    let lse = &scratch.lse;
    match (&scratch.part_o, &scratch.part_ml) {
        (Some(part_o), Some(part_ml)) => {
            let spec = prefill_lanes_spec(shape);
            let grid = [max_tokens.div_ceil(DECODE_LANES), shape.n_kv_heads, scratch.n_split];
            let partial = gpu.dispatch(&spec, &[q, k_cache, v_cache, part_o, part_ml, &params, step], grid);
            let rows = max_tokens * shape.n_heads;
            let merge = attn_merge(gpu, shape, rows, part_o, part_ml, scratch.n_split, out, lse, step);
            vec![partial, merge]
        }
        _ => {
            let spec = prefill_spec(shape);
            let grid = [(max_tokens * group).div_ceil(WG), shape.n_kv_heads, 1];
            vec![gpu.dispatch(&spec, &[q, k_cache, v_cache, out, lse, &params, step], grid)]
        }
    }
}

/// Which attention kernels run: `attn_prefill` / `attn_decode` (tiles and
/// phases in workgroup memory, for GPUs) or `attn_prefill_lanes` /
/// `attn_decode_lanes` (one online softmax per lane and head, no barriers,
/// for CPU adapters). Both decode kernels feed `attn_merge` the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnKind {
    Shared,
    Lanes,
}

impl AttnKind {
    pub fn for_gpu(gpu: &Gpu) -> AttnKind {
        AttnKind::for_caps(&gpu.caps)
    }

    /// The kernels an adapter with `caps` gets ([`super::tuning::Tuning`]).
    pub fn for_caps(caps: &crate::gpu::Caps) -> AttnKind {
        super::tuning::Tuning::for_caps(caps).attn
    }
}

/// Invocations per `attn_decode_lanes` / `attn_prefill_lanes` workgroup: one SIMD vector on lavapipe.
pub const DECODE_LANES: u32 = 8;

/// Flash-decoding scratch for one [`AttnShape`], sized for its `max_seq`. One
/// can serve every layer: the layers' decode dispatches run one after another.
pub struct DecodeScratch {
    /// The shape it was sized for (decode builders must use the same).
    pub shape: AttnShape,
    pub kind: AttnKind,
    /// Unnormalised partial outputs `[n_heads][n_split][parts][head_dim]` f32.
    pub part_o: wgpu::Buffer,
    /// Partial (max, sum of exp) `[n_heads][n_split][parts][2]` f32.
    pub part_ml: wgpu::Buffer,
    /// Decode chunks (workgroups per KV head).
    pub n_split: u32,
    /// Partial states per chunk and query head.
    pub parts: u32,
    /// Partial states per query head in the buffers: `n_split * parts`, plus
    /// the extra parts another kernel (Mustafar's blocks) writes after them.
    pub stride: u32,
}

impl DecodeScratch {
    /// Scratch for the adapter's decode kernel.
    pub fn new(gpu: &Gpu, shape: &AttnShape) -> DecodeScratch {
        DecodeScratch::with_kind(gpu, shape, AttnKind::for_gpu(gpu))
    }

    pub fn with_kind(gpu: &Gpu, shape: &AttnShape, kind: AttnKind) -> DecodeScratch {
        DecodeScratch::with_extra(gpu, shape, kind, 0)
    }

    /// Scratch with `extra` more partial states per query head, at
    /// `h * stride + n_split * parts + i`, that `attn_merge` combines with the
    /// decode chunks' (every one must be written each step).
    pub fn with_extra(gpu: &Gpu, shape: &AttnShape, kind: AttnKind, extra: u32) -> DecodeScratch {
        let (n_split, parts, stride) = DecodeScratch::layout(shape, kind, extra);
        let [(o_label, o), (ml_label, ml)] = DecodeScratch::buffers(shape, kind, extra);
        DecodeScratch { shape: *shape, kind, part_o: gpu.buffer(o_label, o), part_ml: gpu.buffer(ml_label, ml), n_split, parts, stride }
    }

    /// Bytes `with_extra` allocates for the same arguments.
    pub fn bytes_for(shape: &AttnShape, kind: AttnKind, extra: u32) -> u64 {
        DecodeScratch::buffers(shape, kind, extra).iter().map(|&(_, b)| storage_size(b)).sum()
    }

    /// `(n_split, parts, stride)`.
    fn layout(shape: &AttnShape, kind: AttnKind, extra: u32) -> (u32, u32, u32) {
        let n_split = shape.n_split();
        let parts = match kind {
            AttnKind::Shared => shape.decode_parts(),
            AttnKind::Lanes => 1, // the lanes of a chunk combine in the kernel
        };
        (n_split, parts, n_split * parts + extra)
    }

    /// The buffers `with_extra` allocates: (label, requested bytes).
    fn buffers(shape: &AttnShape, kind: AttnKind, extra: u32) -> [(&'static str, u64); 2] {
        let total = shape.n_heads as u64 * DecodeScratch::layout(shape, kind, extra).2 as u64;
        [("attn_decode.part_o", total * shape.head_dim as u64 * 4), ("attn_decode.part_ml", total * 8)]
    }
}

/// The two dispatches of one decode attention; record `partial` then `merge`.
pub struct DecodeAttn {
    pub partial: Dispatch,
    pub merge: Dispatch,
}

impl DecodeAttn {
    /// Both dispatches in recording order.
    pub fn dispatches(&self) -> [&Dispatch; 2] {
        [&self.partial, &self.merge]
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DecodeParams {
    n_heads: u32,
    max_seq: u32,
    n_split: u32,
    scale: f32,
    part_stride: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MergeParams {
    n_heads: u32,
    n_parts: u32,
    max_rows: u32,
    _p: u32,
}

/// Attention of one query token (row 0 of `q`; `step.n_tokens` must be 1) over all
/// `step.kv_len` slots of the layer's cache (after this step's [`kv_append`]).
/// Writes row 0 of `out` and, per query head, `lse[h]` = ln Σ_j exp(scale q_h·K_j):
/// the probability of slot j is `exp(scale q_h·K_j - lse[h])`. `lse` holds
/// `n_heads` f32. The grid covers `max_seq`; chunks past `kv_len` are empty.
#[allow(clippy::too_many_arguments)]
pub fn attn_decode(
    gpu: &Gpu,
    shape: &AttnShape,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    scratch: &DecodeScratch,
    out: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> DecodeAttn {
    debug_assert_eq!(scratch.shape, *shape, "decode scratch built for another shape");
    let n_split = scratch.n_split;
    let params = DecodeParams { n_heads: shape.n_heads, max_seq: shape.max_seq, n_split, scale: shape.scale(), part_stride: scratch.stride, _p: [0; 3] };
    let params = gpu.uniform("attn_decode.params", bytemuck::bytes_of(&params));
    let spec = match scratch.kind {
        AttnKind::Shared => decode_spec(shape),
        AttnKind::Lanes => decode_lanes_spec(shape),
    };
    let partial = gpu.dispatch(&spec, &[q, k_cache, v_cache, &scratch.part_o, &scratch.part_ml, &params, step], [n_split, shape.n_kv_heads, 1]);
    let merge = attn_merge(gpu, shape, shape.n_heads, &scratch.part_o, &scratch.part_ml, scratch.stride, out, lse, step);
    DecodeAttn { partial, merge }
}

/// The second half of flash-decoding: merge `n_parts` partial softmax states
/// per row (`part_o`, `part_ml`; a row is a (token, query head) pair, token-major)
/// into `out` and `lse`, for the call's first `step.n_tokens * n_heads` rows (at
/// most `max_rows`, which sizes the grid). Decode passes `max_rows = n_heads`.
#[allow(clippy::too_many_arguments)]
pub fn attn_merge(
    gpu: &Gpu,
    shape: &AttnShape,
    max_rows: u32,
    part_o: &wgpu::Buffer,
    part_ml: &wgpu::Buffer,
    n_parts: u32,
    out: &wgpu::Buffer,
    lse: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let params = MergeParams { n_heads: shape.n_heads, n_parts, max_rows, _p: 0 };
    let params = gpu.uniform("attn_merge.params", bytemuck::bytes_of(&params));
    gpu.dispatch(&merge_spec(shape.head_dim), &[part_o, part_ml, out, lse, &params, step], [(max_rows * shape.head_dim / 4).div_ceil(WG), 1, 1])
}
