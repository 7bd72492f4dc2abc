// kivi_pack: after a call's attention, quantize the staged slots that the
// boundary passes (kivi_format.wgsl): from the boundary before the call,
// kivi_qb(), to the one after it, min(kv_len, KIVI_SEQ) / KIVI_R * KIVI_R,
// past the sink, as kivi_quant.wgsl says (keys per channel over KIVI_G slots, values per
// slot over KIVI_GV channels).
//
// Bindings: k_cache (read_write), v_cache (read_write), params, step.
// Prelude consts: WG, HEAD_DIM, and KIVI's.
// Grid: grid_1d over n_kv_heads * max_groups * KIVI_CW key jobs (a head,
// a key group, a code-word column), then n_kv_heads * max_slots *
// HEAD_DIM / KIVI_GV value jobs (a head, a slot, a channel group); jobs
// past the new boundary or in the sink write nothing.

struct Params { n_kv_heads: u32, max_groups: u32, max_slots: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(1) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

const NVG: u32 = HEAD_DIM / KIVI_GV;

// The boundary before this call.
fn kivi_qb() -> u32 {
    return (min(step.kv_len, KIVI_SEQ) - min(step.n_tokens, step.kv_len)) / KIVI_R * KIVI_R;
}

// The staged f16 element.
fn src(is_k: bool, r: u32, c: u32) -> f32 {
    let i = kivi_stage_row(r) * KIVI_SW + c / 2u;
    let w = select(v_cache[KIVI_VSTAGE + i], k_cache[KIVI_KSTAGE + i], is_k);
    return half_pair(w)[c % 2u];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let q0 = kivi_qb();
    let q1 = min(step.kv_len, KIVI_SEQ) / KIVI_R * KIVI_R;
    let nk = p.n_kv_heads * p.max_groups * KIVI_CW;
    if (i < nk) {
        let g = q0 / KIVI_G + (i / KIVI_CW) % p.max_groups;
        // The group's first slot decides: q1 is a multiple of KIVI_G.
        if (!kivi_staged(g * KIVI_G, q1)) {
            kivi_key_column(i / (p.max_groups * KIVI_CW), g, i % KIVI_CW);
        }
        return;
    }
    let v = i - nk;
    let h = v / (p.max_slots * NVG);
    let s = q0 + (v / NVG) % p.max_slots;
    if (h < p.n_kv_heads && !kivi_staged(s, q1)) {
        kivi_value_group(h, s, v % NVG);
    }
}
