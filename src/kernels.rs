//! Shader registry: one `shaders/*.wgsl` file per kernel, specialised by a
//! small generated `const` prelude; the cache of built pipelines; `Dispatch`,
//! one launch. No wgpu calls here: `Gpu` (gpu.rs) compiles, binds and
//! records, and this module does not import it.
//!
//! A shader's final source is
//!   prelude (f16 or f32 storage aliases + the spec's `const` lines, and the
//!   attention core's options at their "off" value where the spec leaves them)
//!   + `shaders/step.wgsl` (the step uniform's struct)
//!   + shared fragments (`shaders/attn_core.wgsl` for attention, ...)
//!   + `shaders/quant/common.wgsl` + `shaders/quant/<wtype>.wgsl` (weight-reading kernels only;
//!     `<wtype>_split.wgsl` for a buffer in `quant::Layout::Split`)
//!   + for the decode matvecs, x's binding and `shaders/matvec_rows.wgsl`
//!   + `shaders/<kernel>.wgsl`.
//!
//! Bindings are numbered in argument order: inputs, outputs, then the params
//! uniform (and the step uniform where a kernel depends on the position).

use crate::quant::{Layout, WType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

macro_rules! kernels {
    ($($variant:ident => $file:literal, $weights:literal;)*) => {
        /// Every WGSL kernel the engine runs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel { $($variant),* }
        impl Kernel {
            pub const ALL: &'static [Kernel] = &[$(Kernel::$variant),*];
            /// The shader file name under `shaders/`, without `.wgsl`.
            pub fn name(self) -> &'static str { match self { $(Kernel::$variant => $file),* } }
            pub fn source(self) -> &'static str {
                match self { $(Kernel::$variant => include_str!(concat!("../shaders/", $file, ".wgsl"))),* }
            }
            /// Whether the kernel reads a weight matrix (and so takes a weight-type fragment).
            pub fn reads_weights(self) -> bool { match self { $(Kernel::$variant => $weights),* } }
        }
    };
}

kernels! {
    Embed => "embed", true;
    RmsNorm => "rmsnorm", false;
    RmsParts => "rms_parts", false;
    HeadNorm => "head_norm", false;
    Rope => "rope", false;
    Matvec => "matvec", true;
    MatvecQkv => "matvec_qkv", true;
    MatvecGlu => "matvec_glu", true;
    Matmul => "matmul", true;
    MatmulLanes => "matmul_lanes", true;
    MatmulRows => "matmul_rows", true;
    MatmulWords => "matmul_words", true;
    Swiglu => "swiglu", false;
    Geglu => "geglu", false;
    Scale => "scale", false;
    Add => "add", false;
    KvAppend => "kv_append", false;
    KvQuant => "kv_quant", false;
    KiviAppend => "kivi_append", false;
    KiviPack => "kivi_pack", false;
    KiviExpand => "kivi_expand", false;
    KiviRepack => "kivi_repack", false;
    KvRotate => "kv_rotate", false;
    KvCompact => "kv_compact", false;
    KvPlace => "kv_place", false;
    AttnAccum => "attn_accum", false;
    EvictScore => "evict_score", false;
    EvictSelect => "evict_select", false;
    EvictBudget => "evict_budget", false;
    AttnPrefill => "attn_prefill", false;
    AttnPrefillLanes => "attn_prefill_lanes", false;
    AttnDecode => "attn_decode", false;
    AttnDecodeLanes => "attn_decode_lanes", false;
    AttnDecodeBatch => "attn_decode_batch", false;
    AttnMerge => "attn_merge", false;
    QuestMeta => "quest_meta", false;
    QuestScore => "quest_score", false;
    QuestSelect => "quest_select", false;
    QuestSelectRadix => "quest_select_radix", false;
    AttnDecodePages => "attn_decode_pages", false;
    MustafarCompress => "mustafar_compress", false;
    MustafarExpand => "mustafar_expand", false;
    MustafarAttn => "mustafar_attn", false;
    Argmax => "argmax", false;
    TopK => "topk", false;
}

