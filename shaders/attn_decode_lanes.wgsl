// attn_decode_lanes: the CPU-adapter form of attn_decode (the first half of
// flash-decoding for the single query token of a decode step), with the same
// chunking and the same partial-state contract for attn_merge.
//
// A workgroup of LANES invocations serves one (chunk, KV head) pair and all
// GROUP query heads sharing the KV head. Lane i walks the chunk's slots
// s0 + i, s0 + i + LANES, ... keeping its own online-softmax state per head
// (running max m, sum l, output o): each K and V row is read once, by one
// lane, and used for the whole group. No workgroup memory, no barriers: on
// lavapipe a workgroup runs as one 8-wide SIMD loop, and the shared-memory
// phases and tree reductions of attn_decode cost more there than the
// arithmetic. At the end the lanes' states are combined per head through
// workgroup memory (LANES * HEAD_DIM / 4 vec4, one head at a time) into one
// partial state per (head, chunk):
//   m = max_j s_j,  l = sum_j exp(s_j - m),  o = sum_j exp(s_j - m) V_j,
//   s_j = attn_score(scale * q . K_j)   (j in the chunk's slots)
// written to part_ml / part_o at part index h * part_stride + c (part_stride
// >= n_split; Mustafar's blocks fill the parts after a head's chunks); a chunk without
// slots writes m = -1e30, l = 0 and o = 0.
//
// Chunks of the slots lo .. kv_len the query (at slot kv_len - 1) sees, lo =
// attn_window_lo(kv_len - 1) (0 without a window): L = min(CHUNK,
// roundup(ceil((kv_len - lo) / n_split), LANES)) slots, chunk c covers
// [lo + c * L, min(lo + (c + 1) * L, kv_len)); derived from step.kv_len here,
// so the grid and bind group stay fixed while kv_len grows.
// Layout: q [n_heads][HEAD_DIM] f32 (row 0); caches [n_kv_heads][max_seq]
// [HEAD_DIM] kv_t (read as kv4_t); part_o [n_heads][n_split][HEAD_DIM]
// f32; part_ml [n_heads][n_split] (m, l).
// Bindings: q (read), k_cache (read), v_cache (read), part_o (read_write),
// part_ml (read_write), params, step (ops::Step).
// Prelude consts: LANES (invocations per workgroup), HEAD_DIM (a multiple of
// 4), GROUP (query heads per KV head), CHUNK (max slots per chunk); SOFTCAP,
// WINDOW (attn_core.wgsl).
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

var<workgroup> wml: array<vec2<f32>, LANES>;
var<workgroup> wacc: array<vec4<f32>, LANES * D4>;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    let kvh = wid.y;
    let h0 = kvh * GROUP;
    let kv_len = min(step.kv_len, p.max_seq);
    let lo = min(attn_window_lo(kv_len - 1u), kv_len); // kv_len 0: no slots
    let per = (kv_len - lo + p.n_split - 1u) / p.n_split;
    let len = min(CHUNK, (per + LANES - 1u) / LANES * LANES);
    let s0 = lo + c * len;
    let s1 = min(s0 + len, kv_len);
    if (s0 >= s1) {
        // An empty chunk (most of them while the cache is short of its
        // slots): the neutral state at once, uniformly across the
        // workgroup, no barrier to pass.
        for (var g = lane; g < GROUP; g += LANES) {
            let part = (h0 + g) * p.part_stride + c;
            part_ml[part] = vec2<f32>(NEG, 0.0);
            for (var d = 0u; d < D4; d++) {
                part_o[part * D4 + d] = vec4<f32>(0.0);
            }
        }
        return;
    }

    var qr: array<vec4<f32>, GROUP * D4>;
    for (var i = 0u; i < GROUP * D4; i++) {
        qr[i] = q[h0 * D4 + i] * p.scale;
    }
    var acc: array<vec4<f32>, GROUP * D4>;
    var m: array<f32, GROUP>;
    var l: array<f32, GROUP>;
    for (var g = 0u; g < GROUP; g++) {
        m[g] = NEG;
    }
    let head = kvh * p.max_seq;
    for (var j = s0 + lane; j < s1; j += LANES) {
        let row = head + j;
        var dp: array<vec4<f32>, GROUP>;
        for (var d = 0u; d < D4; d++) {
            let k = kv_k(row, d);
            for (var g = 0u; g < GROUP; g++) {
                dp[g] += qr[g * D4 + d] * k;
            }
        }
        var alpha: array<f32, GROUP>;
        var pj: array<f32, GROUP>;
        for (var g = 0u; g < GROUP; g++) {
            let s = attn_score((dp[g].x + dp[g].y) + (dp[g].z + dp[g].w));
            let u = online_push(m[g], l[g], s, true);
            alpha[g] = u.alpha;
            pj[g] = u.p;
            l[g] = u.l;
            m[g] = u.m;
        }
        for (var d = 0u; d < D4; d++) {
            let v = kv_v(row, d);
            for (var g = 0u; g < GROUP; g++) {
                acc[g * D4 + d] = acc[g * D4 + d] * alpha[g] + pj[g] * v;
            }
        }
    }
    // Combine the lanes' states per head into the chunk's one partial
    // (fewer partials for attn_merge to read: one per chunk, not per lane).
    for (var g = 0u; g < GROUP; g++) {
        wml[lane] = vec2<f32>(m[g], l[g]);
        workgroupBarrier();
        var mx = NEG;
        for (var i = 0u; i < LANES; i++) {
            mx = max(mx, wml[i].x);
        }
        let w = select(0.0, exp(m[g] - mx), l[g] > 0.0);
        for (var d = 0u; d < D4; d++) {
            wacc[lane * D4 + d] = acc[g * D4 + d] * w;
        }
        workgroupBarrier();
        let part = (h0 + g) * p.part_stride + c;
        if (lane == 0u) {
            var lsum = 0.0;
            for (var i = 0u; i < LANES; i++) {
                let e = wml[i];
                if (e.y > 0.0) {
                    lsum += e.y * exp(e.x - mx);
                }
            }
            part_ml[part] = vec2<f32>(mx, lsum);
        }
        for (var d = lane; d < D4; d += LANES) {
            var o = vec4<f32>(0.0);
            for (var i = 0u; i < LANES; i++) {
                o += wacc[i * D4 + d];
            }
            part_o[part * D4 + d] = o;
        }
        workgroupBarrier(); // the next head reuses wml and wacc
    }
}
