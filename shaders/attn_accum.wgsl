// attn_accum: H2O's and VATP's running attention score, the second pass of
// a decode step's attention: with the log-sum-exp attn_merge left per query
// head, every cached slot j < kv_len of KV head kvh gets the attention
// probability the step's query gave it, summed over the KV group's query
// heads:
//   acc[kvh][j] += sum_g exp(scale * q[h0 + g] . K[kvh][j] - lse[h0 + g]),
//   h0 = kvh * GROUP.
// (The group's heads share the cached row, so the row's score is theirs
// together; each head's probabilities sum to 1, so a step adds GROUP in all.)
//
// Layout: q [n_heads][HEAD_DIM] f32 (row 0); k_cache [n_kv_heads][max_seq]
// [HEAD_DIM] kv_t (read as kv4_t); lse [n_heads] f32; acc [n_kv_heads]
// [max_seq] f32.
// Bindings: q, k_cache, lse (read), acc (read_write), params, step.
// Prelude consts: WG, HEAD_DIM (a multiple of 4), GROUP.
// Grid: (ceil(max_seq / WG), n_kv_heads, 1): one invocation per slot.

struct Params { max_seq: u32, scale: f32, _p0: u32, _p1: u32 }
struct Step { pos: u32, n_tokens: u32, kv_len: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<kv4_t>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let kvh = gid.y;
    if (j >= min(step.kv_len, p.max_seq)) {
        return;
    }
    let h0 = kvh * GROUP;
    let row = (kvh * p.max_seq + j) * D4;
    var dp: array<vec4<f32>, GROUP>;
    for (var d = 0u; d < D4; d++) {
        let k = vec4<f32>(k_cache[row + d]);
        for (var g = 0u; g < GROUP; g++) {
            dp[g] += q[(h0 + g) * D4 + d] * k;
        }
    }
    var a = 0.0;
    for (var g = 0u; g < GROUP; g++) {
        let s = p.scale * ((dp[g].x + dp[g].y) + (dp[g].z + dp[g].w));
        a += exp(s - lse[h0 + g]);
    }
    acc[kvh * p.max_seq + j] += a;
}
