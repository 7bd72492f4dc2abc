// matvec_rows: what the decode matvecs (matvec, matvec_qkv, matvec_glu)
// share around their weight type's `dot32`: the input chunk each step of
// the row loop reads, and the sum of a row's partial sums over the TPR
// lanes that split it.
// Needs x (binding 1, declared by kernels.rs), mask_tail
// (quant/common.wgsl), and the prelude's WG and TPR.

// Chunk sb of x: its 32 inputs as 8 vec4, zero past cols (the last chunk of
// a float-type row may hold anything there; its weights are zero), and
// their sum by component (the minimum terms of Q4_1, Q5_1 and K-quants).
struct XChunk { v: array<vec4<f32>, 8>, sum: vec4<f32> }

fn x_chunk(sb: u32, cols: u32) -> XChunk {
    let k = sb * 8u;
    let v = mask_tail(array<vec4<f32>, 8>(x[k], x[k + 1u], x[k + 2u], x[k + 3u],
                                          x[k + 4u], x[k + 5u], x[k + 6u], x[k + 7u]), sb * 32u, cols);
    return XChunk(v, ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])));
}

var<workgroup> partial: array<f32, WG>;

// The sum of v over the TPR lanes of this invocation's row (lane = li % TPR),
// in each of them; v itself when TPR is 1. With TPR > 1 every invocation of
// the workgroup calls it (it holds barriers).
fn lanes_sum(li: u32, lane: u32, v: f32) -> f32 {
    if (TPR == 1u) {
        return v;
    }
    partial[li] = v;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[li] += partial[li + s];
        }
        workgroupBarrier();
    }
    let sum = partial[li - lane];
    workgroupBarrier(); // partial is reused for the next row
    return sum;
}