/// The matvec's (and `matmul_rows`') input (binding 1): a storage array, or (spec const
/// `XU` = 1, CPU adapters) the first 64 KiB of the buffer as a uniform,
/// whose loads at a workgroup-uniform index lavapipe turns into one scalar
/// load instead of a loop over the SIMD lanes.
pub const MATVEC_X_STORAGE: &str = "@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;\n";
pub const MATVEC_X_UNIFORM: &str = "@group(0) @binding(1) var<uniform> x: array<vec4<f32>, 4096>;\n";
/// `matvec_qkv`'s `bias(j, r)`: row `r` of projection `j`'s bias (spec const
/// `BIAS` = 1), or -0.0, which adds nothing to any float, -0 included.
pub const QKV_BIAS: &str = "@group(0) @binding(7) var<storage, read> bq: array<f32>;
@group(0) @binding(8) var<storage, read> bk: array<f32>;
@group(0) @binding(9) var<storage, read> bv: array<f32>;
fn bias(j: u32, r: u32) -> f32 {
    if (j == 0u) { return bq[r]; }
    if (j == 1u) { return bk[r]; }
    return bv[r];
}
";
/// `rope`'s accessors: of x alone, or (spec const `K2` = 1) of x (buffer 0)
/// and the keys' x2 (buffer 1).
pub const ROPE_ONE: &str = "fn load_x(b: u32, i: u32) -> f32 { return x[i]; }\nfn store_x(b: u32, i: u32, v: f32) { x[i] = v; }\n";
pub const ROPE_TWO: &str = "@group(0) @binding(4) var<storage, read_write> x2: array<f32>;
fn load_x(b: u32, i: u32) -> f32 {
    if (b == 0u) { return x[i]; }
    return x2[i];
}
fn store_x(b: u32, i: u32, v: f32) {
    if (b == 0u) { x[i] = v; } else { x2[i] = v; }
}
";
/// `rope`'s token positions: `step.pos + t`, or (spec const `POS` = 1)
/// each token's own from a table (a batched decode step).
pub const ROPE_POS_STEP: &str = "fn token_pos(t: u32) -> u32 { return st.pos + t; }\n";
pub const ROPE_POS_TABLE: &str = "@group(0) @binding(5) var<storage, read> positions: array<u32>;
fn token_pos(t: u32) -> u32 { return positions[t]; }
";
pub const QKV_NO_BIAS: &str = "fn bias(j: u32, r: u32) -> f32 { return -0.0; }\n";

/// Most partial sums of squares a folded RMSNorm reads (`NORM_IN`'s array,
/// 4 KiB): one per matvec invocation's rows of the normed vector.
pub const NORM_PARTS_MAX: u32 = 1024;
const _: () = assert!(NORM_PARTS_MAX == 4 * 256, "NORM_IN's array holds 256 vec4");
/// `matvec`'s folded-norm output (spec const `NORM` = 1): each written row
/// times the next norm's gain, and each invocation's sum of squares.
pub const NORM_OUT: &str = "@group(0) @binding(4) var<storage, read> norm_gain: array<f32>;
@group(0) @binding(6) var<storage, read_write> norm_xg: array<f32>;
@group(0) @binding(7) var<storage, read_write> norm_parts: array<f32>;
fn norm_row(r: u32, v: f32) -> f32 {
    norm_xg[r] = v * norm_gain[r];
    return v * v;
}
fn norm_part(i: u32, s: f32) { norm_parts[i] = s; }
";
pub const NORM_OUT_NONE: &str = "fn norm_row(r: u32, v: f32) -> f32 { return 0.0; }\nfn norm_part(i: u32, s: f32) {}\n";
/// `matvec_qkv` / `matvec_glu`'s folded-norm input (spec const `NORM` = 1):
/// the RMSNorm scale 1 / sqrt(mean(x^2) + NEPS) from the `NP4` vec4s of
/// partial sums (zero past the parts) of an `NDIM`-wide x; 1 without it.
pub const NORM_IN: &str = "@group(0) @binding(10) var<uniform> norm_parts: array<vec4<f32>, 256>;
fn norm_scale() -> f32 {
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < NP4; i++) {
        s += norm_parts[i];
    }
    return inverseSqrt(((s.x + s.y) + (s.z + s.w)) / f32(NDIM) + NEPS);
}
";
pub const NORM_IN_NONE: &str = "fn norm_scale() -> f32 { return 1.0; }\n";

