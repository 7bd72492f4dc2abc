// rms_parts: one token's RMSNorm input in the form the decode step's
// folded norm reads (see matvec.wgsl's NORM): xg[r] = x[r] * gain[r], and
// parts[i] = the sum of x[r]^2 over rows i * RPI .. (i + 1) * RPI, the
// grouping matvec's NORM output writes. It starts the fold where no
// residual matvec came before (the first layer).
// Bindings: x (read), gain (read), xg (read_write), parts (read_write),
// params.
// Prelude consts: WG (invocations per workgroup), RPI (rows per part).
// Grid: grid_1d(ceil(ceil(dim / RPI) / WG)).

struct Params { dim: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gain: array<f32>;
@group(0) @binding(2) var<storage, read_write> xg: array<f32>;
@group(0) @binding(3) var<storage, read_write> parts: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + li;
    if (i * RPI >= p.dim) {
        return;
    }
    var squares = 0.0;
    for (var j = 0u; j < RPI; j++) {
        let r = i * RPI + j;
        if (r < p.dim) {
            let v = x[r];
            xg[r] = v * gain[r];
            squares += v * v;
        }
    }
    parts[i] = squares;
}
