//! Launch builders for the weight-reading kernels: matrix-vector product
//! (decode), tiled matrix-matrix product (prefill) and embedding lookup.
//!
//! Weights are the raw GGUF bytes of a row-major `[rows, cols]` matrix in
//! one storage buffer, decoded inside the kernels by the weight type's
//! fragment (`shaders/quant/<type>.wgsl`). Shapes must pass
//! `quant::check_shape` (loaders call it and return the error; the builders
//! here assert it).
//!
//! Token counts: `matmul` and `embed` take the shared `ops::Step` uniform
//! as their last binding and process `min(step.n_tokens, n_tokens)` tokens,
//! where `n_tokens` is what the buffers hold. Their bind groups therefore
//! never change; a call with fewer tokens only writes the Step buffer and
//! may re-record with `matmul_groups` / `embed_groups` to skip idle
//! workgroups (those exit at once anyway).

#![allow(clippy::too_many_arguments)]

use crate::gpu::{Binding, Gpu};
use crate::kernels::{Dispatch, Kernel, NORM_PARTS_MAX, Spec, grid_1d};
use crate::quant::{Layout, WType, check_shape};
use bytemuck::{Pod, Zeroable};

/// Matvec parallelisation: workgroups of `workgroup` invocations;
/// `threads_per_row` invocations share a row (striding over its 32-weight
/// chunks, then a workgroup-memory reduction); each invocation covers
/// `rows_per_thread` rows, reusing the x values it loaded for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecShape {
    pub workgroup: u32,
    pub threads_per_row: u32,
    pub rows_per_thread: u32,
    /// Read the input vector as a uniform where its buffer allows
    /// ([`X_UNIFORM_BYTES`], `Gpu::activations`): every invocation reads
    /// the same x, which lavapipe then loads once instead of once per lane.
    pub x_uniform: bool,
}

/// Bytes of the input vector a uniform-x matvec binds (the WGSL array's
/// size, 16384 floats): the buffer must hold at least this much, and rows
/// longer than this take the storage path.
pub const X_UNIFORM_BYTES: u64 = 65536;

/// CPU adapters (lavapipe runs a workgroup as 8-wide SIMD loops in which
/// every storage load is a per-lane scalar loop, and barriers are costly):
/// whole rows per invocation, 8 rows sharing each x load, no reduction, x
/// read as a uniform (one load for all lanes), one SIMD group per workgroup
/// so that small matrices still spread over the threads. Q4_1 in the split
/// layout on lavapipe (same run, `cargo bench --bench kernels`), 1536x576 /
/// 576x576 / 192x576: 8 x 8 rows 164 / 75 / 46 us; 16 x 8 rows 165 / 79 /
/// 63 us; 8 x 4 rows 222 / 96 / 61 us.
pub const MATVEC_CPU: MatvecShape = MatvecShape { workgroup: 8, threads_per_row: 1, rows_per_thread: 8, x_uniform: true };
/// GPUs: 8 lanes per row so that short rows still spread over many lanes,
/// 8 rows per 64-invocation workgroup.
pub const MATVEC_GPU: MatvecShape = MatvecShape { workgroup: 64, threads_per_row: 8, rows_per_thread: 1, x_uniform: false };

impl MatvecShape {
    /// The adapter's choice ([`super::tuning::Tuning`]).
    pub fn for_gpu(gpu: &Gpu) -> MatvecShape {
        super::tuning::Tuning::for_caps(&gpu.caps).matvec
    }

    /// Rows covered by one workgroup.
    pub fn rows_per_group(self) -> u32 {
        self.workgroup / self.threads_per_row * self.rows_per_thread
    }
}

/// Matmul parallelisation. `Kernel::Matmul` (tiled): `tile_rows` weight
/// rows (a multiple of 8) x `tile_tokens` tokens per workgroup, staged in
/// workgroup memory; each invocation computes 8 rows x `tokens_per_thread`
/// (4 or 8) tokens. `Kernel::MatmulLanes`: `tile_tokens` invocations of
/// `tokens_per_thread` tokens each, all walking the same `tile_rows` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub kernel: Kernel,
    pub tile_rows: u32,
    pub tile_tokens: u32,
    pub tokens_per_thread: u32,
}