pub const QUANT_COMMON: &str = include_str!("../shaders/quant/common.wgsl");
pub const MATVEC_ROWS: &str = include_str!("../shaders/matvec_rows.wgsl");
pub const STEP: &str = include_str!("../shaders/step.wgsl");
pub const ATTN_CORE: &str = include_str!("../shaders/attn_core.wgsl");
pub const HALF: &str = include_str!("../shaders/half.wgsl");
pub const MUSTAFAR_TILES: &str = include_str!("../shaders/mustafar_tiles.wgsl");
pub const SCORE_KEY: &str = include_str!("../shaders/score_key.wgsl");
pub const RADIX_SELECT: &str = include_str!("../shaders/radix_select.wgsl");
pub const KV_FORMAT: &str = include_str!("../shaders/kv_format.wgsl");
pub const KV_HADAMARD: &str = include_str!("../shaders/kv_hadamard.wgsl");
pub const KIVI_FORMAT: &str = include_str!("../shaders/kivi_format.wgsl");
pub const KIVI_QUANT: &str = include_str!("../shaders/kivi_quant.wgsl");

impl Kernel {
    /// Shared WGSL fragments the kernel's source is prepended with, in order
    /// (after `step.wgsl`, which every kernel gets): the attention kernels
    /// share the attention core; Mustafar's kernels keep halves in u32 words
    /// and share the tile format; eviction's selections and Quest's radix select
    /// share a radix select, and with Quest's other select the f32 order key.
    pub fn fragments(self) -> &'static [&'static str] {
        match self {
            Kernel::MustafarAttn => &[ATTN_CORE, HALF, MUSTAFAR_TILES],
            Kernel::AttnPrefill
            | Kernel::AttnPrefillLanes
            | Kernel::AttnDecode
            | Kernel::AttnDecodeLanes
            | Kernel::AttnDecodeBatch
            | Kernel::AttnDecodePages
            | Kernel::AttnMerge
            | Kernel::AttnAccum => &[ATTN_CORE],
            Kernel::MustafarCompress | Kernel::MustafarExpand => &[HALF, MUSTAFAR_TILES],
            Kernel::EvictSelect | Kernel::EvictBudget | Kernel::QuestSelectRadix => &[SCORE_KEY, RADIX_SELECT],
            Kernel::QuestSelect => &[SCORE_KEY],
            _ => &[],
        }
    }
}

/// The KV cache's row format: 8 or 4 (bits) for a quantized cache
/// (`shaders/kv_format.wgsl`), absent for a dense one.
pub const KVQ: &str = "KVQ";

/// A KIVI cache's format (`shaders/kivi_format.wgsl`): bits (2 or 4), the
/// key group (slots), the value group (channels), the residual, the sink
/// (first slots kept f16), slots per KV head, staging rows per KV head, KV
/// heads.
pub const KIVI: &str = "KIVI";
pub const KIVI_CONSTS: [&str; 7] = ["KIVI_G", "KIVI_GV", "KIVI_R", "KIVI_SINK", "KIVI_SEQ", "KIVI_STAGE", "KIVI_HEADS"];

