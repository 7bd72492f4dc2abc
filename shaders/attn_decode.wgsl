// attn_decode: first half of flash-decoding for one query token (the single
// token of a decode step, at slot kv_len - 1) against the kv_len =
// step.kv_len cache slots it sees: lo .. kv_len, lo = attn_window_lo(kv_len -
// 1) (0 without a window).
//
// Those slots are cut into chunks of L = min(CHUNK, roundup(ceil((kv_len -
// lo) / n_split), WG)) slots; chunk c covers [lo + c * L, min(lo + (c + 1) *
// L, kv_len)). L is derived here (and nowhere else) from step.kv_len, so the
// grid and bind group stay fixed while kv_len grows; chunks past kv_len are
// empty. A
// workgroup serves one (chunk, KV head) pair and all GROUP query heads that
// share the KV head, so every K and V element of the chunk is read from
// memory once for the whole group.
//
// Phases: (1) each invocation scores whole keys (K row read once, dotted with
// every head of the group) into shared `sc`; (2) tree max m per head; (3) sc
// becomes p = exp(s - m); (4) invocation (part, d) sums p * V over the
// chunk's slots j = part (mod P), P = WG / (HEAD_DIM / 4), for 4 dims of every
// head of the group. Each (head, chunk, part) is one partial softmax state
//   m = max over the chunk of s_j,  l = sum_j p_j,  o = sum_j p_j V_j,
//   s_j = attn_score(scale * q . K_j),  p_j = exp(s_j - m)   (j in the part's slots)
// written to part_ml / part_o; attn_merge combines all n_split * P of them
// per head. An empty chunk writes the neutral state m = -1e30, l = 0 (its
// part_o is not written: the merge never reads o where l = 0).
//
// Layout: q [n_heads][HEAD_DIM] f32 (row 0 of the q buffer); caches
// [n_kv_heads][max_seq][HEAD_DIM] kv_t (read as kv4_t);
// part_o [n_heads][part_stride][HEAD_DIM] f32; part_ml [n_heads][part_stride]
// (m, l): head h's state of (chunk c, part) at h * part_stride + c * P + part
// (part_stride >= n_split * P; Mustafar's blocks fill the parts after them).
// Bindings: q (read), k_cache (read), v_cache (read), part_o (read_write),
// part_ml (read_write), params, step (ops::Step).
// Prelude consts: WG (a power of two), HEAD_DIM (a multiple of 4, at most
// 4 * WG), GROUP (query heads per KV head), CHUNK (max slots per chunk, a
// multiple of WG); SOFTCAP, WINDOW (attn_core.wgsl).
// Shared memory: 4 * GROUP * (HEAD_DIM + CHUNK + WG) bytes (4.5 KiB for the
// real model: GROUP 3, HEAD_DIM 64, CHUNK 256).
// Grid: (n_split, n_kv_heads, 1) with n_split * CHUNK >= max_seq.

struct Params {
    n_heads: u32, max_seq: u32, n_split: u32, scale: f32,
    part_stride: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> v_cache: array<kvw_t>;
@group(0) @binding(3) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;
const P: u32 = WG / D4; // key parts of phase (4)

var<workgroup> qs: array<vec4<f32>, GROUP * D4>;
var<workgroup> sc: array<f32, GROUP * CHUNK>;
var<workgroup> red: array<f32, GROUP * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let kvh = wid.y;
    let h0 = kvh * GROUP;
    let kv_len = min(step.kv_len, p.max_seq);
    let lo = min(attn_window_lo(kv_len - 1u), kv_len); // kv_len 0: no slots
    let per = (kv_len - lo + p.n_split - 1u) / p.n_split;
    let len = min(CHUNK, (per + WG - 1u) / WG * WG);
    let s0 = lo + c * len;
    let s1 = min(s0 + len, kv_len);

    if (s0 >= s1) {
        // Neutral partials; attn_merge never reads part_o where l == 0.
        for (var i = lid.x; i < GROUP * P; i += WG) {
            part_ml[(h0 + i / P) * p.part_stride + c * P + i % P] = vec2<f32>(NEG, 0.0);
        }
        return;
    }
    let n = s1 - s0;
    let r0 = kvh * p.max_seq + s0; // the chunk's first cache row

    for (var i = lid.x; i < GROUP * D4; i += WG) {
        qs[i] = q[h0 * D4 + i] * p.scale;
    }
    workgroupBarrier();

    // (1) scores, one key per invocation at a time; running max per head.
    var mx: array<f32, GROUP>;
    for (var g = 0u; g < GROUP; g++) {
        mx[g] = NEG;
    }
    for (var j = lid.x; j < n; j += WG) {
        var dp: array<vec4<f32>, GROUP>;
        for (var g = 0u; g < GROUP; g++) {
            dp[g] = vec4<f32>(0.0);
        }
        for (var d = 0u; d < D4; d++) {
            let k = kv_k(r0 + j, d);
            for (var g = 0u; g < GROUP; g++) {
                dp[g] += qs[g * D4 + d] * k;
            }
        }
        for (var g = 0u; g < GROUP; g++) {
            let s = attn_score(dp[g].x + dp[g].y + dp[g].z + dp[g].w);
            sc[g * CHUNK + j] = s;
            mx[g] = max(mx[g], s);
        }
    }

    // (2) chunk max per head.
    for (var g = 0u; g < GROUP; g++) {
        red[g * WG + lid.x] = mx[g];
    }
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid.x < w) {
            for (var g = 0u; g < GROUP; g++) {
                red[g * WG + lid.x] = max(red[g * WG + lid.x], red[g * WG + lid.x + w]);
            }
        }
        workgroupBarrier();
    }

    // (3) scores -> unnormalised probabilities.
    for (var i = lid.x; i < GROUP * n; i += WG) {
        let g = i / n;
        let j = i % n;
        sc[g * CHUNK + j] = exp(sc[g * CHUNK + j] - red[g * WG]);
    }
    workgroupBarrier();

    // (4) p @ V: invocation (part, d) owns 4 output dims of every head of the
    // group over the chunk's slots j = part (mod P), so each V element is read
    // once; the P part sums go to scratch separately (same m) and attn_merge
    // adds them. The d == 0 invocations also sum p.
    let d = lid.x % D4;
    let part = lid.x / D4;
    if (part >= P) {
        return; // WG not a multiple of HEAD_DIM / 4: spare invocations
    }
    var acc: array<vec4<f32>, GROUP>;
    var l: array<f32, GROUP>;
    for (var g = 0u; g < GROUP; g++) {
        acc[g] = vec4<f32>(0.0);
        l[g] = 0.0;
    }
    for (var j = part; j < n; j += P) {
        let v = kv_v(r0 + j, d);
        for (var g = 0u; g < GROUP; g++) {
            let pj = sc[g * CHUNK + j];
            acc[g] += pj * v;
            l[g] += pj;
        }
    }
    for (var g = 0u; g < GROUP; g++) {
        let slot = (h0 + g) * p.part_stride + c * P + part;
        part_o[slot * D4 + d] = acc[g];
        if (d == 0u) {
            part_ml[slot] = vec2<f32>(red[g * WG], l[g]);
        }
    }
}
