// matvec_qkv: the attention's query, key and value projections of one token
// in one dispatch, each plus its bias where the model has them (BIAS 1):
// rows 0 .. nq of the stacked matrix go to yq, the next nk to yk, the last
// nv to yv. It replaces three matvecs (and three bias adds) of the decode
// step, whose dispatches cost lavapipe more than their work. Weights are
// read exactly as matvec.wgsl reads them, so each output equals matvec's
// (plus add_bias's) bit for bit.
//
// Q, K and V are consecutive row ranges of one buffer (the loader stacks
// them), from buffer row p.wrow0.
// Bindings: w (read, binding 0, quant/common.wgsl), x (read, binding 1, as
//   in matvec.wgsl, declared by kernels.rs), yq (read_write, nq f32), params,
//   yk (read_write, binding 4, nk f32), yv (read_write, binding 6, nv f32),
//   and with BIAS the biases bq, bk, bv (read, bindings 7, 8, 9).
// With NORM 1 the input is x * gain of an RMSNorm whose scale this kernel
//   applies, from the sums of squares matvec's NORM output left
//   (kernels.rs's NORM_IN: norm_scale()); with NORM 0 the scale is 1.
// Prelude consts: WG, TPR, RPI as in matvec.wgsl; BIAS; NORM.
// Grid: grid_1d(ceil((nq + nk + nv) / (WG / TPR * RPI))) workgroups.

struct Params { nq: u32, nk: u32, nv: u32, cols: u32, wrow0: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(2) var<storage, read_write> yq: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> yk: array<f32>;
@group(0) @binding(6) var<storage, read_write> yv: array<f32>;

// Row r of the stacked output (r < nq + nk + nv) into its projection.
fn store(r: u32, raw: f32, scale: f32) {
    let sum = raw * scale;
    if (r < p.nq) {
        yq[r] = sum + bias(0u, r);
    } else if (r < p.nq + p.nk) {
        yk[r - p.nq] = sum + bias(1u, r - p.nq);
    } else {
        yv[r - p.nq - p.nk] = sum + bias(2u, r - p.nq - p.nk);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let rows = p.nq + p.nk + p.nv;
    let lane = li % TPR;
    let r0 = ((wid.x + wid.y * nwg.x) * (WG / TPR) + li / TPR) * RPI;
    let rb = row_bytes(p.cols);
    let scale = norm_scale();
    // Rows past the end re-read the last row and are not written.
    var base: array<u32, RPI>;
    for (var i = 0u; i < RPI; i++) {
        base[i] = (p.wrow0 + min(r0 + i, rows - 1u)) * rb;
    }
    var acc: array<vec4<f32>, RPI>;
    let chunks = (p.cols + 31u) / 32u;
    for (var sb = lane; sb < chunks; sb += TPR) {
        let xc = x_chunk(sb, p.cols);
        for (var i = 0u; i < RPI; i++) {
            acc[i] += dot32(base[i], p.cols, sb, xc.v, xc.sum);
        }
    }
    for (var i = 0u; i < RPI; i++) {
        let sum = lanes_sum(li, lane, acc[i].x + acc[i].y + acc[i].z + acc[i].w);
        let r = r0 + i;
        if (lane == 0u && r < rows) {
            store(r, sum, scale);
        }
    }
}
