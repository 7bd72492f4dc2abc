// rope: rotary position embedding, in place on x[n_tokens, n_heads * head_dim]
// (q with the query heads, k with the KV heads). Token t sits at position
// token_pos(t) (step.pos + t, or with POS = 1 positions[t]); pair j of
// every head (j < rot_dim / 2) is rotated by
//   theta_j = pos * base^(-2j / rot_dim);
// dims >= rot_dim are left untouched (partial rotary).
//
// Layout (prelude const ROPE_HALF):
//   0: GGUF / llama.cpp "normal": interleaved pairs (x[2j], x[2j + 1]);
//   1: Hugging Face / NeoX: half-split pairs (x[j], x[j + rot_dim / 2]).
//
// Precision: a naive f32 angle pos * inv_freq is off by up to ~6e-4 rad at
// pos 8191 (one f32 rounding of an angle near 8191 rad is 2.4e-4 rad, and the
// rounded inv_freq contributes as much again): 1.2e-3 error on |x| <= 2. Instead the angle is carried
// in turns (theta / 2pi) and reduced exactly: the host gives each pair's
// frequency in turns split as hi + mid + lo (hi and mid with 12 significant
// bits each, computed in f64), and the position is split as p1 + p0 (p1 a
// multiple of 4096, p0 < 4096), so p1 * hi, p0 * hi, p1 * mid and p0 * mid
// are exact in f32, and so are their fractional parts; the lo products are
// below 2^-24 of the angle. Partial sums are folded to [-0.5, 0.5] turns as
// they go. The angle in [-pi, pi] is then good to ~1e-6 rad for any
// position below 2^24, and sin/cos are at their most accurate there.
//
// With K2 = 1 one dispatch rotates q and k together: the keys' p.k_heads
// heads ([n_tokens, k_heads * head_dim] in x2) follow the queries' n_heads
// in the grid, each rotated exactly as a dispatch of its own would.
//
// Bindings: x (read_write), freqs (read: [rot_dim / 2] vec4 (hi, mid, lo, 0)
// in turns), params, step (ops::Step); with K2, x2 (read_write, binding 4);
// with POS, positions (read, binding 5: [max_tokens] u32).
// `load_x`/`store_x` (kernels.rs) read and write buffer 0 (x) or 1 (x2);
// `token_pos` (kernels.rs) gives token t's position.
// Prelude consts: WG (workgroup size), ROPE_HALF (layout), K2, POS.
// Grid: one invocation per (token, head, pair) for max_tokens tokens, as a
// grid_1d; invocations of tokens >= step.n_tokens exit at once.

struct Params { n_heads: u32, head_dim: u32, rot_dim: u32, max_tokens: u32, k_heads: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> freqs: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> st: Step;

const TWO_PI: f32 = 6.283185307179586;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let n_pairs = p.rot_dim / 2u;
    let per_token = (p.n_heads + p.k_heads) * n_pairs;
    let t = i / per_token;
    if (t >= p.max_tokens || t >= st.n_tokens) {
        return;
    }
    let r = i - t * per_token;
    var h = r / n_pairs;
    let j = r - h * n_pairs;
    // Query heads first, then (K2) the key heads in x2.
    var buf = 0u;
    var heads = p.n_heads;
    if (h >= p.n_heads) {
        buf = 1u;
        h -= p.n_heads;
        heads = p.k_heads;
    }

    let pos = token_pos(t);
    let p0 = pos & 4095u;
    let p1 = f32(pos - p0);
    let p0f = f32(p0);
    let f = freqs[j];
    // fract of exact products (12-bit x 12-bit significands) is exact.
    var a = fract(p1 * f.x) + fract(p0f * f.x);
    a -= round(a);
    var b = fract(p1 * f.y) + fract(p0f * f.y) + (p1 * f.z + p0f * f.z);
    b -= round(b);
    var turns = a + b;
    turns -= round(turns);
    let angle = turns * TWO_PI;
    let c = cos(angle);
    let s = sin(angle);

    let base = t * heads * p.head_dim + h * p.head_dim;
    var i0 = base + 2u * j;
    var i1 = i0 + 1u;
    if (ROPE_HALF != 0u) {
        i0 = base + j;
        i1 = i0 + n_pairs;
    }
    let x0 = load_x(buf, i0);
    let x1 = load_x(buf, i1);
    store_x(buf, i0, x0 * c - x1 * s);
    store_x(buf, i1, x0 * s + x1 * c);
}
