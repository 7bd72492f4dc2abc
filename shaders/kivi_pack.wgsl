// kivi_pack: after a call's attention, quantize the staged slots that the
// boundary passes (kivi_format.wgsl): from the boundary before the call,
// kivi_qb(), to the one after it, min(kv_len, KIVI_SEQ) / KIVI_R * KIVI_R.
// KIVI's asymmetric rounding, per group of values x (f16 staging rows):
//   mn = min x, mx = max x, scale = (mx - mn) / (2^KIVI - 1),
//   code = min(2^KIVI - 1, floor((x - mn) * (1 / scale) + 0.5)) (0 where
//   scale = 0); the word kept is (scale, mn) as halves (ties to even; the
//   codes use scale unrounded). Keys: a group is one channel over KIVI_G
//   slots; values: KIVI_GV channels of one slot.
//
// Bindings: k_cache (read_write), v_cache (read_write), params, step.
// Prelude consts: WG, HEAD_DIM, and KIVI's.
// Grid: grid_1d over n_kv_heads * max_groups * KIVI_CW key jobs (a head,
// a key group, a code-word column: 32 / KIVI channels), then
// n_kv_heads * max_slots * HEAD_DIM / KIVI_GV value jobs (a head, a slot,
// a channel group); jobs past the new boundary write nothing.

struct Params { n_kv_heads: u32, max_groups: u32, max_slots: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(1) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

const NC: u32 = 32u / KIVI; // channels per code word
const NVG: u32 = HEAD_DIM / KIVI_GV;

fn staged(is_k: bool, r: u32, c: u32) -> f32 {
    let i = kivi_stage_row(r) * KIVI_SW + c / 2u;
    let w = select(v_cache[KIVI_VSTAGE + i], k_cache[KIVI_KSTAGE + i], is_k);
    return half_pair(w)[c % 2u];
}

fn code(x: f32, mn: f32, inv: f32) -> u32 {
    return min(KIVI_LEVELS, u32(floor((x - mn) * inv + 0.5)));
}

fn inverse(scale: f32) -> f32 {
    return select(0.0, 1.0 / scale, scale > 0.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let q0 = kivi_qb();
    let q1 = min(step.kv_len, KIVI_SEQ) / KIVI_R * KIVI_R;
    let nk = p.n_kv_heads * p.max_groups * KIVI_CW;
    if (i < nk) {
        let h = i / (p.max_groups * KIVI_CW);
        let g = q0 / KIVI_G + (i / KIVI_CW) % p.max_groups;
        let col = i % KIVI_CW;
        if ((g + 1u) * KIVI_G > q1) {
            return;
        }
        let r0 = h * KIVI_SEQ + g * KIVI_G;
        let base = kivi_kbase(r0);
        var mn: array<f32, 16>;
        var inv: array<f32, 16>;
        for (var j = 0u; j < NC; j++) {
            let c = col * NC + j;
            var lo = staged(true, r0, c);
            var hi = lo;
            for (var t = 1u; t < KIVI_G; t++) {
                let x = staged(true, r0 + t, c);
                lo = min(lo, x);
                hi = max(hi, x);
            }
            let scale = (hi - lo) / f32(KIVI_LEVELS);
            mn[j] = lo;
            inv[j] = inverse(scale);
            k_cache[base + KIVI_G * KIVI_CW + c] = pack_halves(scale, lo);
        }
        for (var t = 0u; t < KIVI_G; t++) {
            var w = 0u;
            for (var j = 0u; j < NC; j++) {
                w |= code(staged(true, r0 + t, col * NC + j), mn[j], inv[j]) << (j * KIVI);
            }
            k_cache[base + t * KIVI_CW + col] = w;
        }
        return;
    }
    let v = i - nk;
    let h = v / (p.max_slots * NVG);
    let s = q0 + (v / NVG) % p.max_slots;
    let cg = v % NVG;
    if (h >= p.n_kv_heads || s >= q1) {
        return;
    }
    let r = h * KIVI_SEQ + s;
    let c0 = cg * KIVI_GV;
    var lo = staged(false, r, c0);
    var hi = lo;
    for (var c = c0 + 1u; c < c0 + KIVI_GV; c++) {
        let x = staged(false, r, c);
        lo = min(lo, x);
        hi = max(hi, x);
    }
    let scale = (hi - lo) / f32(KIVI_LEVELS);
    let iv = inverse(scale);
    let row = (h * KIVI_NQ + s) * KIVI_VROW;
    v_cache[row + KIVI_CW + cg] = pack_halves(scale, lo);
    for (var wi = c0 / NC; wi < (c0 + KIVI_GV) / NC; wi++) {
        var w = 0u;
        for (var j = 0u; j < NC; j++) {
            w |= code(staged(false, r, wi * NC + j), lo, iv) << (j * KIVI);
        }
        v_cache[row + wi] = w;
    }
}