/// CPU adapters: the token-lanes kernel, 64 rows x (8 invocations x 8
/// tokens). On lavapipe, 512 tokens, a 4864x896 Q5_0 matrix (split layout):
/// 21.6 GFLOP/s against 13.9 at the earlier 32 rows x (8 x 4), where each
/// pipeline takes about as long to build (10-14 s uncached); SmolLM2's
/// pp512 79.6 -> 107.8 t/s, Qwen2.5 0.5B's 25.8 -> 41.2 (see
/// shaders/matmul_lanes.wgsl for the other shapes tried).
pub const MATMUL_CPU: MatmulShape = MatmulShape { kernel: Kernel::MatmulLanes, tile_rows: 64, tile_tokens: 8, tokens_per_thread: 8 };
/// CPU adapters, calls of at most [`FEW_TOKENS`] tokens (chat turns, the
/// tail chunk of a prompt), which fill a fraction of `matmul_lanes`' 64
/// tokens: `matmul_rows`, lanes across rows as the decode matvec's, 128
/// rows x 8 tokens per workgroup (16 rows per invocation). On lavapipe, in
/// cache, 8 tokens take 2.1x less time per token than one token's matvec
/// (benches/batch_matvec.rs), where a call of 8 tokens through
/// `matmul_lanes` costs as much as one of 64.
pub const MATMUL_ROWS_CPU: MatmulShape = MatmulShape { kernel: Kernel::MatmulRows, tile_rows: 128, tile_tokens: 8, tokens_per_thread: 8 };
/// Most tokens a call may carry for [`MATMUL_ROWS_CPU`] to be used: its
/// cost grows with the tokens, `matmul_lanes`' by 64 at a time, and on
/// lavapipe they cross at about 32 (`cargo bench --bench kernels -- matfew`,
/// Q4_1: at 8 tokens 134 against 673 µs per token, at 32 tokens 159
/// against 149-183, where the inputs no longer fit one uniform).
pub const FEW_TOKENS: u32 = 16;
/// A batched decode step's matmul of `n_tokens` tokens on CPU adapters,
/// for Q4_1 and Q8_0 weights in the split layout: `matmul_words`, 16 rows per
/// invocation up to 8 tokens per workgroup, 8 rows beyond (the most
/// accumulators that stay in registers). None for other weights, layouts
/// and adapters (`matmul_for` then).
pub fn words_shape(gpu: &Gpu, w: Enc, n_tokens: u32) -> Option<MatmulShape> {
    let fits = gpu.caps.cpu && WORDS_TYPES.contains(&w.wtype) && w.layout == Layout::Split && (2..=FEW_TOKENS).contains(&n_tokens);
    fits.then(|| words_for(n_tokens))
}

/// The weight types `matmul_words` reads (in the split layout).
pub const WORDS_TYPES: [WType; 2] = [WType::Q4_1, WType::Q8_0];

fn words_for(n_tokens: u32) -> MatmulShape {
    let r = if n_tokens <= 8 { 16 } else { 8 };
    MatmulShape { kernel: Kernel::MatmulWords, tile_rows: 8 * r, tile_tokens: n_tokens, tokens_per_thread: n_tokens }
}

/// GPUs: the tiled kernel with 8x8 register tiles, 64 invocations, 16 KiB of
/// workgroup memory (the portable limit).
pub const MATMUL_GPU: MatmulShape = MatmulShape { kernel: Kernel::Matmul, tile_rows: 64, tile_tokens: 64, tokens_per_thread: 8 };

impl MatmulShape {
    /// Tokens covered by one workgroup.
    pub fn tokens_per_group(self) -> u32 {
        match self.kernel {
            Kernel::MatmulLanes => self.tile_tokens * self.tokens_per_thread,
            // Each invocation holds all of its workgroup's tokens (MT).
            Kernel::MatmulRows | Kernel::MatmulWords => self.tokens_per_thread,
            _ => self.tile_tokens,
        }
    }

    /// The adapter's choice ([`super::tuning::Tuning`]).
    pub fn for_gpu(gpu: &Gpu) -> MatmulShape {
        super::tuning::Tuning::for_caps(&gpu.caps).matmul
    }
}

