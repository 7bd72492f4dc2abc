// matvec: y[r] = sum_k W[r, k] * x[k] for one token (decode), or y[r] += ...
// when ACCUM == 1 (fused residual). W is read in its GGUF encoding through
// the weight type's `dequant32` (quant/common.wgsl + quant/<type>.wgsl),
// 32 weights at a time; f32 accumulation.
//
// x is staged in workgroup memory in slices of XS floats (zero past cols)
// and each 32-wide slice of it is held in registers while an invocation
// walks its RPI rows: on CPU adapters (lavapipe) every memory load inside a
// loop costs a per-lane scalar loop, so reusing x across rows and loading it
// as vec4 is what sets the speed there. TPR > 1 (GPUs) splits a row's
// chunks over TPR lanes and reduces their sums in workgroup memory.
//
// Bindings: w (read, binding 0, declared in quant/common.wgsl), x (read,
//   cols f32), y (read_write, rows f32), params.
// Prelude consts: WG invocations per workgroup, TPR lanes per row (1 or a
//   power of two dividing WG), RPI rows per invocation (use 1 with TPR > 1),
//   ACCUM (0 or 1).
// Grid: grid_1d(ceil(rows / (WG / TPR * RPI))) workgroups.

struct Params { rows: u32, cols: u32, _p0: u32, _p1: u32 }

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const XS: u32 = 2048u;
var<workgroup> xs: array<vec4<f32>, XS / 4u>;
var<workgroup> partial: array<f32, WG>;

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
        base[i] = min(r0 + i, p.rows - 1u) * rb;
    }
    var acc: array<vec4<f32>, RPI>;
    for (var x0 = 0u; x0 < p.cols; x0 += XS) {
        let n = min(XS, p.cols - x0);
        workgroupBarrier(); // the previous slice is consumed
        for (var e = li; e < (n + 3u) / 4u; e += WG) {
            let k = x0 + 4u * e;
            let v = vec4<f32>(x[k], x[k + 1u], x[k + 2u], x[k + 3u]);
            xs[e] = select(vec4<f32>(0.0), v, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
        }
        workgroupBarrier();
        let c0 = x0 / 32u;
        let c1 = (x0 + n + 31u) / 32u;
        for (var sb = c0 + lane; sb < c1; sb += TPR) {
            let o = (sb - c0) * 8u;
            var xv: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xv[j] = xs[o + j];
            }
            for (var i = 0u; i < RPI; i++) {
                var v = dequant32(base[i], p.cols, sb);
                for (var j = 0u; j < 8u; j++) {
                    acc[i] += v[j] * xv[j];
                }
            }
        }
    }
    for (var i = 0u; i < RPI; i++) {
        var sum = acc[i].x + acc[i].y + acc[i].z + acc[i].w;
        if (TPR > 1u) {
            partial[li] = sum;
            workgroupBarrier();
            for (var s = TPR / 2u; s > 0u; s >>= 1u) {
                if (lane < s) {
                    partial[li] += partial[li + s];
                }
                workgroupBarrier();
            }
            sum = partial[li];
            workgroupBarrier(); // partial is reused for the next row
        }
        let r = r0 + i;
        if (lane == 0u && r < p.rows) {
            if (ACCUM == 1u) {
                y[r] += sum;
            } else {
                y[r] = sum;
            }
        }
    }
}
