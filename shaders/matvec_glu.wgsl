// matvec_glu: a gated FFN's gate and up projections of one token and their
// product, in one dispatch: y[r] = act(G[r] . x) * (U[r] . x) for r <
// p.rows, act = SiLU (ACT 0: SwiGLU, as swiglu.wgsl) or GELU's tanh form
// (ACT 1: GeGLU, as geglu.wgsl). It replaces two matvecs and the
// elementwise kernel of the decode step, whose dispatches cost lavapipe
// more than their work. Weights are read exactly as matvec.wgsl reads them
// (same chunks, same sums), so y equals matvec + swiglu bit for bit.
//
// G and U are row ranges of one buffer (the loader stacks them): gate row r
// is buffer row p.gate0 + r, up row r is buffer row p.up0 + r.
// Bindings: w (read, binding 0, quant/common.wgsl), x (read, binding 1, as
//   in matvec.wgsl, declared by kernels.rs), y (read_write, rows f32), params.
// Prelude consts: WG, TPR as in matvec.wgsl; PR gate/up row pairs per
//   invocation; ACT; NORM as in matvec_qkv.wgsl (both sums times
//   norm_scale()).
// Grid: grid_1d(ceil(rows / (WG / TPR * PR))) workgroups.

struct Params { rows: u32, cols: u32, gate0: u32, up0: u32 }

@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn act(g: f32) -> f32 {
    if (ACT == 1u) {
        // Clamped so g^3 stays finite; past |g| = 10 gelu is g or 0 to f32 precision.
        let c = clamp(g, -10.0, 10.0);
        let u = 0.7978845608028654 * (c + 0.044715 * c * c * c);
        return g / (1.0 + exp(-2.0 * u));
    }
    // exp(-g) overflows to +inf for g < -88: the quotient is then -0, the right limit.
    return g / (1.0 + exp(-g));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let lane = li % TPR;
    let r0 = ((wid.x + wid.y * nwg.x) * (WG / TPR) + li / TPR) * PR;
    let rb = row_bytes(p.cols);
    let scale = norm_scale();
    // Rows past the end re-read the last row and are not written.
    var gbase: array<u32, PR>;
    var ubase: array<u32, PR>;
    for (var i = 0u; i < PR; i++) {
        let r = min(r0 + i, p.rows - 1u);
        gbase[i] = (p.gate0 + r) * rb;
        ubase[i] = (p.up0 + r) * rb;
    }
    var gacc: array<vec4<f32>, PR>;
    var uacc: array<vec4<f32>, PR>;
    let chunks = (p.cols + 31u) / 32u;
    for (var sb = lane; sb < chunks; sb += TPR) {
        let xc = x_chunk(sb, p.cols);
        for (var i = 0u; i < PR; i++) {
            gacc[i] += dot32(gbase[i], p.cols, sb, xc.v, xc.sum);
            uacc[i] += dot32(ubase[i], p.cols, sb, xc.v, xc.sum);
        }
    }
    for (var i = 0u; i < PR; i++) {
        let g = lanes_sum(li, lane, gacc[i].x + gacc[i].y + gacc[i].z + gacc[i].w) * scale;
        let u = lanes_sum(li, lane, uacc[i].x + uacc[i].y + uacc[i].z + uacc[i].w) * scale;
        let r = r0 + i;
        if (lane == 0u && r < p.rows) {
            y[r] = act(g) * u;
        }
    }
}
