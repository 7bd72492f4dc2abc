// evict_select: the slots one layer keeps, per KV head h (one workgroup
// each): the top p.keep of the p.len cached slots by score, the first
// p.sinks and the last p.recent slots always among them (they rank above
// every score); ties at the threshold go to the later slot. The kept slots
// are listed in increasing order (what kv_compact gathers):
//   list[h][0 .. counts[h]] , counts[h] = min(p.keep, p.len).
// p.keep >= p.len keeps everything.
//
// Layout: score [n_kv_heads][max_seq] f32 from p.score_base (evict_score's); list
// [n_kv_heads][max_keep] u32; counts [n_kv_heads] u32.
// Bindings: score (read), list, counts (read_write), params.
// Fragments: score_key, radix_select. Workgroup size 256.
// Grid: (1, n_kv_heads, 1). Each invocation walks 6 * ceil(len / 256) keys
// and its lane 0 two loops of 256.

struct Params { max_seq: u32, len: u32, keep: u32, sinks: u32, recent: u32, max_keep: u32, score_base: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> score: array<f32>;
@group(0) @binding(1) var<storage, read_write> list: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
// Params come in a storage buffer, not a uniform: lavapipe inlines small
// uniforms into the shader and compiles (and keeps) a variant per value, so
// per-cut values in a uniform grew its memory by megabytes per cut.
@group(0) @binding(3) var<storage, read> p: Params;

var<private> row: u32;
var<workgroup> seg_gt: array<u32, 256>;
var<workgroup> seg_eq: array<u32, 256>;
var<workgroup> eq_after: array<u32, 256>;
var<workgroup> seg_off: array<u32, 256>;

fn select_key(i: u32) -> u32 {
    if (i < p.sinks || i + p.recent >= p.len) {
        return 0xffffffffu;
    }
    return score_key(score[row + i]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let h = wid.y;
    let n = min(p.len, p.max_seq);
    let out = h * p.max_keep;
    row = p.score_base + h * p.max_seq;
    if (p.keep >= n) {
        for (var i = lid; i < n; i += 256u) {
            list[out + i] = i;
        }
        if (lid == 0u) {
            counts[h] = n;
        }
        return;
    }
    let r = radix_select(lid, n, p.keep);
    let t = r.x;
    let need = r.y;
    // Each invocation owns a contiguous run of slots.
    let seg = (n + 255u) / 256u;
    let lo = min(lid * seg, n);
    let hi = min(lo + seg, n);
    var gt = 0u;
    var eq = 0u;
    for (var i = lo; i < hi; i++) {
        let k = select_key(i);
        gt += select(0u, 1u, k > t);
        eq += select(0u, 1u, k == t);
    }
    seg_gt[lid] = gt;
    seg_eq[lid] = eq;
    workgroupBarrier();
    if (lid == 0u) {
        var after = 0u;
        for (var s = 256u; s > 0u; s--) {
            eq_after[s - 1u] = after;
            after += seg_eq[s - 1u];
        }
        var off = 0u;
        for (var s = 0u; s < 256u; s++) {
            seg_off[s] = off;
            off += seg_gt[s] + min(seg_eq[s], need - min(need, eq_after[s]));
        }
        counts[h] = off;
    }
    workgroupBarrier();
    var o = seg_off[lid];
    let ea = eq_after[lid];
    var seen = 0u;
    for (var i = lo; i < hi; i++) {
        let k = select_key(i);
        var kept = k > t;
        if (k == t) {
            seen += 1u;
            kept = ea + (eq - seen) < need;
        }
        if (kept) {
            list[out + o] = i;
            o += 1u;
        }
    }
}
