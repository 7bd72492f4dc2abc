// matmul_lanes: Y[t, r] = sum_k W[r, k] * X[t, k] for prefill (Y[t, r] += ...
// when p.accum == 1: the fused residual), t < min(step.n_tokens, p.n_tokens).
// The CPU-adapter form of `matmul`. A workgroup owns TR weight rows and
// TT * MT tokens; every invocation walks the same rows, holding MT tokens.
// On lavapipe a workgroup runs as 8-wide SIMD over its invocations: the
// weight words and their unpacking are then the same in every lane (and
// cost the same as one lane's), so each dequantized 32-weight slice is
// reused for MT tokens per lane, and each token's 32 inputs (per-lane
// loads, the costly kind) for TR rows. No workgroup memory, no barriers.
// Measured on lavapipe (Q4_1, 512 tokens, the model's shapes): 25 GFLOP/s
// at TR 32, TT 8, MT 4, against 5.5 for the tiled `matmul`; MT 1 ran 12,
// MT 2 17, MT 8 21; TT 16 ran slower than TT 8 at every MT tried. Larger
// tiles in both directions pay (Q5_0 4864x896, GFLOP/s, TR,MT): 32,4 13.9;
// 64,4 15.8; 32,8 17.1; 64,8 21.6; 128,8 22.5; 64,16 24.7; 128,16 25.4;
// but llvmpipe's build of the pipeline (the loops unrolled) grows with
// them: 10-14 s uncached up to 64,8, 25-30 s at 128,8 and 64,16, 90-115 s
// at 256,8 and 128,16. TT 8, MT 8, TR 64 is the default (ops::linear).
// Bindings: w (read, binding 0, declared in quant/common.wgsl; the matrix
//   starts at its row p.wrow0, where one buffer holds several), x (read,
//   [n_tokens, xs] f32 with row stride xs = cols rounded up to 4, read as
//   vec4; values past cols are ignored), y (read_write, [n_tokens, p.y_stride] f32;
//   row r of token t is y[t * p.y_stride + p.row0 + r]: a matrix split into
//   row blocks writes one y),
//   params, step (ops::Step uniform; only n_tokens is used).
// Prelude consts: TR rows per workgroup, TT invocations per workgroup, MT
//   tokens per invocation (token t0 + j * TT + li for j < MT).
// Grid: [ceil(rows / TR), ceil(n_tokens / (TT * MT)), 1]; workgroups past
//   step.n_tokens exit.

struct Params { rows: u32, cols: u32, n_tokens: u32, accum: u32, y_stride: u32, row0: u32, wrow0: u32, _p1: u32 }

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(TT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = min(step.n_tokens, p.n_tokens);
    let r0 = wid.x * TR;
    let t0 = wid.y * TT * MT;
    if (t0 >= n) {
        return; // uniform across the workgroup
    }
    let rb = row_bytes(p.cols);
    let xs4 = (p.cols + 3u) / 4u;
    let chunks = (p.cols + 31u) / 32u;
    // This invocation's tokens t0 + j * TT + li; those past n repeat the last
    // one (no divergence around the loads) and are not written.
    var xb: array<u32, MT>;
    for (var j = 0u; j < MT; j++) {
        xb[j] = min(t0 + j * TT + li, n - 1u) * xs4;
    }
    var acc: array<array<f32, MT>, TR>;
    for (var sb = 0u; sb < chunks; sb++) {
        var xv: array<array<vec4<f32>, 8>, MT>;
        for (var j = 0u; j < MT; j++) {
            let k = xb[j] + sb * 8u;
            // The last, partial chunk of a float-type row: x past cols may be anything.
            xv[j] = mask_tail(array<vec4<f32>, 8>(x[k], x[k + 1u], x[k + 2u], x[k + 3u],
                                                  x[k + 4u], x[k + 5u], x[k + 6u], x[k + 7u]), sb * 32u, p.cols);
        }
        for (var i = 0u; i < TR; i++) {
            // Rows past the end re-read the last row and are not written.
            let wv = dequant32((p.wrow0 + min(r0 + i, p.rows - 1u)) * rb, p.cols, sb);
            for (var j = 0u; j < MT; j++) {
                let s = dot_chunk(wv, xv[j]);
                acc[i][j] += (s.x + s.y) + (s.z + s.w);
            }
        }
    }
    for (var j = 0u; j < MT; j++) {
        let t = t0 + j * TT + li;
        if (t < n) {
            for (var i = 0u; i < TR; i++) {
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
