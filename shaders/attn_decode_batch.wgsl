// attn_decode_batch: kv_append and attn_decode_lanes for the BATCH sequences
// of a batched decode step at once (one token each, each with its own dense
// cache), so that a layer's attention is one dispatch for all of them (and
// attn_merge one more) instead of three per sequence. Per sequence b = wid.z,
// the same chunking and partial-state contract as attn_decode_lanes:
//   kv_len_b = min(seqs.s[b].x, seqs.s[b].y) slots of its cache (this
//   step's token at slot kv_len_b - 1), max_seq_b = seqs.s[b].y; chunks of
//   L = min(CHUNK, roundup(ceil((kv_len_b - lo) / n_split), LANES)) slots,
//   chunk c covering [lo + c L, min(lo + (c + 1) L, kv_len_b)), lo =
//   attn_window_lo(kv_len_b - 1).
// Query row r = b * n_heads + h (the batch's token b, head h) writes its
// partial state of chunk c to part index r * part_stride + c (part_stride >=
// n_split), which attn_merge combines per row as it does a one-token step's.
//
// The append is folded in: the lane that meets the step's own slot (the
// last) takes its K/V row from k_new / v_new, rounded to kv_t as the cache
// stores it, and the chunk-0 workgroups store it in the cache; no workgroup
// reads that slot from the cache, so the store races with nothing.
//
// WGSL cannot index bindings: kernels.rs generates the cache bindings and
// kv_k(b, r, d) / kv_v(b, r, d) / store_kv(b, i, k, v), a switch on b each.
// (A copy of the whole body per sequence, behind one switch on wid.z, ran 3x
// slower on lavapipe, which runs every case under a mask.)
//
// Layout: q [BATCH][n_heads][HEAD_DIM] f32; k_new, v_new [BATCH][n_kv_heads]
// [HEAD_DIM] f32; cache b [n_kv_heads][max_seq_b][HEAD_DIM] kv_t (as kv4_t),
// K at binding 7 + 2 b, V at 8 + 2 b; part_o [rows][part_stride][HEAD_DIM]
// f32; part_ml [rows][part_stride] (m, l).
// Bindings: q, k_new, v_new (read), part_o, part_ml (read_write), params,
// seqs (uniform: per sequence its cache's (kv_len, max_seq, 0, 0)), then the
// caches (read_write).
// Prelude consts: LANES, HEAD_DIM (a multiple of 4), GROUP, CHUNK, BATCH
// (cache binding pairs: a power of two, those past the grid's sequences
// repeat the last one's and are never touched); SOFTCAP, WINDOW
// (attn_core.wgsl).
// Grid: (n_split, n_kv_heads, sequences <= BATCH) with n_split * CHUNK >=
// every max_seq_b.

struct Params {
    n_heads: u32, n_kv_heads: u32, n_split: u32, part_stride: u32,
    scale: f32, _p0: u32, _p1: u32, _p2: u32,
}

struct Seqs { s: array<vec4<u32>, BATCH> }

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_new: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> seqs: Seqs;

const D4: u32 = HEAD_DIM / 4u;

var<workgroup> wml: array<vec2<f32>, LANES>;
var<workgroup> wacc: array<vec4<f32>, LANES * D4>;

// The step's own row of K (or V) at vec4 d, as the cache stores it.
fn new_row(k: bool, b: u32, kvh: u32, d: u32) -> vec4<f32> {
    let i = (b * p.n_kv_heads + kvh) * D4 + d;
    return vec4<f32>(kv4_t(select(v_new[i], k_new[i], k)));
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    let kvh = wid.y;
    let b = wid.z;
    let h0 = kvh * GROUP;
    let max_seq = seqs.s[b].y;
    let kv_len = min(seqs.s[b].x, max_seq);
    let lo = min(attn_window_lo(kv_len - 1u), kv_len); // kv_len 0: no slots
    let per = (kv_len - lo + p.n_split - 1u) / p.n_split;
    let len = min(CHUNK, (per + LANES - 1u) / LANES * LANES);
    let s0 = lo + c * len;
    let s1 = min(s0 + len, kv_len);
    let r0 = b * p.n_heads + h0; // the sequence's first query row of the group
    let head = kvh * max_seq;
    if (c == 0u && kv_len > 0u) {
        for (var d = lane; d < D4; d += LANES) {
            store_kv(b, (head + kv_len - 1u) * D4 + d, kv4_t(new_row(true, b, kvh, d)), kv4_t(new_row(false, b, kvh, d)));
        }
    }
    if (s0 >= s1) {
        // An empty chunk (most of them while the cache is short): the neutral
        // state at once, uniformly across the workgroup, no barrier to pass.
        for (var g = lane; g < GROUP; g += LANES) {
            let part = (r0 + g) * p.part_stride + c;
            part_ml[part] = vec2<f32>(NEG, 0.0);
            for (var d = 0u; d < D4; d++) {
                part_o[part * D4 + d] = vec4<f32>(0.0);
            }
        }
        return;
    }

    var qr: array<vec4<f32>, GROUP * D4>;
    for (var i = 0u; i < GROUP * D4; i++) {
        qr[i] = q[r0 * D4 + i] * p.scale;
    }
    var acc: array<vec4<f32>, GROUP * D4>;
    var m: array<f32, GROUP>;
    var l: array<f32, GROUP>;
    for (var g = 0u; g < GROUP; g++) {
        m[g] = NEG;
    }
    for (var j = s0 + lane; j < s1; j += LANES) {
        let row = head + j;
        let own = j + 1u == kv_len;
        var dp: array<vec4<f32>, GROUP>;
        for (var d = 0u; d < D4; d++) {
            let k = select(kv_k(b, row, d), new_row(true, b, kvh, d), own);
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
            let v = select(kv_v(b, row, d), new_row(false, b, kvh, d), own);
            for (var g = 0u; g < GROUP; g++) {
                acc[g * D4 + d] = acc[g * D4 + d] * alpha[g] + pj[g] * v;
            }
        }
    }
    // Combine the lanes' states per head into the chunk's one partial.
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
        let part = (r0 + g) * p.part_stride + c;
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
