// attn_accum: the attention probabilities the call's last query rows gave
// every cached slot, summed per KV head: the score H2O and VATP accumulate
// over every query (prefill rows and decode steps alike) and SnapKV's family
// takes from the observation window (the prompt's last rows). With the
// log-sum-exp the attention kernels left per (token, query head):
//   a[kvh][j] = sum_{t in rows} sum_g exp(attn_score(scale * q[t][h0 + g] . K[kvh][j]) - lse[t][h0 + g]),
//   h0 = kvh * GROUP, rows = the last min(p.rows, n_tokens) tokens of the
//   call that see slot j: token t (slot kv_len - n_tokens + t) sees the
//   slots attn_sees allows (j <= its own; with a window, the WINDOW most
//   recent). The same scores (softcap) and mask as the attention kernels.
// acc[kvh][j] = a (p.overwrite = 1) or acc[kvh][j] += a (p.overwrite = 0), j < kv_len.
// (The group's heads share the cached row, so the row's score is theirs
// together; each head's probabilities sum to 1, so a row adds GROUP in all.)
//
// Layout: q [tokens][n_heads][HEAD_DIM] f32; k_cache [n_kv_heads][max_seq]
// [HEAD_DIM] kv_t (read as kv4_t); lse [tokens][n_heads] f32; acc
// [n_kv_heads][max_seq] f32.
// Bindings: q, k_cache, lse (read), acc (read_write), params, step.
// Prelude consts: WG, HEAD_DIM (a multiple of 4), GROUP; SOFTCAP, WINDOW
// (attn_core.wgsl).
// Grid: (ceil(max_seq / WG), n_kv_heads, 1): one invocation per slot, which
// walks rows * (HEAD_DIM / 4) loop iterations (rows <= 512).

struct Params { max_seq: u32, scale: f32, rows: u32, overwrite: u32 }

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x;
    let kvh = gid.y;
    let n_heads = nwg.y * GROUP;
    if (j >= min(step.kv_len, p.max_seq) || step.n_tokens > step.kv_len) {
        return;
    }
    let base = step.kv_len - step.n_tokens; // slot of the call's token 0
    let t0 = step.n_tokens - min(p.rows, step.n_tokens);
    // Token t sees slot j when base + t >= j.
    let first = max(t0, select(0u, j - base, j > base));
    let h0 = kvh * GROUP;
    let row = kvh * p.max_seq + j;
    var k: array<vec4<f32>, D4>;
    for (var d = 0u; d < D4; d++) {
        k[d] = kv_k(row, d);
    }
    var a = 0.0;
    for (var t = first; t < step.n_tokens; t++) {
        if (!attn_sees(base + t, j)) {
            break; // past the window, as every later token is
        }
        for (var g = 0u; g < GROUP; g++) {
            let h = t * n_heads + h0 + g;
            var dp = vec4<f32>(0.0);
            for (var d = 0u; d < D4; d++) {
                dp += q[h * D4 + d] * k[d];
            }
            a += exp(attn_score(p.scale * ((dp.x + dp.y) + (dp.z + dp.w))) - lse[h]);
        }
    }
    let o = kvh * p.max_seq + j;
    acc[o] = select(acc[o], 0.0, p.overwrite != 0u) + a;
}
