// rmsnorm: out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight[:]
// One workgroup per token row; invocations stride over the row and reduce
// the sum of squares in workgroup memory (f32 accumulation).
// Bindings: x (read), weight (read), out (read_write), params.
// Prelude consts: WG (workgroup size, a power of two).

struct Params { n_tokens: u32, dim: u32, eps: f32, _p0: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.x;
    let base = t * p.dim;
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
        out[base + i] = x[base + i] * scale * weight[i];
    }
}
