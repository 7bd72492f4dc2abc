// attn_merge: second half of flash-decoding (and of attn_prefill_lanes).
// Combines the n_parts partial softmax states (m, l, o) a first half left per
// row r (a row is one (token, query head): decode has one token, so rows are
// heads; attn_decode's parts are n_split chunks x P key subsets) with the
// log-sum-exp rule:
//   M = max_c m_c,  L = sum_c l_c exp(m_c - M)  (running, one pass),
//   out[r] = sum_c exp(m_c - M) o_c / L,   lse[r] = M + ln(L).
// lse[r] is the log-sum-exp of the row's whole softmax, so the attention
// probability of slot j is exp(scale * q_r . K_j - lse[r]) (what H2O/VATP-
// style eviction policies accumulate). Partials with l = 0 (empty chunks)
// are skipped, their o unread. With no slot at all (kv_len = 0) out is 0
// and lse is -1e30.
//
// Only the call's rows are merged: r < min(step.n_tokens * n_heads,
// max_rows); rows past them are left untouched.
//
// Layout: part_o [rows][n_parts][HEAD_DIM]; part_ml [rows][n_parts] (m, l);
// out [rows][HEAD_DIM] f32; lse [rows] f32, rows = token * n_heads + head.
// Bindings: part_o (read), part_ml (read), out (read_write), lse
// (read_write), params, step (ops::Step).
// Prelude consts: WG (workgroup size), HEAD_DIM (a multiple of 4).
// Grid: one invocation per (row, 4 dims): ceil(max_rows * HEAD_DIM / 4 / WG)
// workgroups; each invocation recomputes its row's M and L (n_parts is
// small: 8 * 32 for the real model's decode at 8192 slots).

struct Params { n_heads: u32, n_parts: u32, max_rows: u32, _p: u32 }

@group(0) @binding(0) var<storage, read> part_o: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let rows = min(step.n_tokens * p.n_heads, p.max_rows);
    if (i >= rows * D4) {
        return;
    }
    let r = i / D4;
    let d = i % D4;
    let first = r * p.n_parts;

    // One online pass (one loop iteration per part: llvmpipe stops an
    // invocation's loops after 65535 in all, AttnShape::check bounds n_parts).
    var m_all = NEG;
    var l_all = 0.0;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.n_parts; c++) {
        let ml = part_ml[first + c];
        if (ml.y > 0.0) {
            let m_new = max(m_all, ml.x);
            let a = exp(m_all - m_new);
            let w = exp(ml.x - m_new);
            l_all = l_all * a + ml.y * w;
            acc = acc * a + w * part_o[(first + c) * D4 + d];
            m_all = m_new;
        }
    }
    if (l_all > 0.0) {
        out[i] = acc / l_all;
    } else {
        out[i] = vec4<f32>(0.0);
    }
    if (d == 0u) {
        lse[r] = select(NEG, m_all + log(l_all), l_all > 0.0);
    }
}
