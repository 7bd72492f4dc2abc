// kv_rotate: a quantized cache's rotation of the queries before attention
// and of the attention output after it (kv_hadamard.wgsl): each group of
// KVROT consecutive elements of each of the call's rows, in place.
//
// Layout: buf [max_tokens][row] f32, row a multiple of KVROT (heads *
// head_dim, head_dim a multiple of KVROT, so groups stay within a head).
// Bindings: buf (read_write), params, step (ops::Step).
// Prelude consts: WG, KVROT (32 or 64).
// Grid: one invocation per (token, group) for max_tokens tokens, as a
// grid_1d; tokens >= step.n_tokens are left alone.

struct Params { row: u32, max_tokens: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let per = p.row / KVROT;
    let t = i / per;
    if (t >= step.n_tokens || t >= p.max_tokens) {
        return;
    }
    let o = t * p.row + (i % per) * KVROT;
    var x: array<f32, 64>;
    for (var j = 0u; j < KVROT; j++) {
        x[j] = buf[o + j];
    }
    fwht(&x, 0u);
    for (var j = 0u; j < KVROT; j++) {
        buf[o + j] = x[j];
    }
}
