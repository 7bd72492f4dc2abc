// matvec: y[r] = sum_k W[r, k] * x[k] for one token (decode), or y[r] += ...
// when p.accum == 1 (the fused residual). W is read in its GGUF encoding through
// the weight type's `dequant32` (quant/common.wgsl + quant/<type>.wgsl),
// 32 weights at a time; f32 accumulation.
//
// Each 32-wide slice of x is loaded once (as vec4) into registers and reused
// for the invocation's RPI rows: on CPU adapters (lavapipe) every memory
// load inside a loop costs a per-lane scalar loop, so loads per weight set
// the speed there. TPR > 1 (GPUs) splits a row's chunks over TPR lanes and
// reduces their sums in workgroup memory.
//
// Bindings: w (read, binding 0, declared in quant/common.wgsl; the matrix
//   starts at its row p.wrow0, where one buffer holds several), x (read,
//   binding 1, declared by kernels.rs: storage, or the buffer's first 64 KiB
//   as a uniform where the spec's XU is 1; cols f32 read as vec4: the buffer
//   holds at least ceil(cols / 4) * 4 f32; values past cols are ignored), y (read_write: row r of this call is
//   y[p.row0 + r], so a matrix split into row blocks writes one y), params.
// Prelude consts: WG invocations per workgroup, TPR lanes per row (1 or a
//   power of two dividing WG), RPI rows per invocation.
//
// With NORM 1 (the decode step's residual projections, whose output the
// next RMSNorm reads) each written row r also gives norm_xg[r] = y[r] *
// norm_gain[r] (bindings 4 and 6), and each invocation's RPI rows the sum
// of their squares in norm_parts[r0 / RPI] (binding 7): what the next
// matvec_qkv or matvec_glu needs to apply the norm itself (kernels.rs's
// NORM_OUT). With NORM 0 norm_row and norm_part do nothing.
// Grid: grid_1d(ceil(rows / (WG / TPR * RPI))) workgroups.

struct Params { rows: u32, cols: u32, accum: u32, row0: u32, wrow0: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let lane = li % TPR;
    let r0 = ((wid.x + wid.y * nwg.x) * (WG / TPR) + li / TPR) * RPI;
    let rb = row_bytes(p.cols);
    // Rows past the end re-read the last row (no divergent branch around the
    // loads) and are not written.
    var base: array<u32, RPI>;
    for (var i = 0u; i < RPI; i++) {
        base[i] = (p.wrow0 + min(r0 + i, p.rows - 1u)) * rb;
    }
    var acc: array<vec4<f32>, RPI>;
    let chunks = (p.cols + 31u) / 32u;
    for (var sb = lane; sb < chunks; sb += TPR) {
        let xc = x_chunk(sb, p.cols);
        for (var i = 0u; i < RPI; i++) {
            acc[i] += dot32(base[i], p.cols, sb, xc.v, xc.sum);
        }
    }
    var squares = 0.0;
    for (var i = 0u; i < RPI; i++) {
        let sum = lanes_sum(li, lane, acc[i].x + acc[i].y + acc[i].z + acc[i].w);
        let r = r0 + i;
        if (lane == 0u && r < p.rows) {
            var v = sum;
            if (p.accum == 1u) {
                v += y[p.row0 + r];
            }
            y[p.row0 + r] = v;
            squares += norm_row(r, v);
        }
    }
    if (lane == 0u && r0 < p.rows) {
        norm_part(r0 / RPI, squares);
    }
}
