// KIVI's cache format (spec consts KIVI = 2 or 4 bits, KIVI_G, KIVI_GV,
// KIVI_R, KIVI_SINK, KIVI_SEQ, KIVI_STAGE, KIVI_HEADS), shared by kivi_append and
// kivi_pack (which write it) and every kernel that reads the cache through
// kv_k / kv_v (kernels.rs generates those two).
//
// A slot below the boundary kivi_qb() and past the sink (the first
// KIVI_SINK slots, a multiple of KIVI_G) is quantized; the rest (the sink,
// fewer than KIVI_R older ones, plus the call's own) are f16 rows in a
// staging area (kivi_staged):
//   keys per channel over groups of KIVI_G slots: for group g of head h,
//     KIVI_G token rows of KIVI_CW code words (channel c of a row at word
//     c * KIVI / 32, bits KIVI * (c % (32 / KIVI)) ..), then HEAD_DIM
//     words, one per channel: its scale and minimum as two halves (low
//     first); x = code * scale + min;
//   values per token over groups of KIVI_GV channels: a row of KIVI_CW code
//     words (the same order), then one (scale, minimum) word per group.
// The boundary is a multiple of KIVI_R: slots below the last multiple at or
// below the cached length before this call, (kv_len - n_tokens) / R * R
// (kivi_qb(), which the kernels reading the cache and kivi_pack define from
// their step or length); kivi_pack quantizes the slots that pass it after
// the call's attention.
// k_cache: [KIVI_HEADS][KIVI_NQ / KIVI_G][KIVI_KG] u32, then the staging
// rows [KIVI_HEADS][KIVI_STAGE][HEAD_DIM / 2] u32 (two halves a word);
// v_cache: [KIVI_HEADS][KIVI_NQ][KIVI_VROW] u32, then staging likewise.
// A sink slot s stages in row s of its head, any other in row KIVI_SINK +
// (s - KIVI_SINK) % KIVI_RING (KIVI_STAGE >= KIVI_SINK + KIVI_R + the most
// tokens of a call, so the rows past the boundary never collide). The
// quantized area keeps room for the sink's slots, unused.

const KIVI_CW: u32 = HEAD_DIM * KIVI / 32u;
const KIVI_KG: u32 = KIVI_G * KIVI_CW + HEAD_DIM;
const KIVI_VROW: u32 = KIVI_CW + HEAD_DIM / KIVI_GV;
const KIVI_NQ: u32 = KIVI_SEQ / KIVI_R * KIVI_R;
const KIVI_KSTAGE: u32 = KIVI_HEADS * (KIVI_NQ / KIVI_G) * KIVI_KG;
const KIVI_VSTAGE: u32 = KIVI_HEADS * KIVI_NQ * KIVI_VROW;
const KIVI_SW: u32 = HEAD_DIM / 2u;
const KIVI_LEVELS: u32 = (1u << KIVI) - 1u;
const KIVI_RING: u32 = max(KIVI_STAGE, KIVI_SINK + 1u) - KIVI_SINK;

// Whether slot s is an f16 staging row when the boundary is qb.
fn kivi_staged(s: u32, qb: u32) -> bool {
    return s >= qb || s < KIVI_SINK;
}

// The codes of channels 4 d .. 4 d + 3 from their code word w.
fn kivi_codes(w: u32, d: u32) -> vec4<f32> {
    let sh = (d % (8u / KIVI)) * 4u * KIVI + vec4<u32>(0u, 1u, 2u, 3u) * KIVI;
    return vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(KIVI_LEVELS));
}

// Staging row of row r (= head * KIVI_SEQ + slot).
fn kivi_stage_row(r: u32) -> u32 {
    let s = r % KIVI_SEQ;
    let row = select(KIVI_SINK + (s - KIVI_SINK) % KIVI_RING, s, s < KIVI_SINK);
    return (r / KIVI_SEQ) * KIVI_STAGE + row;
}

// Key group base word of row r's slot (below the boundary).
fn kivi_kbase(r: u32) -> u32 {
    return ((r / KIVI_SEQ) * (KIVI_NQ / KIVI_G) + (r % KIVI_SEQ) / KIVI_G) * KIVI_KG;
}
