// add: in place, x[i] += y[i % period] for i < n: the residual add
// (period = n) and the bias add (y one row of `period`, broadcast over the
// rows of x).
// Bindings: x (read_write), y (read), params.
// Prelude consts: WG (workgroup size).

struct Params { n: u32, period: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        x[i] = x[i] + y[i % p.period];
    }
}
