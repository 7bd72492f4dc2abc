// kivi_append: kv_append for a KIVI cache (kivi_format.wgsl): the call's new
// K and V rows (f32, post-RoPE) become f16 staging rows; token t of the call
// is slot step.kv_len - step.n_tokens + t of every KV head.
//
// Layout: k_new, v_new [n_tokens][n_kv_heads][HEAD_DIM] f32; k_cache,
// v_cache as kivi_format.wgsl says.
// Bindings: k_new (read), v_new (read), k_cache (read_write),
// v_cache (read_write), params, step (ops::Step).
// Prelude consts: WG, HEAD_DIM, and KIVI's.
// Grid: one invocation per (token, KV head, 4 dims) for max_tokens tokens,
// as a grid_1d; tokens >= step.n_tokens and slots >= KIVI_SEQ write nothing.

struct Params { n_kv_heads: u32, max_seq: u32, max_tokens: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> v_new: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
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
    if (slot >= KIVI_SEQ) {
        return;
    }
    let h = (i % per_token) / D4;
    let d = i % D4;
    let at = kivi_stage_row(h * KIVI_SEQ + slot) * KIVI_SW + 2u * d;
    let k = k_new[i];
    let v = v_new[i];
    k_cache[KIVI_KSTAGE + at] = pack_halves(k.x, k.y);
    k_cache[KIVI_KSTAGE + at + 1u] = pack_halves(k.z, k.w);
    v_cache[KIVI_VSTAGE + at] = pack_halves(v.x, v.y);
    v_cache[KIVI_VSTAGE + at + 1u] = pack_halves(v.z, v.w);
}
