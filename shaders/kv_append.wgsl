// kv_append: store this call's new K and V rows (f32, post-RoPE) into one
// layer's KV cache (kv_t: f16 or f32 by device). Token t of the call goes to
// slot step.kv_len - step.n_tokens + t of every KV head.
//
// Layout: k_new, v_new [n_tokens][n_kv_heads][HEAD_DIM] f32; k_cache,
// v_cache [n_kv_heads][max_seq][HEAD_DIM] kv_t, viewed here as kv4_t (the
// same bytes: HEAD_DIM is a multiple of 4, so a vec4 never straddles rows).
// Bindings: k_new (read), v_new (read), k_cache (read_write),
// v_cache (read_write), params, step (ops::Step).
// Prelude consts: WG (workgroup size), HEAD_DIM.
// Grid: one invocation per (token, KV head, 4 dims) for max_tokens tokens, as
// a grid_1d; tokens >= step.n_tokens and slots >= max_seq write nothing.

struct Params { n_kv_heads: u32, max_seq: u32, max_tokens: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> v_new: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<kv4_t>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<kv4_t>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let per_token = p.n_kv_heads * D4;
    let t = i / per_token;
    if (t >= step.n_tokens || t >= p.max_tokens || step.n_tokens > step.kv_len) {
        return;
    }
    let slot = step.kv_len - step.n_tokens + t;
    if (slot >= p.max_seq) {
        return;
    }
    let r = i % per_token;
    let h = r / D4;
    let d = r % D4;
    let dst = (h * p.max_seq + slot) * D4 + d;
    k_cache[dst] = kv4_t(k_new[i]);
    v_cache[dst] = kv4_t(v_new[i]);
}
