// scale: in place, x[i] *= s for i < n (Gemma's embedding scale, sqrt(dim)).
// Bindings: x (read_write), params.
// Prelude consts: WG (workgroup size).
// Grid: grid_1d(ceil(n / WG)).

struct Params { n: u32, s: f32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        x[i] = x[i] * p.s;
    }
}
