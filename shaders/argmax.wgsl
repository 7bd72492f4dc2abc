// argmax: the index of the largest logit, ties to the smallest index; NaN
// never wins (comparisons with NaN are false); with no non-NaN element the
// result is (0xffffffff, -inf).
//
// Two modes (prelude const ARGMAX_MERGE):
//   0: src = n f32 logits (bound as u32 words). Workgroup g reduces logits
//      [g * block, min(n, (g + 1) * block)) and writes the record
//      dst[2g] = index, dst[2g + 1] = bits of the logit.
//   1: src = n records of mode 0; one workgroup reduces them to dst[0..2].
// With a single mode-0 workgroup (block >= n) dst[0..2] is the final answer
// directly; see ops::sample::argmax for the split actually used.
// Output record: [index u32, max logit f32 bits]; the host reads word 0.
//
// Bindings: src (read), dst (read_write), params.
// Prelude consts: WG (workgroup size, a power of two), ARGMAX_MERGE.
// Grid: mode 0: grid_1d(ceil(n / block)) workgroups; mode 1: one.

struct Params { n: u32, block: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    var start = 0u;
    var end = p.n;
    if (ARGMAX_MERGE == 0u) {
        start = g * p.block;
        if (g > 0u && start >= p.n) {
            return;
        }
        end = min(max(p.n, start) - start, p.block) + start;
    }
    var bv = bitcast<f32>(0xff800000u);
    var bi = 0xffffffffu;
    for (var e = start + lid.x; e < end; e += WG) {
        var v: f32;
        var i: u32;
        if (ARGMAX_MERGE == 0u) {
            v = bitcast<f32>(src[e]);
            i = e;
        } else {
            i = src[2u * e];
            v = bitcast<f32>(src[2u * e + 1u]);
        }
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid.x] = bv;
    best_i[lid.x] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s && better(best_v[lid.x + s], best_i[lid.x + s], best_v[lid.x], best_i[lid.x])) {
            best_v[lid.x] = best_v[lid.x + s];
            best_i[lid.x] = best_i[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let o = select(0u, 2u * g, ARGMAX_MERGE == 0u);
        dst[o] = best_i[0];
        dst[o + 1u] = bitcast<u32>(best_v[0]);
    }
}
