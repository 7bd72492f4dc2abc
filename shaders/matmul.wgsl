// matmul: Y[t, r] = sum_k W[r, k] * X[t, k] for prefill (Y[t, r] += ... when
// p.accum == 1: the fused residual), t < min(step.n_tokens, p.n_tokens).
// A workgroup owns a tile of TR weight rows x TT tokens. Per 32-wide slice of
// k it dequantizes its W rows once (the weight type's `dequant32`) and stages
// its X rows, both in workgroup memory as vec4 along k; then every
// invocation accumulates an 8-row x MT-token register tile as 4x4 matrix
// products, per 4 k. Loads per multiply-add bound the speed on CPU adapters
// (each load is a per-lane loop there), hence the large register tile;
// MT = 8 is faster still there but takes LLVM ~5x longer to compile.
// Bindings: w (read, binding 0, declared in quant/common.wgsl; the matrix
//   starts at its row p.wrow0, where one buffer holds several), x (read,
//   [n_tokens, xs] f32 with row stride xs = cols rounded up to 4, read as
//   vec4; values past cols are ignored), y (read_write, [n_tokens, p.y_stride] f32;
//   row r of token t is y[t * p.y_stride + p.row0 + r]: a matrix split into
//   row blocks writes one y),
//   params, step (ops::Step uniform; only n_tokens is used).
// Prelude consts: TR (multiple of 8), MT (4 or 8), TT (multiple of MT).
// Grid: [ceil(rows / TR), ceil(n_tokens / TT), 1] workgroups of
//   (TR / 8) * (TT / MT) invocations; token tiles past step.n_tokens exit.

struct Params { rows: u32, cols: u32, n_tokens: u32, accum: u32, y_stride: u32, row0: u32, wrow0: u32, _p1: u32 }

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const NT: u32 = TT / MT; // invocations along tokens
const NI: u32 = (TR / 8u) * NT;

// ws[r * 8 + q]: weights 4q..4q+3 of the slice for tile row r; xs likewise per token.
var<workgroup> ws: array<vec4<f32>, TR * 8u>;
var<workgroup> xs: array<vec4<f32>, TT * 8u>;

// Four consecutive rows (or tokens) at k4 = q of the staged slice, as matrix columns.
fn w4(r: u32, q: u32) -> mat4x4<f32> {
    return mat4x4<f32>(ws[r * 8u + q], ws[r * 8u + 8u + q], ws[r * 8u + 16u + q], ws[r * 8u + 24u + q]);
}
fn x4(t: u32, q: u32) -> mat4x4<f32> {
    return mat4x4<f32>(xs[t * 8u + q], xs[t * 8u + 8u + q], xs[t * 8u + 16u + q], xs[t * 8u + 24u + q]);
}

// Write (or add) rows r..r+3 of token t, skipping rows and tokens past the
// end. Straight-line on purpose: loops with a dynamically indexed matrix
// here cost more than the whole product on lavapipe.
fn put(o: u32, v: f32) {
    if (p.accum == 1u) {
        y[o] += v;
    } else {
        y[o] = v;
    }
}

fn store4(v: vec4<f32>, r: u32, t: u32, n: u32) {
    if (t < n) {
        let o = t * p.y_stride + p.row0 + r;
        if (r + 3u < p.rows) {
            put(o, v.x);
            put(o + 1u, v.y);
            put(o + 2u, v.z);
            put(o + 3u, v.w);
        } else {
            if (r < p.rows) { put(o, v.x); }
            if (r + 1u < p.rows) { put(o + 1u, v.y); }
            if (r + 2u < p.rows) { put(o + 2u, v.z); }
        }
    }
}

// acc[j] holds rows r..r+3 of token t + j.
fn store4x4(acc: mat4x4<f32>, r: u32, t: u32, n: u32) {
    store4(acc[0], r, t, n);
    store4(acc[1], r, t + 1u, n);
    store4(acc[2], r, t + 2u, n);
    store4(acc[3], r, t + 3u, n);
}

@compute @workgroup_size(NI)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = min(step.n_tokens, p.n_tokens);
    let r0 = wid.x * TR;
    let t0 = wid.y * TT;
    if (t0 >= n) {
        return; // uniform across the workgroup
    }
    let rl = (li / NT) * 8u; // this invocation's first tile row
    let tl = (li % NT) * MT; // and first tile token
    let rb = row_bytes(p.cols);
    let xs4 = (p.cols + 3u) / 4u;
    let chunks = (p.cols + 31u) / 32u;
    var a00 = mat4x4<f32>(); // rows rl..rl+3 x tokens tl..tl+3, as acc[token][row]
    var a10 = mat4x4<f32>(); // rows rl+4..rl+7 x tokens tl..tl+3
    var a01 = mat4x4<f32>(); // rows rl..rl+3 x tokens tl+4..tl+7 (MT == 8)
    var a11 = mat4x4<f32>();
    for (var sb = 0u; sb < chunks; sb++) {
        // Dequantize the TR rows of this slice (rows past the end repeat the last row).
        for (var rr = li; rr < TR; rr += NI) {
            let v = dequant32((p.wrow0 + min(r0 + rr, p.rows - 1u)) * rb, p.cols, sb);
            let o = rr * 8u;
            ws[o] = v[0];
            ws[o + 1u] = v[1];
            ws[o + 2u] = v[2];
            ws[o + 3u] = v[3];
            ws[o + 4u] = v[4];
            ws[o + 5u] = v[5];
            ws[o + 6u] = v[6];
            ws[o + 7u] = v[7];
        }
        // Stage TT tokens x 32 inputs (tokens past n repeat the last; the
        // partial last slice of a float-type row is zeroed past cols).
        for (var e = li; e < TT * 8u; e += NI) {
            let t = min(t0 + e / 8u, n - 1u);
            let q = e % 8u;
            let k = sb * 32u + 4u * q;
            var v = x[t * xs4 + min(k / 4u, xs4 - 1u)];
            if (k + 4u > p.cols) {
                v = select(vec4<f32>(0.0), v, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
            }
            xs[e] = v;
        }
        workgroupBarrier();
        for (var q = 0u; q < 8u; q++) {
            let w0 = transpose(w4(rl, q));
            let w1 = transpose(w4(rl + 4u, q));
            let x0 = x4(tl, q);
            a00 += w0 * x0;
            a10 += w1 * x0;
            if (MT == 8u) {
                let x1 = x4(tl + 4u, q);
                a01 += w0 * x1;
                a11 += w1 * x1;
            }
        }
        workgroupBarrier();
    }
    store4x4(a00, r0 + rl, t0 + tl, n);
    store4x4(a10, r0 + rl + 4u, t0 + tl, n);
    if (MT == 8u) {
        store4x4(a01, r0 + rl, t0 + tl + 4u, n);
        store4x4(a11, r0 + rl + 4u, t0 + tl + 4u, n);
    }
}
