// embed: out[t, :] = table[ids[t], :] dequantized to f32, for
// t < min(step.n_tokens, p.n_tokens). The table may be one row block of a
// split matrix: it holds ids p.first .. p.first + p.vocab, and ids outside
// it are left to the other blocks. An id >= p.total (no block's) is written
// as zeros by the block with p.first == 0 (the host validates ids; this
// only stops a bad id from reading past the table).
// Each invocation decodes one 32-element chunk of one token's row.
// Bindings: w (read, binding 0: the table, declared in quant/common.wgsl),
//   ids (read, u32), out (read_write, [n_tokens, dim] f32), params,
//   step (ops::Step uniform; only n_tokens is used).
// Prelude consts: WG (workgroup size).
// Grid: grid_1d(ceil(n_tokens * ceil(dim / 32) / WG)).

struct Params { vocab: u32, dim: u32, n_tokens: u32, first: u32, total: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

// Elements k .. k+3 of token row o (o = first element of the row), those below dim.
fn put4(o: u32, k: u32, v: vec4<f32>) {
    if (k + 3u < p.dim) {
        out[o + k] = v.x;
        out[o + k + 1u] = v.y;
        out[o + k + 2u] = v.z;
        out[o + k + 3u] = v.w;
    } else {
        if (k < p.dim) { out[o + k] = v.x; }
        if (k + 1u < p.dim) { out[o + k + 1u] = v.y; }
        if (k + 2u < p.dim) { out[o + k + 2u] = v.z; }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let chunks = (p.dim + 31u) / 32u;
    let t = i / chunks;
    let sb = i % chunks;
    if (t >= min(step.n_tokens, p.n_tokens)) {
        return;
    }
    let id = ids[t];
    let mine = id >= p.first && id - p.first < p.vocab;
    if (!mine && !(id >= p.total && p.first == 0u)) {
        return;
    }
    var v: array<vec4<f32>, 8>;
    if (mine) {
        v = dequant32((id - p.first) * row_bytes(p.dim), p.dim, sb);
    }
    let o = t * p.dim;
    let k = sb * 32u;
    put4(o, k, v[0]);
    put4(o, k + 4u, v[1]);
    put4(o, k + 8u, v[2]);
    put4(o, k + 12u, v[3]);
    put4(o, k + 16u, v[4]);
    put4(o, k + 20u, v[5]);
    put4(o, k + 24u, v[6]);
    put4(o, k + 28u, v[7]);
}