impl Kernel {
    /// Which of the caches `k_cache` / `v_cache` the kernel reads through
    /// `kv_k` / `kv_v`, or moves as rows of `KV_ROW` `kvw_t` (both false);
    /// None: it does not touch a KV cache in its row format.
    pub fn reads_cache(self) -> Option<(bool, bool)> {
        match self {
            Kernel::AttnPrefill
            | Kernel::AttnPrefillLanes
            | Kernel::AttnDecode
            | Kernel::AttnDecodeLanes
            | Kernel::AttnDecodePages
            | Kernel::EvictScore
            | Kernel::KiviExpand => Some((true, true)),
            Kernel::AttnAccum | Kernel::QuestMeta => Some((true, false)),
            Kernel::KvCompact => Some((false, false)),
            _ => None,
        }
    }
}

/// How a kernel reads the cache rows (`Kernel::reads_cache`): the row unit
/// `kvw_t`, `KV_ROW` units per row, and `kv_k(r, d)` / `kv_v(r, d)`, the f32
/// elements `4 d .. 4 d + 3` of row `r` (= KV head * max_seq + slot), for
/// a dense cache (`kvq` 0) or a quantized one (`kv_format.wgsl`).
fn kv_reader(kvq: u32, k: bool, v: bool) -> String {
    let mut s = String::new();
    let (read, prelude) = if kvq == 0 {
        ("vec4<f32>(CACHE[r * KV_ROW + d])", "alias kvw_t = kv4_t;\nconst KV_ROW: u32 = HEAD_DIM / 4u;\n")
    } else {
        ("kv_deq(CACHE[r * KV_ROW + kv_word(d)], CACHE[r * KV_ROW + KV_QW + d / 16u], d)", "alias kvw_t = u32;\n")
    };
    s.push_str(prelude);
    if kvq > 0 {
        s.push_str(HALF);
        s.push_str(KV_FORMAT);
    }
    for (on, name, cache) in [(k, "kv_k", "k_cache"), (v, "kv_v", "v_cache")] {
        if on {
            s.push_str(&format!("fn {name}(r: u32, d: u32) -> vec4<f32> {{\n    return {};\n}}\n", read.replace("CACHE", cache)));
        }
    }
    s
}

/// The batched decode kernels' spec const: how many sequences (each with its
/// own pair of dense cache bindings) one dispatch serves.
pub const BATCH: &str = "BATCH";

/// `attn_decode_batch`'s caches for `n` sequences: cache `b`'s K and V at
/// bindings `7 + 2 b` and `8 + 2 b`, read through `kv_k(b, r, d)` /
/// `kv_v(b, r, d)` and written through `store_kv(b, i, k, v)`, a switch on
/// `b` each.
fn batch_caches(n: u32) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for b in 0..n {
        let _ = writeln!(s, "@group(0) @binding({}) var<storage, read_write> k{b}: array<kv4_t>;", 7 + 2 * b);
        let _ = writeln!(s, "@group(0) @binding({}) var<storage, read_write> v{b}: array<kv4_t>;", 8 + 2 * b);
    }
    // The last sequence is the switch's default: WGSL wants one.
    let case = |b: u32| if b + 1 == n { "default".to_string() } else { format!("case {b}u") };
    for c in ["k", "v"] {
        let _ = writeln!(s, "fn kv_{c}(b: u32, r: u32, d: u32) -> vec4<f32> {{\n    switch b {{");
        for b in 0..n {
            let _ = writeln!(s, "        {}: {{ return vec4<f32>({c}{b}[r * D4 + d]); }}", case(b));
        }
        s.push_str("    }\n}\n");
    }
    s.push_str("fn store_kv(b: u32, i: u32, k: kv4_t, v: kv4_t) {\n    switch b {\n");
    for b in 0..n {
        let _ = writeln!(s, "        {}: {{ k{b}[i] = k; v{b}[i] = v; }}", case(b));
    }
    s.push_str("    }\n}\n");
    s
}

