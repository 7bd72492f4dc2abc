// head_norm: RMSNorm in place over rows of `dim`, one weight vector for
// every row (QK-norm: each head of Q or K normed on its own):
//   x[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:]   for r < rows.
// One workgroup per row (a 2-D grid past 65535 rows); invocations stride
// over the row and reduce the sum of squares in workgroup memory (f32
// accumulation, as rmsnorm.wgsl). Each invocation rewrites only the
// elements it read, after the barrier that ends the reduction.
// Bindings: x (read_write), weight (read), params.
// Prelude consts: WG (workgroup size, a power of two).

struct Params { rows: u32, dim: u32, eps: f32, _p0: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    // Uniform per workgroup: the whole group leaves together.
    if (r >= p.rows) {
        return;
    }
    let base = r * p.dim;
    var ss = 0.0;
    for (var i = lid.x; i < p.dim; i += WG) {
        let v = x[base + i];
        ss += v * v;
    }
    partial[lid.x] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            partial[lid.x] += partial[lid.x + s];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
    for (var i = lid.x; i < p.dim; i += WG) {
        x[base + i] = x[base + i] * scale * weight[i];
    }
}
