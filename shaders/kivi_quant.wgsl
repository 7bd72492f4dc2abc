// KIVI's group quantization (kivi_format.wgsl), shared by kivi_pack (from
// the staging rows) and kivi_repack (from a compaction's dense rows). The
// kernel defines `src(is_k, r, c)`: element c of row r (= head * KIVI_SEQ
// + slot) before quantization, and binds k_cache and v_cache read_write.
// Per group of values x (KIVI's asymmetric rounding, over a fitted range):
//   lo = min x, hi = max x; of the ranges [mn, mx] = [lo + a d, hi - b d]
//   (d = (hi - lo) / 12, a and b 0 to 3), the one with the least squared
//   error (kivi_fit); scale = (mx - mn) / (2^KIVI - 1),
//   code = clamp(floor((x - mn) * (1 / scale) + 0.5), 0, 2^KIVI - 1) (0
//   where scale = 0); the word kept is (scale, mn) as halves (ties to
//   even; the codes use scale unrounded).

const KIVI_NC: u32 = 32u / KIVI; // channels per code word

fn kivi_code(x: f32, mn: f32, inv: f32) -> u32 {
    return min(KIVI_LEVELS, u32(max(0.0, floor((x - mn) * inv + 0.5))));
}

// Element i of a group: keys, channel c of row r + i; values, channel c + i of row r.
fn kivi_elem(is_k: bool, r: u32, c: u32, i: u32) -> f32 {
    if (is_k) {
        return src(true, r + i, c);
    }
    return src(false, r, c + i);
}

// The group's (minimum, scale): of the ranges [lo + a d, hi - b d] (d a
// twelfth of hi - lo, a and b 0 to 3), the one whose codes give the least
// squared error.
fn kivi_fit(is_k: bool, r: u32, c: u32, n: u32, lo: f32, hi: f32) -> vec2<f32> {
    let d = (hi - lo) / 12.0;
    var best = vec2<f32>(lo, (hi - lo) / f32(KIVI_LEVELS));
    var best_e = 3.4e38;
    for (var a = 0u; a < 4u; a++) {
        for (var b = 0u; b < 4u; b++) {
            let mn = lo + f32(a) * d;
            let scale = (hi - f32(b) * d - mn) / f32(KIVI_LEVELS);
            let inv = kivi_inverse(scale);
            var e = 0.0;
            for (var i = 0u; i < n; i++) {
                let x = kivi_elem(is_k, r, c, i);
                let y = f32(kivi_code(x, mn, inv)) * scale + mn;
                e += (y - x) * (y - x);
            }
            if (e < best_e) {
                best_e = e;
                best = vec2<f32>(mn, scale);
            }
        }
    }
    return best;
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
        let fit = kivi_fit(true, r0, c, KIVI_G, lo, hi);
        mn[j] = fit.x;
        inv[j] = kivi_inverse(fit.y);
        k_cache[base + KIVI_G * KIVI_CW + c] = pack_halves(fit.y, fit.x);
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
    let fit = kivi_fit(false, r, c0, KIVI_GV, lo, hi);
    let iv = kivi_inverse(fit.y);
    let row = (h * KIVI_NQ + s) * KIVI_VROW;
    v_cache[row + KIVI_CW + cg] = pack_halves(fit.y, fit.x);
    for (var wi = c0 / KIVI_NC; wi < (c0 + KIVI_GV) / KIVI_NC; wi++) {
        var w = 0u;
        for (var j = 0u; j < KIVI_NC; j++) {
            w |= kivi_code(src(false, r, wi * KIVI_NC + j), fit.x, iv) << (j * KIVI);
        }
        v_cache[row + wi] = w;
    }
}
