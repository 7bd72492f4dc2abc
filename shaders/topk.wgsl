// topk: the K largest logits with their indices, sorted by value descending,
// ties to the smaller index, plus the max and sum of exp over ALL logits.
//
// Order: every element gets a 64-bit composite key (hi, lo): hi maps the f32
// bits to an order-preserving u32 (-0 as +0, NaN below -inf), lo = ~index,
// so composites are distinct and "larger composite" is exactly "larger
// value, then smaller index". The top K are the K largest composites.
//
// Record (4 + 2K words; the host reads one):
//   [0] max logit (f32)      [1] sum_i exp(logit_i - max) (f32)
//   [2] max + ln(sum) (f32)  [3] number of valid candidates c = min(K, n)
//   [4 + 2r] index (u32), [5 + 2r] logit (f32 bits), rank r = 0..K;
//   ranks >= c hold (0xffffffff, -inf).
// An all -inf (or empty) input gives max -inf, sum 0.
//
// Modes (prelude const TOPK_MERGE):
//   0: src = n f32 logits (bound as u32 words); workgroup g handles logits
//      [g * block, min(n, (g + 1) * block)) and writes record g.
//   1: src = n records of mode 0; one workgroup merges them into record 0.
//
// Per workgroup (E elements, WG invocations, a strided share each):
//   A. each invocation's largest element -> ids; block max key by atomicMax;
//   B. radix-select the K-th largest of those WG maxima: a threshold that at
//      least K elements reach (each of the K invocations owns one);
//   C. one pass over the elements: sum of exp, and compaction of (the ids of)
//      those at or above the threshold (typically ~K..2K of them);
//   D. radix-select (8-bit digits over the composite, stopping as soon as the
//      selected set is determined) the exact top K among the compacted
//      elements, or, when more than CAP reached the threshold (adversarial
//      inputs), among all elements again;
//   E. keep those K and sort them by counting ranks (K x K compares).
// Only pass C touches every element with more than integer compares.
//
// Bindings: src (read), dst (read_write), params.
// Prelude consts: WG (workgroup size, at most 256; >= K for the fast path),
// K, TOPK_MERGE.
// Grid: mode 0: grid_1d(ceil(n / block)); mode 1: one workgroup.

