// quest_score: Quest's criticality estimate of every full page for the
// single query token of a decode step. Selection unit u covers query heads
// u * UNIT .. u * UNIT + UNIT - 1 (UNIT = 1: each query head selects its own
// pages; UNIT = GROUP: the query heads of a KV head share one selection), all
// reading KV head (u * UNIT) / GROUP:
//   score[u, pg] = sum_{h in u} sum_i max(q[h, i] * kmax[pg, i], q[h, i] * kmin[pg, i])
// an upper bound of q_h . k over the page's keys whatever the signs of q.
// That bound is the box's centre term plus its width term,
//   q_i * (kmax_i + kmin_i) / 2 + |q_i| * (kmax_i - kmin_i) / 2,
// and p.width weighs the width term: 1 is the bound (computed as the max
// above), 0 ranks pages by q . centre alone (see kv::selection::quest).
// Scored pages: pg < n_pages - 1 with n_pages = ceil(kv_len / PAGE), and only
// when n_pages > BUDGET_PAGES (else every page is attended and nothing is
// written). The last (current, maybe partial) page is never scored: it is
// always attended. q is the rotated, unscaled query (scaling is irrelevant
// for ranking).
//
// Layout: q [n_heads][HEAD_DIM] f32 (row 0); kmax, kmin [n_kv_heads]
// [max_pages][HEAD_DIM] kv_t; score [n_units][max_pages] f32.
// Bindings: q (read), kmax (read), kmin (read), score (read_write), params,
// step (ops::Step).
// Prelude consts: WG, HEAD_DIM (a multiple of 4), PAGE, GROUP (query heads per
// KV head), UNIT (query heads per selection: 1 or GROUP).
// Grid: (ceil(max_pages / WG), n_units, 1).

struct Params { max_seq: u32, max_pages: u32, budget_pages: u32, width: f32 }

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kmax: array<kv4_t>;
@group(0) @binding(2) var<storage, read> kmin: array<kv4_t>;
@group(0) @binding(3) var<storage, read_write> score: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pg = gid.x;
    let u = wid.y;
    let kv_len = min(step.kv_len, p.max_seq);
    let n_pages = (kv_len + PAGE - 1u) / PAGE;
    if (n_pages <= p.budget_pages || pg + 1u >= n_pages) {
        return;
    }
    let h0 = u * UNIT;
    let mo = ((h0 / GROUP) * p.max_pages + pg) * D4;
    var acc = vec4<f32>(0.0);
    if (p.width == 1.0) {
        for (var h = 0u; h < UNIT; h++) {
            let qo = (h0 + h) * D4;
            for (var d = 0u; d < D4; d++) {
                let qv = q[qo + d];
                acc += max(qv * vec4<f32>(kmax[mo + d]), qv * vec4<f32>(kmin[mo + d]));
            }
        }
    } else {
        for (var h = 0u; h < UNIT; h++) {
            let qo = (h0 + h) * D4;
            for (var d = 0u; d < D4; d++) {
                let qv = q[qo + d];
                let hi = vec4<f32>(kmax[mo + d]);
                let lo = vec4<f32>(kmin[mo + d]);
                acc += qv * ((hi + lo) * 0.5) + p.width * (abs(qv) * ((hi - lo) * 0.5));
            }
        }
    }
    score[u * p.max_pages + pg] = (acc.x + acc.y) + (acc.z + acc.w);
}