/// A weight matrix's type and the layout its buffer holds it in (a bare
/// `WType` is the file's layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enc {
    pub wtype: WType,
    pub layout: Layout,
}

impl From<WType> for Enc {
    fn from(wtype: WType) -> Enc {
        Enc { wtype, layout: Layout::Gguf }
    }
}

/// Invocations per embed workgroup (each writes one 32-element chunk).
pub const EMBED_WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatvecParams {
    rows: u32,
    cols: u32,
    accum: u32,
    row0: u32,
    wrow0: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    accum: u32,
    y_stride: u32,
    row0: u32,
    wrow0: u32,
    _p: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    vocab: u32,
    dim: u32,
    n_tokens: u32,
    first: u32,
    total: u32,
    _p: [u32; 3],
}

/// Rows `first .. first + count` of a matrix of `total` rows: the block of
/// a weight that one buffer holds when the weight is split to fit the
/// adapter's storage binding limit (`Rows::all`: the whole matrix). The
/// kernels read the block's own rows, starting at row `from` of the buffer
/// (nonzero where several matrices share one buffer, [`Rows::stacked`]),
/// and write (or, for `embed`, read ids of) rows `first ..` of the whole
/// matrix's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    pub first: u32,
    pub count: u32,
    pub total: u32,
    pub from: u32,
}

impl Rows {
    pub fn all(rows: u32) -> Rows {
        Rows { first: 0, count: rows, total: rows, from: 0 }
    }

    /// `total` rows cut into blocks of at most `per` rows (`per` > 0).
    pub fn split(total: u32, per: u32) -> Vec<Rows> {
        (0..total.div_ceil(per)).map(|i| Rows { first: i * per, count: per.min(total - i * per), total, from: 0 }).collect()
    }

    /// A whole matrix of `rows` rows stored from row `from` of a buffer
    /// that holds other matrices' rows around it.
    pub fn stacked(rows: u32, from: u32) -> Rows {
        Rows { from, ..Rows::all(rows) }
    }
}

/// Binding of the split layout's second view of the weights (`wv`, the
/// quants as `vec4<u32>`; see shaders/quant/q4_1_split.wgsl), past every
/// weight kernel's own bindings.
pub const SPLIT_BINDING: u32 = 5;

/// A weight kernel's bindings: `buffers[i]` at `i` (the weights first),
/// and for the split layout the weights again at [`SPLIT_BINDING`].
fn bind<'a>(enc: Enc, buffers: &[&'a wgpu::Buffer]) -> Vec<Binding<'a>> {
    let mut b: Vec<Binding> = buffers.iter().enumerate().map(|(i, buffer)| Binding { at: i as u32, buffer, bytes: None }).collect();
    if enc.layout == Layout::Split {
        b.push(Binding { at: SPLIT_BINDING, buffer: buffers[0], bytes: None });
    }
    b
}

#[track_caller]
fn assert_shape(w: WType, rows: u32, cols: u32) {
    if let Err(e) = check_shape(w, rows as usize, cols as usize) {
        panic!("weight shape not checked by the loader: {e}");
    }
}

// The fused residual (`accum`) is a params field, not a const: one pipeline
// serves both uses, which halves compile time on lavapipe (LLVM takes
// seconds per matmul specialisation) for a uniform branch per output.
fn matvec_spec(w: Enc, s: MatvecShape, x_uniform: bool) -> Spec {
    let spec = Spec::new(Kernel::Matvec).weights_in(w.wtype, w.layout).with("WG", s.workgroup).with("TPR", s.threads_per_row);
    spec.with("RPI", s.rows_per_thread).with("XU", x_uniform as u32)
}

fn matmul_spec(w: Enc, s: MatmulShape) -> Spec {
    let spec = Spec::new(s.kernel).weights_in(w.wtype, w.layout).with("TR", s.tile_rows).with("TT", s.tile_tokens);
    spec.with("MT", s.tokens_per_thread)
}

fn embed_spec(w: Enc) -> Spec {
    Spec::new(Kernel::Embed).weights_in(w.wtype, w.layout).with("WG", EMBED_WG)
}

