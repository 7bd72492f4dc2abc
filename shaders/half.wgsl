// IEEE half conversions in plain bit arithmetic (pack2x16float and
// unpack2x16float need a capability naga treats as optional). Prepended to
// the kernels that keep f16 data in u32 words whatever the device's
// shader-f16 support (Kernel::fragments).

// x rounded to the nearest half (ties to even), as its 16 bits; overflow
// gives infinity, NaN stays NaN.
fn f32_to_half(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let ef = (b >> 23u) & 0xFFu;
    let m = b & 0x7FFFFFu;
    if (ef == 0xFFu) {
        return sign | 0x7C00u | select(0u, 0x200u, m != 0u);
    }
    let e = i32(ef) - 112; // the half's biased exponent
    if (e >= 31) {
        return sign | 0x7C00u;
    }
    if (e <= 0) {
        if (e < -10) {
            return sign; // below half the smallest subnormal
        }
        let mm = m | 0x800000u;
        let shift = u32(14 - e); // 14 ..= 24
        var h = mm >> shift;
        let rem = mm & ((1u << shift) - 1u);
        let mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (h & 1u) == 1u)) {
            h += 1u;
        }
        return sign | h;
    }
    var h = (u32(e) << 10u) | (m >> 13u);
    let rem = m & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) {
        h += 1u; // a carry into the exponent is the correct rounding
    }
    return sign | h;
}

// The half in the low 16 bits of h, widened exactly. Branch-free (selects),
// so SIMD lanes holding different kinds of values stay on one path.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1Fu;
    let m = h & 0x3FFu;
    let normal = bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
    let sub = bitcast<f32>(sign | bitcast<u32>(f32(m) * 5.9604645e-8)); // m * 2^-24
    let inf_nan = bitcast<f32>(sign | 0x7F800000u | (m << 13u));
    return select(select(normal, inf_nan, e == 31u), sub, e == 0u);
}

// Two halves packed in a word, low half first (like unpack2x16float).
fn half_pair(v: u32) -> vec2<f32> {
    return vec2<f32>(half_to_f32(v & 0xFFFFu), half_to_f32(v >> 16u));
}

// Two values rounded to halves and packed, low half first (like pack2x16float).
fn pack_halves(a: f32, b: f32) -> u32 {
    return f32_to_half(a) | (f32_to_half(b) << 16u);
}
