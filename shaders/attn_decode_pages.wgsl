// attn_decode_pages: flash-decoding over the pages quest_select listed, the
// first half (partial softmax states for attn_merge), for the single query
// token of a decode step. Unit u (query heads u * UNIT .. u * UNIT + UNIT - 1,
// KV head (u * UNIT) / GROUP) attends the n_sel = min(n_pages, budget_pages)
// pages list[u][0 .. n_sel], n_pages = ceil(kv_len / PAGE); slots of a page
// the query (at slot kv_len - 1) does not see (attn_sees: at or past kv_len,
// in the partial current page, or before the window) are skipped.
//
// The selected slots form a virtual range v = e * PAGE + o (entry e, offset
// o), split into n_split chunks of L = roundup(ceil(n_sel * PAGE / n_split),
// LANES) virtual slots; in a workgroup (chunk c, unit u) lane i walks
// c * L + i, + LANES, ... with one online softmax per head of the unit, the
// same lane structure as attn_decode_lanes. Each (head, chunk, lane) writes
// a partial state at part index (h * n_split + c) * LANES + lane:
//   m = max_j s_j,  l = sum_j exp(s_j - m),  o = sum_j exp(s_j - m) V_j,
//   s_j = attn_score(scale * q_h . K_j),
// a lane without slots writes m = -1e30, l = 0 (o unwritten).
//
// Layout: q [n_heads][HEAD_DIM] f32 (row 0); caches [n_kv_heads][max_seq]
// [HEAD_DIM] kv_t (read as kv4_t); list [n_units][budget_pages] u32; part_o
// [n_heads][n_split][LANES][HEAD_DIM] f32; part_ml [n_heads][n_split][LANES].
// Bindings: q (read), k_cache (read), v_cache (read), list (read), part_o
// (read_write), part_ml (read_write), params, step (ops::Step).
// Prelude consts: LANES, HEAD_DIM (a multiple of 4), PAGE, GROUP (query heads
// per KV head), UNIT (query heads per selection: 1 or GROUP); SOFTCAP,
// WINDOW (attn_core.wgsl).
// Grid: (n_split, n_units, 1).

struct Params {
    max_seq: u32, budget_pages: u32, n_split: u32, scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> v_cache: array<kvw_t>;
@group(0) @binding(3) var<storage, read> list: array<u32>;
@group(0) @binding(4) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wid.x;
    let u = wid.y;
    let h0 = u * UNIT;
    let kvh = h0 / GROUP;
    let kv_len = min(step.kv_len, p.max_seq);
    let n_pages = (kv_len + PAGE - 1u) / PAGE;
    let n_virt = min(n_pages, p.budget_pages) * PAGE;
    let per = (n_virt + p.n_split - 1u) / p.n_split;
    let len = (per + LANES - 1u) / LANES * LANES;
    let v0 = c * len;
    let v1 = min(v0 + len, n_virt);

    var qr: array<vec4<f32>, UNIT * D4>;
    for (var i = 0u; i < UNIT * D4; i++) {
        qr[i] = q[h0 * D4 + i] * p.scale;
    }
    var acc: array<vec4<f32>, UNIT * D4>;
    var m: array<f32, UNIT>;
    var l: array<f32, UNIT>;
    for (var g = 0u; g < UNIT; g++) {
        m[g] = NEG;
    }
    let head = kvh * p.max_seq;
    let lb = u * p.budget_pages;
    for (var j = v0 + lane; j < v1; j += LANES) {
        let slot = list[lb + j / PAGE] * PAGE + j % PAGE;
        if (!attn_sees(kv_len - 1u, slot)) {
            continue; // (the loop is empty when kv_len is 0)
        }
        let row = head + slot;
        var dp: array<vec4<f32>, UNIT>;
        for (var d = 0u; d < D4; d++) {
            let k = kv_k(row, d);
            for (var g = 0u; g < UNIT; g++) {
                dp[g] += qr[g * D4 + d] * k;
            }
        }
        var alpha: array<f32, UNIT>;
        var pj: array<f32, UNIT>;
        for (var g = 0u; g < UNIT; g++) {
            let s = attn_score((dp[g].x + dp[g].y) + (dp[g].z + dp[g].w));
            let u = online_push(m[g], l[g], s, true);
            alpha[g] = u.alpha;
            pj[g] = u.p;
            l[g] = u.l;
            m[g] = u.m;
        }
        for (var d = 0u; d < D4; d++) {
            let v = kv_v(row, d);
            for (var g = 0u; g < UNIT; g++) {
                acc[g * D4 + d] = acc[g * D4 + d] * alpha[g] + pj[g] * v;
            }
        }
    }
    for (var g = 0u; g < UNIT; g++) {
        let part = ((h0 + g) * p.n_split + c) * LANES + lane;
        part_ml[part] = vec2<f32>(m[g], l[g]);
        if (l[g] > 0.0) {
            for (var d = 0u; d < D4; d++) {
                part_o[part * D4 + d] = acc[g * D4 + d];
            }
        }
    }
}
