// swiglu: out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]
// for i < n; flat, so a [n_tokens, ffn] batch is just n = n_tokens * ffn.
// Written to a separate output (not into gate) so the gate/up buffers stay
// read-only and an output guard can catch stray writes; the extra buffer is
// one ffn row per token.
// Bindings: gate (read), up (read), out (read_write), params.
// Prelude consts: WG (workgroup size).
// Grid: grid_1d(ceil(n / WG)).

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        let g = gate[i];
        // exp(-g) overflows to +inf for g < -88: the quotient is then -0, the right limit.
        out[i] = g / (1.0 + exp(-g)) * up[i];
    }
}
