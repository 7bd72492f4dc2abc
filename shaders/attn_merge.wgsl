// attn_merge: second half of flash-decoding. Combines the n_parts partial
// softmax states (m, l, o) attn_decode left per query head h (n_split chunks
// x P key subsets) with the log-sum-exp rule:
//   M = max_c m_c,  L = sum_c l_c exp(m_c - M),
//   out[h] = sum_c exp(m_c - M) o_c / L,   lse[h] = M + ln(L).
// lse[h] is the log-sum-exp of the whole decode softmax, so the attention
// probability of slot j is exp(scale * q_h . K_j - lse[h]) (what H2O/VATP-
// style eviction policies accumulate). Partials with l = 0 (empty chunks)
// are skipped, their o unread. With no slot at all (kv_len = 0) out is 0
// and lse is -1e30.
//
// Layout: part_o [n_heads][n_parts][HEAD_DIM]; part_ml [n_heads][n_parts]
// (m, l); out [n_heads][HEAD_DIM] f32 (row 0 of the output buffer);
// lse [n_heads] f32.
// Bindings: part_o (read), part_ml (read), out (read_write), lse
// (read_write), params.
// Prelude consts: WG (workgroup size), HEAD_DIM (a multiple of 4).
// Grid: one invocation per (head, 4 dims): ceil(n_heads * HEAD_DIM / 4 / WG)
// workgroups; each invocation recomputes its head's M and L (n_parts is
// small: 4 * 32 for the real model at 8192 slots).

struct Params { n_heads: u32, n_parts: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> part_o: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const D4: u32 = HEAD_DIM / 4u;
const NEG: f32 = -1.0e30;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n_heads * D4) {
        return;
    }
    let h = i / D4;
    let d = i % D4;
    let first = h * p.n_parts;

    var m_all = NEG;
    for (var c = 0u; c < p.n_parts; c++) {
        m_all = max(m_all, part_ml[first + c].x);
    }
    var l_all = 0.0;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.n_parts; c++) {
        let ml = part_ml[first + c];
        if (ml.y > 0.0) {
            let w = exp(ml.x - m_all);
            l_all += ml.y * w;
            acc += w * part_o[(first + c) * D4 + d];
        }
    }
    if (l_all > 0.0) {
        out[i] = acc / l_all;
    } else {
        out[i] = vec4<f32>(0.0);
    }
    if (d == 0u) {
        lse[h] = select(NEG, m_all + log(l_all), l_all > 0.0);
    }
}