/// `matmul_words`' entry point for weights of `wtype` (Q4_1 or Q8_0, split
/// layout), `r` rows per invocation and `b` tokens per workgroup, with one
/// variable per row and token (see the shader). Each 32-weight block is
/// loaded per row, then taken a word at a time: a Q4_1 word gives 8
/// weights (its low nibbles for inputs 4c.., its high ones for 16 + 4c..),
/// a Q8_0 word 4 (inputs 4c..).
fn words_main(wtype: Option<WType>, r: u32, b: u32) -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = min(step.n_tokens, p.n_tokens);
    let t0 = wid.y * MT;
    if (t0 >= n) {
        return; // uniform across the workgroup
    }
    let nb = p.cols / 32u;
    let texels = row_bytes(p.cols) / 16u;
    let xs = (p.cols + 3u) / 4u;
    let r0 = (wid.x * 8u + li) * (TR / 8u);
",
    );
    for i in 0..r {
        let _ = writeln!(s, "    let b{i} = (p.wrow0 + min(r0 + {i}u, p.rows - 1u)) * texels;");
    }
    for j in 0..b {
        let _ = writeln!(s, "    let x{j} = min(t0 + {j}u, n - 1u) * xs;");
        for i in 0..r {
            let _ = writeln!(s, "    var a{i}_{j} = 0.0;");
        }
    }
    s.push_str("    for (var sb = 0u; sb < nb; sb++) {\n");
    // Per word c: each row's weight vec4s, with the input vec4 each multiplies.
    let q8 = wtype == Some(WType::Q8_0);
    let words: Vec<Vec<(String, u32)>> = if q8 {
        for i in 0..r {
            let _ = writeln!(s, "        let qa{i} = wv[b{i} + sb * 2u];\n        let qb{i} = wv[b{i} + sb * 2u + 1u];");
            let _ = writeln!(s, "        let d{i} = w_f16(b{i} * 16u + p.cols + sb * 2u);");
        }
        (0..8u32).map(|c| vec![(format!("i8x4(q{}{{i}}.{}) * d{{i}}", ["a", "b"][c as usize / 4], ["x", "y", "z", "w"][c as usize % 4]), c)]).collect()
    } else {
        for i in 0..r {
            let _ = writeln!(s, "        let q{i} = wv[b{i} + sb];\n        let dm{i} = half2(w[(b{i} + nb) * 4u + sb]);");
            let _ = writeln!(s, "        let dl{i} = NIB_LO * dm{i}.x;\n        let dh{i} = NIB_HI * dm{i}.x;");
        }
        (0..4u32)
            .map(|c| {
                let comp = ["x", "y", "z", "w"][c as usize];
                vec![(format!("lo_nibbles(q{{i}}.{comp}) * dl{{i}} + dm{{i}}.y"), c), (format!("hi_nibbles(q{{i}}.{comp}) * dh{{i}} + dm{{i}}.y"), c + 4)]
            })
            .collect()
    };
    for (c, parts) in words.iter().enumerate() {
        for i in 0..r {
            for (h, (w, _)) in parts.iter().enumerate() {
                let _ = writeln!(s, "        let w{i}_{c}_{h} = {};", w.replace("{i}", &i.to_string()));
            }
        }
        for j in 0..b {
            for (h, (_, at)) in parts.iter().enumerate() {
                let _ = writeln!(s, "        let x{c}_{h}_{j} = x[x{j} + sb * 8u + {at}u];");
            }
            for i in 0..r {
                let sum: Vec<String> = (0..parts.len()).map(|h| format!("dot(w{i}_{c}_{h}, x{c}_{h}_{j})")).collect();
                let _ = writeln!(s, "        a{i}_{j} += {};", sum.join(" + "));
            }
        }
    }
    s.push_str("    }\n");
    for j in 0..b {
        for i in 0..r {
            let _ = writeln!(s, "    if (t0 + {j}u < n && r0 + {i}u < p.rows) {{ store(t0 + {j}u, r0 + {i}u, a{i}_{j}); }}");
        }
    }
    s.push_str("}\n");
    s
}

