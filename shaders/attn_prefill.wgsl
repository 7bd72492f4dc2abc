// attn_prefill: causal grouped-query attention for a prefill chunk, flash-
// attention style. Query token t of the call (t < step.n_tokens) sits at slot
// at = step.kv_len - step.n_tokens + t and attends the slots j it sees
// (attn_sees: j <= at, and j > at - WINDOW with a window), read from the
// cache after this call's kv_append (so a later chunk sees the earlier ones):
//   out[t, h] = softmax_j(attn_score(scale * q[t, h] . K[kvh, j])) @ V[kvh, j],
//   kvh = h / group, group = n_heads / n_kv_heads
// (attn_score: the softcap, if any).
//
// Work split: a workgroup serves one KV head and WG consecutive "rows", a row
// being a (token, query head of the group) pair ordered token-major, so the
// group's heads and neighbouring tokens share every K/V tile. Each invocation
// owns one row: its scaled query and output accumulator live in registers.
// The keys are walked in tiles of BK slots: the workgroup stages the K and V
// tile in shared memory (converted to f32 once), then every row scores the
// tile, rescales its running (max, sum, output) once per tile (online
// softmax) and accumulates p * V. All arithmetic is f32.
//
// Layout: q [max_tokens][n_heads][HEAD_DIM] f32; caches
// [n_kv_heads][max_seq][HEAD_DIM] kv_t (read as kv4_t); out like q.
// lse [max_tokens][n_heads] f32: each row's log-sum-exp, so the attention
// probability of slot j is exp(attn_score(scale * q[t, h] . K[j]) - lse[t, h]) (what the
// eviction scores accumulate; attn_merge writes the same for the lanes kernel).
// Bindings: q (read), k_cache (read), v_cache (read), out (read_write), lse
// (read_write), params, step (ops::Step).
// Prelude consts: WG (rows per workgroup, a multiple of 4), HEAD_DIM (a
// multiple of 4), BK (keys per tile); SOFTCAP, WINDOW (attn_core.wgsl: with
// a window the tiles start at the first slot the workgroup's first token
// sees). Shared memory: 2 * BK * HEAD_DIM * 4
// bytes (8 KiB with BK * HEAD_DIM = 1024).
// Grid: (ceil(max_tokens * group / WG), n_kv_heads, 1); workgroups whose rows
// are all past step.n_tokens exit at once, rows past it write nothing.

struct Params {
    n_heads: u32, n_kv_heads: u32, max_seq: u32, group: u32,
    scale: f32, max_tokens: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> v_cache: array<kvw_t>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

var<workgroup> k_tile: array<vec4<f32>, BK * D4>;
var<workgroup> v_tile: array<vec4<f32>, BK * D4>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kvh = wid.y;
    let group = p.group;
    let n_tok = min(step.n_tokens, p.max_tokens);
    // Workgroup-uniform bounds: all barriers below sit in uniform control flow.
    let row0 = wid.x * WG;
    if (row0 / group >= n_tok || step.n_tokens > step.kv_len) {
        return;
    }
    let base = step.kv_len - step.n_tokens; // slots cached before this call
    let last_t = min((row0 + WG - 1u) / group, n_tok - 1u);
    let kv_end = min(base + last_t + 1u, p.max_seq); // keys any row here needs

    let row = row0 + lid.x;
    let t = row / group;
    let h = kvh * group + row % group;
    let live = t < n_tok;
    let lim = min(base + t, kv_end - 1u); // this row's slot, the last it may attend
    let kv_start = attn_window_lo(base + row0 / group); // first key any row here sees

    var qr: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var d = 0u; d < D4; d++) {
        qr[d] = vec4<f32>(0.0);
        acc[d] = vec4<f32>(0.0);
    }
    if (live) {
        let qo = (t * p.n_heads + h) * D4;
        for (var d = 0u; d < D4; d++) {
            qr[d] = q[qo + d] * p.scale;
        }
    }
    var m = NEG;
    var l = 0.0;

    let head_base = kvh * p.max_seq;
    for (var kb = kv_start; kb < kv_end; kb += BK) {
        for (var i = lid.x; i < BK * D4; i += WG) {
            let key = kb + i / D4;
            if (key < kv_end) {
                k_tile[i] = kv_k(head_base + key, i % D4);
                v_tile[i] = kv_v(head_base + key, i % D4);
            } else {
                k_tile[i] = vec4<f32>(0.0);
                v_tile[i] = vec4<f32>(0.0);
            }
        }
        workgroupBarrier();

        // Every row walks the same keys: uniform loop bounds make the tile
        // reads uniform (one broadcast load rather than a per-lane gather on
        // SIMD-style implementations such as lavapipe); keys past a row's
        // limit are masked instead. Rows past n_tokens compute with q = 0.
        let n_keys = min(BK, kv_end - kb);
        var s: array<f32, BK>;
        var tmax = NEG;
        for (var j = 0u; j < n_keys; j++) {
            var dp = vec4<f32>(0.0);
            for (var d = 0u; d < D4; d++) {
                dp += qr[d] * k_tile[j * D4 + d];
            }
            let sj = select(NEG, attn_score(dp.x + dp.y + dp.z + dp.w), attn_sees(lim, kb + j));
            s[j] = sj;
            tmax = max(tmax, sj);
        }
        let r = softmax_rescale(m, tmax);
        let m_new = r.x;
        let alpha = r.y;
        l *= alpha;
        for (var d = 0u; d < D4; d++) {
            acc[d] *= alpha;
        }
        for (var j = 0u; j < n_keys; j++) {
            let pj = select(0.0, exp(s[j] - m_new), attn_sees(lim, kb + j));
            l += pj;
            for (var d = 0u; d < D4; d++) {
                acc[d] += pj * v_tile[j * D4 + d];
            }
        }
        m = m_new;
        workgroupBarrier();
    }

    if (live) {
        let inv = 1.0 / l; // l >= 1: the row's maximum contributes exp(0)
        let oo = (t * p.n_heads + h) * D4;
        for (var d = 0u; d < D4; d++) {
            out[oo + d] = acc[d] * inv;
        }
        lse[t * p.n_heads + h] = m + log(l);
    }
}