struct Params { n: u32, block: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

const REC: u32 = 4u + 2u * K;
// Candidates compacted into workgroup memory (also holds the WG maxima).
const CAP: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const NEG_INF_BITS: u32 = 0xff800000u;

// Element sources for `elem` and `radix_select`.
const SRC_INPUT: u32 = 0u;
const SRC_IDS: u32 = 1u;

// Workgroup memory is kept to ~600 words on purpose: wgpu zero-initialises
// it, and Mesa's GL compiles that as one store per word, in time growing with
// the square of the count (the 2.7K words of a first draft took 40 s to
// compile there, this ~2 s). Hence element ids rather than keys and values,
// and arrays reused across phases.
// hist: radix histograms; at the end, each invocation's sum of exp (bits).
var<workgroup> hist: array<atomic<u32>, 256>;
// ids: phase A/B each invocation's largest element; phases C/D the compacted ones.
var<workgroup> ids: array<u32, CAP>;
// The final K element ids.
var<workgroup> f_e: array<u32, K>;
var<workgroup> n_compact: atomic<u32>;
var<workgroup> n_final: atomic<u32>;
var<workgroup> key_max: atomic<u32>;
// Result of the last radix select: prefix hi/lo, mask hi/lo, remaining, done.
var<workgroup> sel: array<u32, 6>;
var<workgroup> flag: u32;

var<private> first_idx: u32; // mode 0: index of this workgroup's first logit

// An element of the input: composite key (hi, lo), logit bits and id (its
// position in this workgroup's input); hi = lo = 0 marks "no element" (a real
// element always has lo = ~index != 0).
struct Elem { hi: u32, lo: u32, bits: u32, id: u32 }

// Order-preserving map of f32 bits to u32; integer-only so that NaN and
// -inf are handled the same on every implementation.
fn key_of(bits: u32) -> u32 {
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0u; // NaN: below everything
    }
    var b = bits;
    if (b == 0x80000000u) {
        b = 0u; // -0 == +0
    }
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn bits_of(key: u32) -> u32 {
    if ((key & 0x80000000u) != 0u) {
        return key & 0x7fffffffu;
    }
    return ~key;
}

// Input element `id`: logit first_idx + id (mode 0) or candidate id of the
// records (mode 1).
fn input(id: u32) -> Elem {
    if (TOPK_MERGE == 0u) {
        let b = src[first_idx + id];
        return Elem(key_of(b), ~(first_idx + id), b, id);
    }
    let r = id / K;
    let at = r * REC + 4u + 2u * (id - r * K);
    let idx = src[at];
    if (idx == NONE) {
        return Elem(0u, 0u, 0u, NONE);
    }
    let b = src[at + 1u];
    return Elem(key_of(b), ~idx, b, id);
}

// Element e of a source: the input itself, or the one whose id is ids[e].
fn elem(source: u32, e: u32) -> Elem {
    var id = e;
    if (source == SRC_IDS) {
        id = ids[e];
        if (id == NONE) {
            return Elem(0u, 0u, 0u, NONE);
        }
    }
    return input(id);
}

fn greater(a: Elem, bh: u32, bl: u32) -> bool {
    return a.hi > bh || (a.hi == bh && a.lo > bl);
}

// Whether x is among the elements selected by threshold t (see radix_select).
fn selected(x: Elem, t: vec4<u32>) -> bool {
    let h = x.hi & t.z;
    let l = x.lo & t.w;
    return (x.hi | x.lo) != 0u && (h > t.x || (h == t.x && l >= t.y));
}

// Threshold (prefix hi, prefix lo, mask hi, mask lo) such that `selected`
// holds for exactly min(want, valid elements) of elements 0..count of
// `source`. Call from uniform control flow with uniform arguments.
fn radix_select(source: u32, count: u32, want: u32, lid: u32) -> vec4<u32> {
    var t = vec4<u32>(0u);
    if (lid == 0u) {
        sel = array<u32, 6>(0u, 0u, 0u, 0u, want, 0u);
    }
    for (var d = 0u; d < 8u; d++) {
        for (var b = lid; b < 256u; b += WG) {
            atomicStore(&hist[b], 0u);
        }
        workgroupBarrier();
        let shift = 24u - 8u * (d & 3u);
        for (var e = lid; e < count; e += WG) {
            let x = elem(source, e);
            if ((x.hi | x.lo) != 0u && (x.hi & t.z) == t.x && (x.lo & t.w) == t.y) {
                let w = select(x.lo, x.hi, d < 4u);
                atomicAdd(&hist[(w >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            let rem = sel[4];
            var above = 0u;
            var c = 0u;
            var b = 256u;
            loop {
                b -= 1u;
                c = atomicLoad(&hist[b]);
                if (above + c >= rem || b == 0u) {
                    break;
                }
                above += c;
            }
            if (above + c < rem) {
                // Fewer valid elements than wanted (only on the first digit): take all.
                sel = array<u32, 6>(0u, 0u, 0u, 0u, 0u, 1u);
            } else {
                let left = rem - above;
                if (d < 4u) {
                    sel[0] |= b << shift;
                    sel[2] |= 255u << shift;
                } else {
                    sel[1] |= b << shift;
                    sel[3] |= 255u << shift;
                }
                sel[4] = left;
                // Everything sharing the prefix is needed: the set is determined.
                sel[5] = select(0u, 1u, c == left);
            }
            flag = sel[5];
        }
        let done = workgroupUniformLoad(&flag);
        t = vec4<u32>(sel[0], sel[1], sel[2], sel[3]);
        if (done != 0u) {
            break;
        }
    }
    return t;
}

// Copy the ids of the elements of `source` selected by `t` into f_e (at most K).
fn keep_final(source: u32, count: u32, t: vec4<u32>, lid: u32) {
    for (var e = lid; e < count; e += WG) {
        let x = elem(source, e);
        if (selected(x, t)) {
            let slot = atomicAdd(&n_final, 1u);
            if (slot < K) {
                f_e[slot] = x.id;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lid = lid3.x;
    let g = wid.x + wid.y * nwg.x;
    var count = p.n * K; // input elements of this workgroup
    var out = 0u;
    first_idx = 0u;
    if (TOPK_MERGE == 0u) {
        first_idx = g * p.block;
        if (g > 0u && first_idx >= p.n) {
            return;
        }
        count = min(p.n - first_idx, p.block);
        out = g * REC;
    }
    if (lid == 0u) {
        atomicStore(&n_compact, 0u);
        atomicStore(&n_final, 0u);
        atomicStore(&key_max, 0u);
    }
    workgroupBarrier();

    // A. Largest composite of each invocation's share; block max key.
    var bh = 0u;
    var bl = 0u;
    var be = NONE;
    for (var e = lid; e < count; e += WG) {
        let x = input(e);
        if (greater(x, bh, bl)) {
            bh = x.hi;
            bl = x.lo;
            be = e;
        }
    }
    ids[lid] = be;
    atomicMax(&key_max, bh);
    workgroupBarrier();
    let kmax = atomicLoad(&key_max);
    // No non-NaN element (n = 0, or all NaN): report a max of -inf.
    let max_bits = select(bits_of(kmax), NEG_INF_BITS, kmax == 0u);
    let mx = bitcast<f32>(max_bits);

    // B. Threshold reached by at least K elements.
    let tb = radix_select(SRC_IDS, WG, K, lid);

    // C. Sum of exp (mode 0) and compaction of the candidates (ids is free
    // again: radix_select ends with a barrier after its last read).
    var s = 0.0;
    for (var e = lid; e < count; e += WG) {
        let x = input(e);
        if (TOPK_MERGE == 0u && x.bits != NEG_INF_BITS) {
            s += exp(bitcast<f32>(x.bits) - mx);
        }
        if (selected(x, tb)) {
            let slot = atomicAdd(&n_compact, 1u);
            if (slot < CAP) {
                ids[slot] = e;
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        flag = atomicLoad(&n_compact);
    }
    let n_c = workgroupUniformLoad(&flag);

    // D. Exact top K, from the compacted candidates when they all fit.
    if (n_c <= CAP) {
        let t = radix_select(SRC_IDS, n_c, K, lid);
        keep_final(SRC_IDS, n_c, t, lid);
    } else {
        let t = radix_select(SRC_INPUT, count, K, lid);
        keep_final(SRC_INPUT, count, t, lid);
    }
    workgroupBarrier();

    // E. Rank by counting, write the sorted pairs.
    let nf = min(atomicLoad(&n_final), K);
    for (var c = lid; c < nf; c += WG) {
        let x = input(f_e[c]);
        var rank = 0u;
        for (var o = 0u; o < nf; o++) {
            if (greater(input(f_e[o]), x.hi, x.lo)) {
                rank += 1u;
            }
        }
        dst[out + 4u + 2u * rank] = ~x.lo;
        dst[out + 5u + 2u * rank] = x.bits;
    }
    for (var r = nf + lid; r < K; r += WG) {
        dst[out + 4u + 2u * r] = NONE;
        dst[out + 5u + 2u * r] = NEG_INF_BITS;
    }
    atomicStore(&hist[lid], bitcast<u32>(s));
    workgroupBarrier();
    if (lid == 0u) {
        var m = mx;
        var total = 0.0;
        if (TOPK_MERGE == 0u) {
            if (max_bits != NEG_INF_BITS) {
                for (var i = 0u; i < WG; i++) {
                    total += bitcast<f32>(atomicLoad(&hist[i]));
                }
            }
        } else {
            // Combine the records' (max, sum): sum_g sum_g * exp(max_g - max).
            m = bitcast<f32>(src[0]);
            for (var r = 1u; r < p.n; r++) {
                m = max(m, bitcast<f32>(src[r * REC]));
            }
            if (bitcast<u32>(m) != NEG_INF_BITS) {
                for (var r = 0u; r < p.n; r++) {
                    let mr = src[r * REC];
                    if (mr != NEG_INF_BITS) {
                        total += bitcast<f32>(src[r * REC + 1u]) * exp(bitcast<f32>(mr) - m);
                    }
                }
            }
        }
        dst[out] = bitcast<u32>(m);
        dst[out + 1u] = bitcast<u32>(total);
        dst[out + 2u] = bitcast<u32>(m + log(total));
        dst[out + 3u] = nf;
    }
}
