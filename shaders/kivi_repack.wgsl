// kivi_repack: a KIVI compaction's last step (ops::evict::kivi_compaction):
// from the kept rows, gathered dense by kv_compact into tk / tv (slots
// 0 .. counts[h] - 1 of head h), quantize the slots below the new boundary
// (the last multiple of KIVI_R at or below counts[h]) and past the sink as
// kivi_quant.wgsl says, and stage the rest in f16 (kivi_format.wgsl).
//
// Bindings: k_cache, v_cache (read_write), tk, tv, counts (read), params.
// Prelude consts: WG, HEAD_DIM, and KIVI's.
// Grid: grid_1d over n_kv_heads * (KIVI_NQ / KIVI_G) * KIVI_CW key jobs,
// then n_kv_heads * KIVI_NQ * HEAD_DIM / KIVI_GV value jobs, then
// n_kv_heads * (KIVI_SINK + KIVI_R) * HEAD_DIM / 4 staging jobs (a head, a
// sink slot or a slot past the boundary, 4 dims); jobs past the kept slots
// write nothing.

struct Params { n_kv_heads: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(1) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(2) var<storage, read> tk: array<kv4_t>;
@group(0) @binding(3) var<storage, read> tv: array<kv4_t>;
@group(0) @binding(4) var<storage, read> counts: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

const D4: u32 = HEAD_DIM / 4u;
const NG: u32 = KIVI_NQ / KIVI_G;
const NVG: u32 = HEAD_DIM / KIVI_GV;

// The gathered element.
fn src(is_k: bool, r: u32, c: u32) -> f32 {
    let e = select(tv[r * D4 + c / 4u], tk[r * D4 + c / 4u], is_k);
    return f32(e[c % 4u]);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let nk = p.n_kv_heads * NG * KIVI_CW;
    let nv = p.n_kv_heads * KIVI_NQ * NVG;
    if (i < nk) {
        let h = i / (NG * KIVI_CW);
        let g = (i / KIVI_CW) % NG;
        if (!kivi_staged(g * KIVI_G, min(counts[h], KIVI_SEQ) / KIVI_R * KIVI_R)) {
            kivi_key_column(h, g, i % KIVI_CW);
        }
        return;
    }
    if (i < nk + nv) {
        let v = i - nk;
        let h = v / (KIVI_NQ * NVG);
        let s = (v / NVG) % KIVI_NQ;
        if (!kivi_staged(s, min(counts[h], KIVI_SEQ) / KIVI_R * KIVI_R)) {
            kivi_value_group(h, s, v % NVG);
        }
        return;
    }
    let w = i - nk - nv;
    let h = w / ((KIVI_SINK + KIVI_R) * D4);
    if (h >= p.n_kv_heads) {
        return;
    }
    let n = min(counts[h], KIVI_SEQ);
    let j = (w / D4) % (KIVI_SINK + KIVI_R);
    let s = select(n / KIVI_R * KIVI_R + j - KIVI_SINK, j, j < KIVI_SINK);
    if (s >= n) {
        return;
    }
    let d = w % D4;
    let r = h * KIVI_SEQ + s;
    let at = kivi_stage_row(r) * KIVI_SW + 2u * d;
    let k = vec4<f32>(tk[r * D4 + d]);
    let v = vec4<f32>(tv[r * D4 + d]);
    k_cache[KIVI_KSTAGE + at] = pack_halves(k.x, k.y);
    k_cache[KIVI_KSTAGE + at + 1u] = pack_halves(k.z, k.w);
    v_cache[KIVI_VSTAGE + at] = pack_halves(v.x, v.y);
    v_cache[KIVI_VSTAGE + at + 1u] = pack_halves(v.z, v.w);
}
