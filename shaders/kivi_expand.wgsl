// kivi_expand: a KIVI compaction's first step (ops::evict::kivi_compaction):
// one layer's cached slots as dense kv_t rows, the values the attention
// reads (quantized groups dequantized) rounded to f16, so that
// kv_compact can gather the kept ones and kivi_repack quantize them again.
//
// Layout: k_cache, v_cache as kivi_format.wgsl says; tk, tv [n_kv_heads]
// [KIVI_SEQ][HEAD_DIM] kv_t (as kv4_t).
// Bindings: k_cache, v_cache (read), tk, tv (read_write), params, step
// (kv_len: the slots cached now; n_tokens 0, so the boundary is theirs).
// Prelude consts: WG, HEAD_DIM, and KIVI's.
// Grid: one invocation per (KV head, slot, 4 dims) over KIVI_SEQ slots, as
// a grid_1d; slots >= kv_len write nothing.

struct Params { n_kv_heads: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(1) var<storage, read> v_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read_write> tk: array<kv4_t>;
@group(0) @binding(3) var<storage, read_write> tv: array<kv4_t>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

// x rounded to f16 (as a staging row would hold it) whatever kv_t is.
fn f16_rounded(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(half_pair(pack_halves(x.x, x.y)), half_pair(pack_halves(x.z, x.w)));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let r = i / D4; // KV head * KIVI_SEQ + slot
    let d = i % D4;
    if (r / KIVI_SEQ >= p.n_kv_heads || r % KIVI_SEQ >= min(step.kv_len, KIVI_SEQ)) {
        return;
    }
    tk[i] = kv4_t(f16_rounded(kv_k(r, d)));
    tv[i] = kv4_t(f16_rounded(kv_v(r, d)));
}
