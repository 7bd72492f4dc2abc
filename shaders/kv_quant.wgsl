// kv_quant: kv_append for a quantized cache (kv_format.wgsl): quantize this
// call's new K and V rows (f32, post-RoPE) into one layer's caches. Token t
// of the call goes to slot step.kv_len - step.n_tokens + t of every KV head.
//
// One invocation per (token, KV head, pair of 32-element blocks): it writes
// the pair's quant words and their shared scale word, in K and in V. With
// KVROT, the pair's elements are first rotated group by group
// (kv_hadamard.wgsl; groups of 64 only where the pair is whole). Per
// block (as llama.cpp's quantize_row_q8_0 / q4_0, with f16 scales):
//   q8: a = max|x|, d = a / 127, q = round(x / d) half away from zero
//       (x * (1 / d), 0 where d = 0);
//   q4: m = the x of largest |x| (the first), d = m / -8,
//       n = min(15, trunc(x * (1 / d) + 8.5)) (8 where d = 0);
// the scale kept is d rounded to f16, ties to even (the quants use d unrounded).
//
// Layout: k_new, v_new [n_tokens][n_kv_heads][HEAD_DIM] f32; k_cache,
// v_cache [n_kv_heads][max_seq][KV_ROW] u32.
// Bindings: k_new (read), v_new (read), k_cache (read_write),
// v_cache (read_write), params, step (ops::Step).
// Prelude consts: WG, HEAD_DIM (a multiple of 32), KVQ (8 or 4), KVROT
// (0, 32 or 64).
// Grid: one invocation per (token, KV head, block pair) for max_tokens
// tokens, as a grid_1d; tokens >= step.n_tokens and slots >= max_seq write
// nothing.

struct Params { n_kv_heads: u32, max_seq: u32, max_tokens: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> v_new: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;
const NB: u32 = HEAD_DIM / 32u; // blocks per row
const PAIRS: u32 = (NB + 1u) / 2u;

// Quantize block `b` (0 or 1) of the pair held in `x` into the row at word
// `dst`, block `blk` of the row; returns its scale.
fn quant_block(is_k: bool, x: ptr<function, array<f32, 64>>, b: u32, dst: u32, blk: u32) -> f32 {
    let o = b * 32u;
    var d = 0.0;
    if (KVQ == 8u) {
        var a = 0.0;
        for (var i = 0u; i < 32u; i++) {
            a = max(a, abs((*x)[o + i]));
        }
        d = a / 127.0;
    } else {
        var m = 0.0;
        for (var i = 0u; i < 32u; i++) {
            if (abs((*x)[o + i]) > abs(m)) {
                m = (*x)[o + i];
            }
        }
        d = m / -8.0;
    }
    let id = select(0.0, 1.0 / d, d != 0.0);
    for (var i = 0u; i < 8u; i++) {
        let v = vec4<f32>((*x)[o + 4u * i], (*x)[o + 4u * i + 1u], (*x)[o + 4u * i + 2u], (*x)[o + 4u * i + 3u]) * id;
        if (KVQ == 8u) {
            // round half away from zero (C's roundf)
            let q = vec4<i32>(sign(v) * floor(abs(v) + 0.5));
            let u = vec4<u32>(bitcast<vec4<u32>>(q) & vec4<u32>(255u)) << vec4<u32>(0u, 8u, 16u, 24u);
            store(is_k, dst + blk * 8u + i, u.x | u.y | u.z | u.w);
        } else {
            let n = min(vec4<u32>(v + vec4<f32>(8.5)), vec4<u32>(15u));
            let u = n << (vec4<u32>(0u, 4u, 8u, 12u) + vec4<u32>((i & 1u) * 16u));
            let w = u.x | u.y | u.z | u.w;
            // Two vec4 share a word: the even one writes, the odd one adds.
            let at = dst + blk * 4u + i / 2u;
            if ((i & 1u) == 0u) {
                store(is_k, at, w);
            } else {
                store(is_k, at, load(is_k, at) | w);
            }
        }
    }
    return d;
}

fn store(is_k: bool, i: u32, w: u32) {
    if (is_k) {
        k_cache[i] = w;
    } else {
        v_cache[i] = w;
    }
}

fn load(is_k: bool, i: u32) -> u32 {
    return select(v_cache[i], k_cache[i], is_k);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let per_token = p.n_kv_heads * PAIRS;
    let t = i / per_token;
    if (t >= step.n_tokens || t >= p.max_tokens || step.n_tokens > step.kv_len) {
        return;
    }
    let slot = step.kv_len - step.n_tokens + t;
    if (slot >= p.max_seq) {
        return;
    }
    let r = i % per_token;
    let h = r / PAIRS;
    let pair = r % PAIRS;
    let src = (t * p.n_kv_heads + h) * D4;
    let dst = (h * p.max_seq + slot) * KV_ROW;
    let b0 = 2u * pair;
    let nb = min(2u, NB - b0); // blocks in this pair
    for (var kv = 0u; kv < 2u; kv++) {
        let is_k = kv == 0u;
        var x: array<f32, 64>;
        for (var i = 0u; i < nb * 8u; i++) {
            let e = select(v_new[src + b0 * 8u + i], k_new[src + b0 * 8u + i], is_k);
            x[4u * i] = e.x;
            x[4u * i + 1u] = e.y;
            x[4u * i + 2u] = e.z;
            x[4u * i + 3u] = e.w;
        }
        if (KVROT > 0u) {
            for (var o = 0u; o < nb * 32u; o += KVROT) {
                fwht(&x, o);
            }
        }
        let d0 = quant_block(is_k, &x, 0u, dst, b0);
        var d1 = 0.0;
        if (nb == 2u) {
            d1 = quant_block(is_k, &x, 1u, dst, b0 + 1u);
        }
        store(is_k, dst + KV_QW + pair, pack_halves(d0, d1));
    }
}