/// `kv_k` / `kv_v` over a KIVI cache (`kivi_format.wgsl`): a staged f16 row
/// at or past the boundary, else the codes times their group's scale plus
/// its minimum. The boundary follows from the kernel's `step` (the cached
/// length before the call), or for `evict_score`, which runs between
/// calls, from its `p.len`.
fn kivi_reader(k: bool, v: bool, kernel: Kernel) -> String {
    let mut s = String::from("alias kvw_t = u32;\n");
    s.push_str(HALF);
    s.push_str(KIVI_FORMAT);
    let before = match kernel {
        Kernel::EvictScore => "min(p.len, KIVI_SEQ)",
        _ => "min(step.kv_len, KIVI_SEQ) - min(step.n_tokens, step.kv_len)",
    };
    s.push_str(&format!("fn kivi_qb() -> u32 {{\n    return ({before}) / KIVI_R * KIVI_R;\n}}\n"));
    let staged = |cache: &str, base: &str| {
        format!(
            "    if (kivi_staged(r % KIVI_SEQ, kivi_qb())) {{\n        let i = {base} + kivi_stage_row(r) * KIVI_SW + 2u * d;\n        return vec4<f32>(half_pair({cache}[i]), half_pair({cache}[i + 1u]));\n    }}\n"
        )
    };
    if k {
        s.push_str("fn kv_k(r: u32, d: u32) -> vec4<f32> {\n");
        s.push_str(&staged("k_cache", "KIVI_KSTAGE"));
        s.push_str(
            "    let base = kivi_kbase(r);
    let c = kivi_codes(k_cache[base + (r % KIVI_SEQ % KIVI_G) * KIVI_CW + d * KIVI / 8u], d);
    let pb = base + KIVI_G * KIVI_CW + 4u * d;
    let p0 = half_pair(k_cache[pb]);
    let p1 = half_pair(k_cache[pb + 1u]);
    let p2 = half_pair(k_cache[pb + 2u]);
    let p3 = half_pair(k_cache[pb + 3u]);
    return c * vec4<f32>(p0.x, p1.x, p2.x, p3.x) + vec4<f32>(p0.y, p1.y, p2.y, p3.y);
}
",
        );
    }
    if v {
        s.push_str("fn kv_v(r: u32, d: u32) -> vec4<f32> {\n");
        s.push_str(&staged("v_cache", "KIVI_VSTAGE"));
        s.push_str(
            "    let row = ((r / KIVI_SEQ) * KIVI_NQ + r % KIVI_SEQ) * KIVI_VROW;
    let c = kivi_codes(v_cache[row + d * KIVI / 8u], d);
    let sm = half_pair(v_cache[row + KIVI_CW + 4u * d / KIVI_GV]);
    return c * sm.x + sm.y;
}
",
        );
    }
    s
}

/// The attention core's per-pipeline options (`shaders/attn_core.wgsl`):
/// `SOFTCAP` (f32) and `WINDOW` (u32), 0 meaning off. A kernel that includes
/// the core gets `const` lines for both; a spec that does not set one gets 0.
pub const SOFTCAP: &str = "SOFTCAP";
pub const WINDOW: &str = "WINDOW";

