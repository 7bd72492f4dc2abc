// scale: in place, x[i] *= s for i < n (Gemma's embedding scale, sqrt(dim)),
// then, with a cap c > 0, x[i] = c * tanh(x[i] / c) (Gemma 2's final-logit
// softcap, run with s = 1).
// Bindings: x (read_write), params.
// Prelude consts: WG (workgroup size).
// Grid: grid_1d(ceil(n / WG)).

struct Params { n: u32, s: f32, cap: f32, _p: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        var v = x[i] * p.s;
        if (p.cap > 0.0) {
            // tanh is +-1 in f32 past |9.1|; the clamp keeps exp-based tanh finite.
            v = p.cap * tanh(clamp(v / p.cap, -10.0, 10.0));
        }
        x[i] = v;
    }
}