/// `y[r] = sum_k W[r, k] x[k]` (or `y[r] += ...` with `accum`, the fused
/// residual of the attention-output and FFN-down projections), one token.
/// `w`: `[rows, cols]` of type `wtype`; `x`: `cols` f32, read as vec4, so
/// its buffer must hold at least `x_stride(cols)` floats (values past
/// `cols` are ignored); `y`: `rows` f32.
pub fn matvec(gpu: &Gpu, wtype: WType, w: &wgpu::Buffer, x: &wgpu::Buffer, y: &wgpu::Buffer, rows: u32, cols: u32, accum: bool) -> Dispatch {
    matvec_with(gpu, MatvecShape::for_gpu(gpu), wtype, w, x, y, Rows::all(rows), cols, accum)
}

/// Floats between consecutive input rows of `matmul` (and the floats a
/// `matvec` input must hold): `cols` rounded up to a vec4.
pub fn x_stride(cols: u32) -> u32 {
    cols.div_ceil(4) * 4
}

/// Bytes of one input row of `cols` floats as the kernels read it.
pub fn x_bytes(cols: u32) -> u64 {
    x_stride(cols) as u64 * 4
}

/// `matvec` with an explicit parallelisation (tests exercise both) over
/// one row block `rows` of the matrix: `w` holds only that block's rows,
/// `y` the whole matrix's output.
pub fn matvec_with(
    gpu: &Gpu,
    shape: MatvecShape,
    enc: impl Into<Enc>,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: Rows,
    cols: u32,
    accum: bool,
) -> Dispatch {
    matvec_dispatch(gpu, shape, enc.into(), w, x, y, rows, cols, accum, None)
}

/// The next RMSNorm's input as a residual matvec leaves it (the norm folded
/// into the decode step's weight kernels): `xg` = y times the norm's
/// `gain`, and `parts` the sums of squares of y per [`MatvecShape`]'s rows
/// per invocation ([`norm_parts`] of them), which [`NormIn`] reads.
#[derive(Clone, Copy)]
pub struct NormOut<'a> {
    pub gain: &'a wgpu::Buffer,
    pub xg: &'a wgpu::Buffer,
    pub parts: &'a wgpu::Buffer,
}

/// A folded RMSNorm of a `dim`-wide vector as `matvec_qkv` and
/// `matvec_glu` apply it: their input is x times the gain ([`NormOut`]'s
/// `xg`), `parts` its partial sums of squares (a uniform-capable buffer of
/// at least `4 * NORM_PARTS_MAX` bytes, zero past the parts), `eps` the
/// norm's epsilon.
#[derive(Clone, Copy)]
pub struct NormIn<'a> {
    pub parts: &'a wgpu::Buffer,
    pub dim: u32,
    pub eps: f32,
}

/// Partial sums of squares of a `dim`-wide vector under the fold: one per
/// `shape.rows_per_thread` rows.
pub fn norm_parts(shape: MatvecShape, dim: u32) -> u32 {
    dim.div_ceil(shape.rows_per_thread)
}

/// Whether the norm of a `dim`-wide vector can be folded ([`NormIn`]
/// holds at most `NORM_PARTS_MAX` parts).
pub fn can_fold_norm(shape: MatvecShape, dim: u32) -> bool {
    norm_parts(shape, dim) <= NORM_PARTS_MAX
}

/// `matvec_with` over a whole matrix whose output (the residual, with
/// `accum`) also leaves the next norm's input `norm` ([`NormOut`]).
pub fn matvec_norm_out(
    gpu: &Gpu,
    shape: MatvecShape,
    enc: Enc,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: Rows,
    cols: u32,
    accum: bool,
    norm: NormOut,
) -> Dispatch {
    assert!(rows.first == 0 && rows.count == rows.total, "matvec_norm_out: a whole matrix, not {rows:?}");
    assert!(can_fold_norm(shape, rows.count), "matvec_norm_out: {} rows need more than {NORM_PARTS_MAX} parts", rows.count);
    matvec_dispatch(gpu, shape, enc, w, x, y, rows, cols, accum, Some(norm))
}