/// A kernel plus its specialisation: weight type (for weight-reading
/// kernels) and named constants emitted into the prelude: `u32` ones, and
/// `f32` ones held as their bits (so a spec stays `Eq` and `Hash`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spec {
    pub kernel: Kernel,
    pub wtype: Option<WType>,
    /// How the weight buffer holds the matrix (selects the type's fragment).
    pub layout: Layout,
    pub consts: Vec<(&'static str, u32)>,
    /// `f32` constants as `f32::to_bits`.
    pub floats: Vec<(&'static str, u32)>,
}

impl Spec {
    pub fn new(kernel: Kernel) -> Spec {
        Spec { kernel, wtype: None, layout: Layout::Gguf, consts: Vec::new(), floats: Vec::new() }
    }
    /// The weight type `w` a kernel reads, from a buffer holding the matrix in `layout`.
    pub fn weights_in(mut self, w: WType, layout: Layout) -> Spec {
        self.wtype = Some(w);
        self.layout = layout;
        self
    }
    pub fn with(mut self, name: &'static str, value: u32) -> Spec {
        self.consts.retain(|(n, _)| *n != name);
        self.consts.push((name, value));
        self.consts.sort();
        self
    }
    pub fn get(&self, name: &str) -> Option<u32> {
        self.consts.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
    /// An `f32` constant (finite: it is written as a decimal literal).
    pub fn with_f32(mut self, name: &'static str, value: f32) -> Spec {
        assert!(value.is_finite(), "f32 constant {name} = {value} is not finite");
        self.floats.retain(|(n, _)| *n != name);
        self.floats.push((name, value.to_bits()));
        self.floats.sort();
        self
    }
    pub fn get_f32(&self, name: &str) -> Option<f32> {
        self.floats.iter().find(|(n, _)| *n == name).map(|(_, v)| f32::from_bits(*v))
    }

    /// The complete WGSL source for this spec; `f16` selects the storage aliases.
    pub fn source(&self, f16: bool) -> String {
        let mut s = String::new();
        if f16 {
            s.push_str("enable f16;\nalias kv_t = f16;\nalias kv4_t = vec4<f16>;\n");
        } else {
            s.push_str("alias kv_t = f32;\nalias kv4_t = vec4<f32>;\n");
        }
        for (name, v) in &self.consts {
            s.push_str(&format!("const {name}: u32 = {v}u;\n"));
        }
        for (name, v) in &self.floats {
            s.push_str(&format!("const {name}: f32 = {};\n", f32_literal(f32::from_bits(*v))));
        }
        if self.kernel.fragments().contains(&ATTN_CORE) {
            if self.get(WINDOW).is_none() {
                s.push_str(&format!("const {WINDOW}: u32 = 0u;\n"));
            }
            if self.get_f32(SOFTCAP).is_none() {
                s.push_str(&format!("const {SOFTCAP}: f32 = {};\n", f32_literal(0.0)));
            }
        }
        s.push_str(STEP);
        for f in self.kernel.fragments() {
            s.push_str(f);
            s.push('\n');
        }
        if let Some((k, v)) = self.kernel.reads_cache() {
            match self.get(KIVI) {
                Some(_) => s.push_str(&kivi_reader(k, v, self.kernel)),
                None => s.push_str(&kv_reader(self.get(KVQ).unwrap_or(0), k, v)),
            }
        } else if matches!(self.kernel, Kernel::KiviAppend | Kernel::KiviPack | Kernel::KiviRepack) {
            s.push_str(HALF);
            s.push_str(KIVI_FORMAT);
            if self.kernel != Kernel::KiviAppend {
                s.push_str(KIVI_QUANT);
            }
        } else if self.kernel == Kernel::KvQuant {
            s.push_str(HALF);
            s.push_str(KV_FORMAT);
            s.push_str(KV_HADAMARD);
        } else if self.kernel == Kernel::KvRotate {
            s.push_str(KV_HADAMARD);
        }
        if let Some(w) = self.wtype {
            s.push_str(QUANT_COMMON);
            s.push('\n');
            s.push_str(w.fragment_in(self.layout));
            s.push('\n');
        }
        if matches!(self.kernel, Kernel::Matvec | Kernel::MatvecQkv | Kernel::MatvecGlu | Kernel::MatmulRows | Kernel::MatmulWords) {
            s.push_str(if self.get("XU") == Some(1) { MATVEC_X_UNIFORM } else { MATVEC_X_STORAGE });
        }
        if matches!(self.kernel, Kernel::Matvec | Kernel::MatvecQkv | Kernel::MatvecGlu) {
            s.push_str(MATVEC_ROWS);
        }
        if self.kernel == Kernel::MatvecQkv {
            s.push_str(if self.get("BIAS") == Some(1) { QKV_BIAS } else { QKV_NO_BIAS });
        }
        let norm = self.get("NORM") == Some(1);
        if self.kernel == Kernel::Matvec {
            s.push_str(if norm { NORM_OUT } else { NORM_OUT_NONE });
        }
        if matches!(self.kernel, Kernel::MatvecQkv | Kernel::MatvecGlu) {
            s.push_str(if norm { NORM_IN } else { NORM_IN_NONE });
        }
        s.push_str(self.kernel.source());
        if self.kernel == Kernel::AttnDecodeBatch {
            s.push_str(&batch_caches(self.get(BATCH).unwrap_or(1)));
        }
        if self.kernel == Kernel::MatmulWords {
            s.push_str(&words_main(self.wtype, self.get("TR").unwrap_or(8) / 8, self.get("MT").unwrap_or(1)));
        }
        if self.kernel == Kernel::Rope {
            // After the kernel: the accessors use its bindings.
            s.push_str(if self.get("K2") == Some(1) { ROPE_TWO } else { ROPE_ONE });
            s.push_str(if self.get("POS") == Some(1) { ROPE_POS_TABLE } else { ROPE_POS_STEP });
        }
        s
    }
}

/// A WGSL literal of exactly `v` (finite): Rust's shortest round-trip
/// decimal with the `f` suffix, which WGSL reads as an f32 directly (no
/// detour through an abstract float that could round twice).
pub fn f32_literal(v: f32) -> String {
    format!("{v:?}f")
}

/// Pipeline cache of one device; `Gpu::pipeline` compiles what is missing.
pub struct Registry {
    f16: bool,
    cache: Mutex<HashMap<Spec, Arc<wgpu::ComputePipeline>>>,
}

impl Registry {
    pub fn new(f16: bool) -> Registry {
        Registry { f16, cache: Mutex::new(HashMap::new()) }
    }

    pub fn f16(&self) -> bool {
        self.f16
    }

    /// The cached pipeline for `spec`, if it was built.
    pub fn get(&self, spec: &Spec) -> Option<Arc<wgpu::ComputePipeline>> {
        self.cache.lock().unwrap().get(spec).cloned()
    }

    /// Keep `pipeline` as `spec`'s; returns the one kept (the first, when
    /// two threads built it at once).
    pub fn insert(&self, spec: &Spec, pipeline: wgpu::ComputePipeline) -> Arc<wgpu::ComputePipeline> {
        self.cache.lock().unwrap().entry(spec.clone()).or_insert_with(|| Arc::new(pipeline)).clone()
    }

    pub fn len(&self) -> usize {
        self.cache.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One recorded kernel launch: pipeline, bind group (built once) and grid.
/// `Gpu::dispatch` builds it and `Gpu::record` records it into a pass.
pub struct Dispatch {
    pub kernel: Kernel,
    /// The weight type the kernel reads, if any (profiles group by it).
    pub wtype: Option<WType>,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// The weight matrix a matvec or matmul streams: (rows, cols, bytes).
    pub weights: Option<(u32, u32, u64)>,
}

impl Dispatch {
    /// The kernel class for profiles: the kernel name, plus the weight type
    /// it reads and, for a weight matrix, its `rows×cols`.
    pub fn class(&self) -> String {
        match (self.wtype, self.weights) {
            (Some(w), Some((rows, cols, _))) => format!("{} {} {rows}×{cols}", self.kernel.name(), w.name()),
            (Some(w), None) => format!("{} {}", self.kernel.name(), w.name()),
            _ => self.kernel.name().to_string(),
        }
    }

    /// This dispatch streams a `rows × cols` matrix of `wtype` (profiles
    /// report its bytes per second).
    pub fn reading(mut self, rows: u32, cols: u32) -> Dispatch {
        let bytes = self.wtype.map_or(0, |w| rows as u64 * w.row_bytes(cols as usize) as u64);
        self.weights = Some((rows, cols, bytes));
        self
    }
}

/// Split `n` workgroups into a 2-D grid that respects the 65535 per-dimension
/// limit; kernels recover the linear id as `id.x + id.y * 65535u * WG`.
pub fn grid_1d(n: u32) -> [u32; 3] {
    if n <= 65535 { [n, 1, 1] } else { [65535, n.div_ceil(65535), 1] }
}
