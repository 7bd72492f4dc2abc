// matmul: Y[t, r] = sum_k W[r, k] * X[t, k] for prefill (Y[t, r] += ... when
// ACCUM == 1), t < min(step.n_tokens, p.n_tokens). A workgroup owns a tile of
// TR weight rows x TT tokens: per 32-wide slice of k it dequantizes its W rows
// once (the weight type's `dequant32`) and stages its X rows, both in
// workgroup memory, then every invocation accumulates a 4x4 register tile
// (4 rows x 4 tokens) in f32.
// Bindings: w (read, binding 0, declared in quant/common.wgsl), x (read,
//   [n_tokens, cols] f32), y (read_write, [n_tokens, rows] f32), params,
//   step (ops::Step uniform; only n_tokens is used).
// Prelude consts: TR, TT (multiples of 4), ACCUM (0 or 1).
// Grid: [ceil(rows / TR), ceil(n_tokens / TT), 1] workgroups of
//   (TR / 4) * (TT / 4) invocations; token tiles past step.n_tokens exit.

struct Params { rows: u32, cols: u32, n_tokens: u32, _p0: u32 }
struct Step { pos: u32, n_tokens: u32, kv_len: u32, _p0: u32 }

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const NI: u32 = (TR / 4u) * (TT / 4u);

// k-major tiles: ws[k * TR/4 + g] holds rows 4g..4g+3 at column k of the
// slice, xs[k * TT/4 + g] tokens 4g..4g+3, so the inner loop reads one vec4
// of each per k.
var<workgroup> ws: array<vec4<f32>, 8u * TR>;
var<workgroup> xs: array<vec4<f32>, 8u * TT>;

@compute @workgroup_size(NI)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = min(step.n_tokens, p.n_tokens);
    let r0 = wid.x * TR;
    let t0 = wid.y * TT;
    if (t0 >= n) {
        return; // uniform across the workgroup
    }
    let tg = li % (TT / 4u); // this invocation's token group
    let rg = li / (TT / 4u); // and row group
    let rb = row_bytes(p.cols);
    let chunks = (p.cols + 31u) / 32u;
    var acc: array<vec4<f32>, 4>; // acc[j][c]: row 4rg+c, token 4tg+j
    for (var sb = 0u; sb < chunks; sb++) {
        // Dequantize TR rows of this 32-wide slice.
        for (var rr = li; rr < TR; rr += NI) {
            let r = r0 + rr;
            var v: array<vec4<f32>, 8>;
            if (r < p.rows) {
                v = dequant32(r * rb, p.cols, sb);
            }
            for (var i = 0u; i < 8u; i++) {
                for (var c = 0u; c < 4u; c++) {
                    ws[(4u * i + c) * (TR / 4u) + rr / 4u][rr % 4u] = v[i][c];
                }
            }
        }
        // Stage TT tokens x 32 inputs, four consecutive k per step.
        for (var e = li; e < TT * 8u; e += NI) {
            let tt = e / 8u;
            let q = e % 8u;
            let t = t0 + tt;
            let k = sb * 32u + 4u * q;
            var xv = vec4<f32>(0.0);
            if (t < n) {
                let b = t * p.cols + k;
                xv = vec4<f32>(x[b], x[b + 1u], x[b + 2u], x[b + 3u]);
                if (k + 4u > p.cols) {
                    xv = select(vec4<f32>(0.0), xv, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols));
                }
            }
            for (var c = 0u; c < 4u; c++) {
                xs[(4u * q + c) * (TT / 4u) + tt / 4u][tt % 4u] = xv[c];
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let a = ws[k * (TR / 4u) + rg];
            let b = xs[k * (TT / 4u) + tg];
            acc[0] += a * b.x;
            acc[1] += a * b.y;
            acc[2] += a * b.z;
            acc[3] += a * b.w;
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * tg + j;
        if (t < n) {
            for (var c = 0u; c < 4u; c++) {
                let r = r0 + 4u * rg + c;
                if (r < p.rows) {
                    let o = t * p.rows + r;
                    if (ACCUM == 1u) {
                        y[o] += acc[j][c];
                    } else {
                        y[o] = acc[j][c];
                    }
                }
            }
        }
    }
}
