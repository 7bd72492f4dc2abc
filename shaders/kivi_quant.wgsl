// KIVI's group quantization (kivi_format.wgsl), shared by kivi_pack (from
// the staging rows) and kivi_repack (from a compaction's dense rows). The
// kernel defines `src(is_k, r, c)`: element c of row r (= head * KIVI_SEQ
// + slot) before quantization, and binds k_cache and v_cache read_write.
// Per group of values x (KIVI's asymmetric rounding):
//   mn = min x, mx = max x, scale = (mx - mn) / (2^KIVI - 1),
//   code = min(2^KIVI - 1, floor((x - mn) * (1 / scale) + 0.5)) (0 where
//   scale = 0); the word kept is (scale, mn) as halves (ties to even; the
//   codes use scale unrounded).

const KIVI_NC: u32 = 32u / KIVI; // channels per code word

fn kivi_code(x: f32, mn: f32, inv: f32) -> u32 {
    return min(KIVI_LEVELS, u32(floor((x - mn) * inv + 0.5)));
}

fn kivi_inverse(scale: f32) -> f32 {
    return select(0.0, 1.0 / scale, scale > 0.0);
}

// Key group g of head h, code-word column col (KIVI_NC channels): one
// group per channel over the group's KIVI_G slots.
fn kivi_key_column(h: u32, g: u32, col: u32) {
    let r0 = h * KIVI_SEQ + g * KIVI_G;
    let base = kivi_kbase(r0);
    var mn: array<f32, 16>;
    var inv: array<f32, 16>;
    for (var j = 0u; j < KIVI_NC; j++) {
        let c = col * KIVI_NC + j;
        var lo = src(true, r0, c);
        var hi = lo;
        for (var t = 1u; t < KIVI_G; t++) {
            let x = src(true, r0 + t, c);
            lo = min(lo, x);
            hi = max(hi, x);
        }
        let scale = (hi - lo) / f32(KIVI_LEVELS);
        mn[j] = lo;
        inv[j] = kivi_inverse(scale);
        k_cache[base + KIVI_G * KIVI_CW + c] = pack_halves(scale, lo);
    }
    for (var t = 0u; t < KIVI_G; t++) {
        var w = 0u;
        for (var j = 0u; j < KIVI_NC; j++) {
            w |= kivi_code(src(true, r0 + t, col * KIVI_NC + j), mn[j], inv[j]) << (j * KIVI);
        }
        k_cache[base + t * KIVI_CW + col] = w;
    }
}

// Value channel group cg (KIVI_GV channels) of slot s of head h.
fn kivi_value_group(h: u32, s: u32, cg: u32) {
    let r = h * KIVI_SEQ + s;
    let c0 = cg * KIVI_GV;
    var lo = src(false, r, c0);
    var hi = lo;
    for (var c = c0 + 1u; c < c0 + KIVI_GV; c++) {
        let x = src(false, r, c);
        lo = min(lo, x);
        hi = max(hi, x);
    }
    let scale = (hi - lo) / f32(KIVI_LEVELS);
    let iv = kivi_inverse(scale);
    let row = (h * KIVI_NQ + s) * KIVI_VROW;
    v_cache[row + KIVI_CW + cg] = pack_halves(scale, lo);
    for (var wi = c0 / KIVI_NC; wi < (c0 + KIVI_GV) / KIVI_NC; wi++) {
        var w = 0u;
        for (var j = 0u; j < KIVI_NC; j++) {
            w |= kivi_code(src(false, r, wi * KIVI_NC + j), lo, iv) << (j * KIVI);
        }
        v_cache[row + wi] = w;
    }
}