/// Invocations per `rms_parts` workgroup.
const PARTS_WG: u32 = 64;

fn rms_parts_spec(shape: MatvecShape) -> Spec {
    Spec::new(Kernel::RmsParts).with("WG", PARTS_WG).with("RPI", shape.rows_per_thread)
}

/// One token's `dim`-wide `x` as the next folded norm reads it, where no
/// residual matvec leaves it ([`matvec_norm_out`]): `norm.xg` = x times
/// `norm.gain`, `norm.parts` its sums of squares grouped as that matvec
/// groups them (`shaders/rms_parts.wgsl`).
pub fn rms_parts(gpu: &Gpu, shape: MatvecShape, x: &wgpu::Buffer, dim: u32, norm: NormOut) -> Dispatch {
    assert!(can_fold_norm(shape, dim), "rms_parts: {dim} wide needs more than {NORM_PARTS_MAX} parts");
    let params = gpu.uniform("rms_parts.params", bytemuck::bytes_of(&[dim, 0, 0, 0]));
    let grid = grid_1d(norm_parts(shape, dim).div_ceil(PARTS_WG));
    gpu.dispatch(&rms_parts_spec(shape), &[x, norm.gain, norm.xg, norm.parts, &params], grid)
}

fn matvec_dispatch(
    gpu: &Gpu,
    shape: MatvecShape,
    enc: Enc,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: Rows,
    cols: u32,
    accum: bool,
    norm: Option<NormOut>,
) -> Dispatch {
    assert_shape(enc.wtype, rows.count, cols);
    assert!(x.size() >= x_bytes(cols), "matvec: x holds {} bytes, needs {} (cols rounded up to 4 floats)", x.size(), x_bytes(cols));
    let p = MatvecParams { rows: rows.count, cols, accum: accum as u32, row0: rows.first, wrow0: rows.from, _p: [0; 3] };
    let params = gpu.uniform("matvec.params", bytemuck::bytes_of(&p));
    let groups = grid_1d(rows.count.div_ceil(shape.rows_per_group()));
    let xu = x_uniform(gpu, shape, x, cols);
    let mut b = bind(enc, &[w, x, y, &params]);
    b[1].bytes = xu.then_some(X_UNIFORM_BYTES);
    if let Some(n) = norm {
        b.extend([(4, n.gain), (6, n.xg), (7, n.parts)].map(|(at, buffer)| Binding { at, buffer, bytes: None }));
    }
    let spec = matvec_spec(enc, shape, xu).with("NORM", norm.is_some() as u32);
    gpu.dispatch_bound(&spec, &b, groups).reading(rows.count, cols)
}

/// A consumer's folded-norm consts and binding (none without `norm`).
fn norm_in<'a>(spec: Spec, b: &mut Vec<Binding<'a>>, shape: MatvecShape, norm: Option<NormIn<'a>>) -> Spec {
    if let Some(n) = norm {
        assert!(can_fold_norm(shape, n.dim), "folded norm: {} wide needs more than {NORM_PARTS_MAX} parts", n.dim);
        b.push(Binding { at: 10, buffer: n.parts, bytes: Some(4 * NORM_PARTS_MAX as u64) });
    }
    norm_spec(spec, shape, norm.map(|n| (n.dim, n.eps)))
}

fn norm_spec(spec: Spec, shape: MatvecShape, norm: Option<(u32, f32)>) -> Spec {
    let Some((dim, eps)) = norm else { return spec.with("NORM", 0) };
    spec.with("NORM", 1).with("NP4", norm_parts(shape, dim).div_ceil(4)).with("NDIM", dim).with_f32("NEPS", eps)
}

/// Whether a matvec reads `x` as a uniform: where the shape asks for it and
/// the device, the buffer and the row allow it.
fn x_uniform(gpu: &Gpu, shape: MatvecShape, x: &wgpu::Buffer, cols: u32) -> bool {
    shape.x_uniform && x_fits_uniform(gpu, x, x_bytes(cols))
}

