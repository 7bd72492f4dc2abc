// evict_score: the score an eviction policy ranks one layer's cached slots
// by (higher is kept first), per KV head h and slot j < p.len:
//   mode 0 (h2o):    acc[h][j]                       accumulated attention
//   mode 1 (vatp):   acc[h][j] * sum_d |V[h][j][d]|  times the value's L1 norm
//   mode 2 (knorm):  -sqrt(sum_d K[h][j][d]^2)       low key norm kept first
//   mode 3 (max):    max of acc[h][j - r ..= j + r]  SnapKV's pooled window
//   mode 4 (avg):    sum of acc[h][j - r ..= j + r] / (2r + 1)  score
// Pooling runs over the prefix slots j < p.prefix only (the window slots
// past it are kept anyway): max ignores the slots outside, avg counts them
// as zeros (a zero-padded average, as torch's avg_pool1d).
//
// Layout: k_cache, v_cache [n_kv_heads][max_seq][HEAD_DIM] kv_t (as kv4_t);
// acc [n_kv_heads][max_seq] f32 (attn_accum's); score from p.out_base
// (this layer's rows of every layer's [layers][n_kv_heads][max_seq]).
// Bindings: k_cache, v_cache, acc (read), score (read_write), params.
// Prelude consts: WG, HEAD_DIM (a multiple of 4).
// Grid: (ceil(max_seq / WG), n_kv_heads, 1).

struct Params { max_seq: u32, len: u32, prefix: u32, mode: u32, radius: u32, out_base: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(1) var<storage, read> v_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> acc: array<f32>;
@group(0) @binding(3) var<storage, read_write> score: array<f32>;
// Params come in a storage buffer, not a uniform: lavapipe inlines small
// uniforms into the shader and compiles (and keeps) a variant per value, so
// per-cut values in a uniform grew its memory by megabytes per cut.
@group(0) @binding(4) var<storage, read> p: Params;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let h = gid.y;
    if (j >= min(p.len, p.max_seq)) {
        return;
    }
    let o = h * p.max_seq + j;
    var s = acc[o];
    if (p.mode == 1u) {
        var n = vec4<f32>(0.0);
        for (var d = 0u; d < D4; d++) {
            n += abs(kv_v(o, d));
        }
        s = acc[o] * ((n.x + n.y) + (n.z + n.w));
    } else if (p.mode == 2u) {
        var n = vec4<f32>(0.0);
        for (var d = 0u; d < D4; d++) {
            let k = kv_k(o, d);
            n += k * k;
        }
        s = -sqrt((n.x + n.y) + (n.z + n.w));
    } else if (p.mode >= 3u && j < p.prefix) {
        let lo = select(0u, j - p.radius, j > p.radius);
        let hi = min(j + p.radius + 1u, p.prefix);
        var m = acc[h * p.max_seq + lo];
        var sum = 0.0;
        for (var i = lo; i < hi; i++) {
            let a = acc[h * p.max_seq + i];
            m = max(m, a);
            sum += a;
        }
        s = select(m, sum / f32(2u * p.radius + 1u), p.mode == 4u);
    }
    score[p.out_base + o] = s;
}
