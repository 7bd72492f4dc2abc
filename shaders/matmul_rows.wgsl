// matmul_rows: Y[t, r] = sum_k W[r, k] * X[t, k] for a call of a few
// tokens (Y[t, r] += ... when p.accum == 1: the fused residual),
// t < min(step.n_tokens, p.n_tokens). The CPU-adapter form of `matmul` for
// calls too short to fill `matmul_lanes`' tiles of 64 tokens: its lanes
// split rows, as the decode matvec's do, and each invocation holds RPI =
// TR / 8 rows for the MT tokens of its workgroup. On lavapipe (a workgroup
// runs as 8-wide SIMD over its invocations) each row's 32-weight slice is
// loaded and dequantized once for MT tokens, and each token's 32 inputs
// serve RPI rows. Measured (benches/batch_matvec.rs, Q4_1 in cache): 8
// tokens at 16 rows per invocation run 2.1x faster per token than one
// token at a time, 4 tokens 1.9x.
// Each sum is accumulated as `matmul_lanes` does (the slice's dot product
// by component, then (x + y) + (z + w) added to the row's sum), so both
// kernels give the same sums.
// Bindings: w (read, binding 0, declared in quant/common.wgsl; the matrix
//   starts at its row p.wrow0, where one buffer holds several), x (read,
//   binding 1, declared by kernels.rs: storage, or the buffer's first 64
//   KiB as a uniform where the spec's XU is 1; [n_tokens, xs] f32 with row
//   stride xs = cols rounded up to 4, read as vec4; values past cols are
//   ignored), y (read_write, [n_tokens, p.y_stride] f32; row r of token t
//   is y[t * p.y_stride + p.row0 + r]), params, step (ops::Step uniform;
//   only n_tokens is used).
// Prelude consts: TR rows per workgroup (a multiple of 8), MT tokens per
//   workgroup (TT is unused: the workgroup is 8 invocations).
// Grid: [ceil(rows / TR), ceil(n_tokens / MT), 1]; workgroups past
//   step.n_tokens exit.

struct Params { rows: u32, cols: u32, n_tokens: u32, accum: u32, y_stride: u32, row0: u32, wrow0: u32, _p1: u32 }

@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const RPI: u32 = TR / 8u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = min(step.n_tokens, p.n_tokens);
    let t0 = wid.y * MT;
    if (t0 >= n) {
        return; // uniform across the workgroup
    }
    let r0 = wid.x * TR + li * RPI;
    let rb = row_bytes(p.cols);
    let xs4 = (p.cols + 3u) / 4u;
    let chunks = (p.cols + 31u) / 32u;
    // Rows past the end re-read the last row, tokens past n the last token;
    // neither is written.
    var base: array<u32, RPI>;
    for (var i = 0u; i < RPI; i++) {
        base[i] = (p.wrow0 + min(r0 + i, p.rows - 1u)) * rb;
    }
    var xb: array<u32, MT>;
    for (var j = 0u; j < MT; j++) {
        xb[j] = min(t0 + j, n - 1u) * xs4;
    }
    var acc: array<array<f32, MT>, RPI>;
    for (var sb = 0u; sb < chunks; sb++) {
        var wv: array<array<vec4<f32>, 8>, RPI>;
        for (var i = 0u; i < RPI; i++) {
            wv[i] = dequant32(base[i], p.cols, sb);
        }
        for (var j = 0u; j < MT; j++) {
            let k = xb[j] + sb * 8u;
            // The last, partial chunk of a float-type row: x past cols may be anything.
            let xv = mask_tail(array<vec4<f32>, 8>(x[k], x[k + 1u], x[k + 2u], x[k + 3u],
                                                   x[k + 4u], x[k + 5u], x[k + 6u], x[k + 7u]), sb * 32u, p.cols);
            for (var i = 0u; i < RPI; i++) {
                let s = dot_chunk(wv[i], xv);
                acc[i][j] += (s.x + s.y) + (s.z + s.w);
            }
        }
    }
    for (var j = 0u; j < MT; j++) {
        let t = t0 + j;
        if (t < n) {
            for (var i = 0u; i < RPI; i++) {
                let r = r0 + i;
                if (r < p.rows) {
                    let o = t * p.y_stride + p.row0 + r;
                    if (p.accum == 1u) {
                        y[o] += acc[i][j];
                    } else {
                        y[o] = acc[i][j];
                    }
                }
            }
        }
    }
}