/// Whether the first `bytes` of `x` can be read through its first
/// `X_UNIFORM_BYTES` bound as a uniform.
fn x_fits_uniform(gpu: &Gpu, x: &wgpu::Buffer, bytes: u64) -> bool {
    let fits = gpu.device.limits().max_uniform_buffer_binding_size >= X_UNIFORM_BYTES && bytes <= X_UNIFORM_BYTES;
    fits && x.usage().contains(wgpu::BufferUsages::UNIFORM) && x.size() >= X_UNIFORM_BYTES
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct QkvParams {
    nq: u32,
    nk: u32,
    nv: u32,
    cols: u32,
    wrow0: u32,
    _p: [u32; 3],
}

/// The query, key and value projections of one token in one dispatch
/// (`shaders/matvec_qkv.wgsl`), each plus its bias where `bias` is given:
/// `w` holds their `rows` (q, k, v) one after another from its row `from`,
/// all of `cols` weights in `enc`; `ys` receive them. Equals three
/// `matvec`s (and `add_bias`es) bit for bit, in one dispatch instead of up
/// to six. With `norm`, `x` is x times a norm's gain and the sums are
/// scaled by the norm's 1/rms ([`NormIn`]): an RMSNorm folded in.
pub fn matvec_qkv<'a>(
    gpu: &Gpu,
    shape: MatvecShape,
    enc: Enc,
    w: &'a wgpu::Buffer,
    from: u32,
    rows: [u32; 3],
    cols: u32,
    x: &'a wgpu::Buffer,
    ys: [&'a wgpu::Buffer; 3],
    bias: Option<[&'a wgpu::Buffer; 3]>,
    norm: Option<NormIn<'a>>,
) -> Dispatch {
    let total = rows.iter().sum::<u32>();
    assert_shape(enc.wtype, total, cols);
    assert!(x.size() >= x_bytes(cols), "matvec_qkv: x holds {} bytes, needs {}", x.size(), x_bytes(cols));
    let p = QkvParams { nq: rows[0], nk: rows[1], nv: rows[2], cols, wrow0: from, _p: [0; 3] };
    let params = gpu.uniform("matvec_qkv.params", bytemuck::bytes_of(&p));
    let xu = x_uniform(gpu, shape, x, cols);
    let mut b = bind(enc, &[w, x, ys[0], &params]);
    b[1].bytes = xu.then_some(X_UNIFORM_BYTES);
    b.push(Binding { at: 4, buffer: ys[1], bytes: None });
    b.push(Binding { at: 6, buffer: ys[2], bytes: None });
    for (i, buffer) in bias.iter().flatten().enumerate() {
        b.push(Binding { at: 7 + i as u32, buffer, bytes: None });
    }
    let spec = fused_spec(Kernel::MatvecQkv, enc, shape, xu).with("RPI", shape.rows_per_thread).with("BIAS", bias.is_some() as u32);
    let spec = norm_in(spec, &mut b, shape, norm);
    gpu.dispatch_bound(&spec, &b, grid_1d(total.div_ceil(shape.rows_per_group()))).reading(total, cols)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GluParams {
    rows: u32,
    cols: u32,
    gate0: u32,
    up0: u32,
}

/// Gate/up row pairs per invocation of `matvec_glu`: the shape's rows per
/// invocation, as pairs.
fn glu_pairs(shape: MatvecShape) -> u32 {
    (shape.rows_per_thread / 2).max(1)
}

/// A gated FFN's gate and up projections of one token and their product in
/// one dispatch (`shaders/matvec_glu.wgsl`): `y[r] = act(gate[r] . x) *
/// (up[r] . x)` for `r < rows`, act = GELU (tanh form) where `gelu`, else
/// SiLU. `w` holds the gate's rows from its row `gate0` and the up's from
/// `up0`, all of `cols` weights in `enc`. Equals two `matvec`s and
/// `swiglu` (`geglu`) bit for bit; `norm` as in [`matvec_qkv`].
pub fn matvec_glu<'a>(
    gpu: &Gpu,
    shape: MatvecShape,
    enc: Enc,
    w: &'a wgpu::Buffer,
    [gate0, up0]: [u32; 2],
    rows: u32,
    cols: u32,
    x: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    gelu: bool,
    norm: Option<NormIn<'a>>,
) -> Dispatch {
    assert_shape(enc.wtype, 2 * rows, cols);
    assert!(x.size() >= x_bytes(cols), "matvec_glu: x holds {} bytes, needs {}", x.size(), x_bytes(cols));
    let p = GluParams { rows, cols, gate0, up0 };
    let params = gpu.uniform("matvec_glu.params", bytemuck::bytes_of(&p));
    let xu = x_uniform(gpu, shape, x, cols);
    let mut b = bind(enc, &[w, x, y, &params]);
    b[1].bytes = xu.then_some(X_UNIFORM_BYTES);
    let pairs = glu_pairs(shape);
    let spec = fused_spec(Kernel::MatvecGlu, enc, shape, xu).with("PR", pairs).with("ACT", gelu as u32);
    let spec = norm_in(spec, &mut b, shape, norm);
    let per_group = shape.workgroup / shape.threads_per_row * pairs;
    gpu.dispatch_bound(&spec, &b, grid_1d(rows.div_ceil(per_group))).reading(2 * rows, cols)
}

fn fused_spec(kernel: Kernel, w: Enc, s: MatvecShape, x_uniform: bool) -> Spec {
    Spec::new(kernel).weights_in(w.wtype, w.layout).with("WG", s.workgroup).with("TPR", s.threads_per_row).with("XU", x_uniform as u32)
}

/// `Y[t, r] = sum_k W[r, k] X[t, k]` (or `+=` with `accum`) for the first
/// `min(step.n_tokens, n_tokens)` tokens. `x`: `n_tokens` rows of `cols`
/// f32 at a row stride of `x_stride(cols)` floats (`cols` rounded up to 4:
/// the kernel reads vec4; padding values are ignored), `y`: `[n_tokens,
/// rows]` f32, `step`: the `ops::Step` uniform.
pub fn matmul(
    gpu: &Gpu,
    wtype: WType,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    rows: u32,
    cols: u32,
    n_tokens: u32,
    accum: bool,
) -> Dispatch {
    matmul_with(gpu, MatmulShape::for_gpu(gpu), wtype, w, x, y, step, Rows::all(rows), cols, n_tokens, accum)
}

/// `matmul` with an explicit tile (tests exercise both) over one row block
/// `rows`: `w` holds only its rows, `y` is `[n_tokens, rows.total]`.
pub fn matmul_with(
    gpu: &Gpu,
    shape: MatmulShape,
    enc: impl Into<Enc>,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
    rows: Rows,
    cols: u32,
    n_tokens: u32,
    accum: bool,
) -> Dispatch {
    let enc = enc.into();
    assert_shape(enc.wtype, rows.count, cols);
    let need = n_tokens as u64 * x_bytes(cols);
    assert!(x.size() >= need, "matmul: x holds {} bytes, needs {need} ({n_tokens} rows of stride {})", x.size(), x_stride(cols));
    let p = MatmulParams { rows: rows.count, cols, n_tokens, accum: accum as u32, y_stride: rows.total, row0: rows.first, wrow0: rows.from, _p: 0 };
    let params = gpu.uniform("matmul.params", bytemuck::bytes_of(&p));
    let groups = matmul_groups_for(shape, rows.count, n_tokens);
    let mut b = bind(enc, &[w, x, y, &params, step]);
    let mut spec = matmul_spec(enc, shape);
    if matches!(shape.kernel, Kernel::MatmulRows | Kernel::MatmulWords) {
        // All of the call's inputs as a uniform where they fit in one.
        let xu = x_fits_uniform(gpu, x, n_tokens as u64 * x_bytes(cols));
        b[1].bytes = xu.then_some(X_UNIFORM_BYTES);
        spec = spec.with("XU", xu as u32);
    }
    gpu.dispatch_bound(&spec, &b, groups).reading(rows.count, cols)
}

/// The grid of a `matmul` dispatch on `gpu` over `rows` weight rows (a
/// block's count) covering `n_tokens` tokens (for `Dispatch::record_groups`
/// when a call has fewer tokens than the buffers).
pub fn matmul_groups(gpu: &Gpu, rows: u32, n_tokens: u32) -> [u32; 3] {
    matmul_groups_for(MatmulShape::for_gpu(gpu), rows, n_tokens)
}

fn matmul_groups_for(s: MatmulShape, rows: u32, n_tokens: u32) -> [u32; 3] {
    [rows.div_ceil(s.tile_rows), n_tokens.div_ceil(s.tokens_per_group()), 1]
}

/// `out[t, :] = table[ids[t], :]` dequantized to f32, for the first
/// `min(step.n_tokens, n_tokens)` ids. `table`: `[vocab, dim]` of type
/// `wtype`; `ids`: `n_tokens` u32; `out`: `[n_tokens, dim]` f32. An id
/// `>= vocab` yields a row of zeros (the host validates ids before upload;
/// this only keeps a bad id from reading another tensor's bytes).
pub fn embed(
    gpu: &Gpu,
    wtype: WType,
    table: &wgpu::Buffer,
    ids: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    vocab: u32,
    dim: u32,
    n_tokens: u32,
) -> Dispatch {
    embed_rows(gpu, wtype, table, ids, out, step, Rows::all(vocab), dim, n_tokens)
}

/// `embed` from one row block `rows` of the table: writes the tokens whose
/// ids fall in the block (and, the block with `first == 0`, zeros for ids
/// past `rows.total`), leaving the others' rows to the other blocks.
pub fn embed_rows(
    gpu: &Gpu,
    enc: impl Into<Enc>,
    table: &wgpu::Buffer,
    ids: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    rows: Rows,
    dim: u32,
    n_tokens: u32,
) -> Dispatch {
    let enc = enc.into();
    assert_shape(enc.wtype, rows.count, dim);
    assert_eq!(rows.from, 0, "embed reads a table that has its buffer to itself");
    let p = EmbedParams { vocab: rows.count, dim, n_tokens, first: rows.first, total: rows.total, _p: [0; 3] };
    let params = gpu.uniform("embed.params", bytemuck::bytes_of(&p));
    gpu.dispatch_bound(&embed_spec(enc), &bind(enc, &[table, ids, out, &params, step]), embed_groups(dim, n_tokens))
}

/// The grid of an `embed` dispatch covering `n_tokens` tokens.
pub fn embed_groups(dim: u32, n_tokens: u32) -> [u32; 3] {
    grid_1d((n_tokens * dim.div_ceil(32)).div_ceil(EMBED_WG))
}

/// Every specialisation this file can create: all weight types, both
/// parallelisations of each kernel.
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for &w in WType::ALL {
        for layout in [Layout::Gguf, Layout::Split] {
            if layout == Layout::Split && w.split_parts().is_none() {
                continue;
            }
            let e = Enc { wtype: w, layout };
            for (shape, xu) in [(MATVEC_CPU, true), (MATVEC_CPU, false), (MATVEC_GPU, false)] {
                for norm in [0, 1] {
                    v.push(matvec_spec(e, shape, xu).with("NORM", norm));
                }
                // The folded norm's consts at the default model's width.
                for (flag, norm) in [(0, None), (1, None), (0, Some((576, 1e-5)))] {
                    let qkv = fused_spec(Kernel::MatvecQkv, e, shape, xu).with("RPI", shape.rows_per_thread).with("BIAS", flag);
                    v.push(norm_spec(qkv, shape, norm));
                    let glu = fused_spec(Kernel::MatvecGlu, e, shape, xu).with("PR", glu_pairs(shape)).with("ACT", flag);
                    v.push(norm_spec(glu, shape, norm));
                }
            }
            v.push(matmul_spec(e, MATMUL_CPU));
            v.push(matmul_spec(e, MATMUL_GPU));
            for xu in [0, 1] {
                v.push(matmul_spec(e, MATMUL_ROWS_CPU).with("XU", xu));
            }
            v.push(embed_spec(e));
        }
    }
    for wtype in WORDS_TYPES {
        for n in 2..=FEW_TOKENS {
            for xu in [0, 1] {
                v.push(matmul_spec(Enc { wtype, layout: Layout::Split }, words_for(n)).with("XU", xu));
            }
        }
    }
    v.push(rms_parts_spec(MATVEC_CPU));
    v.push(rms_parts_spec(MATVEC_GPU));
    v
}
