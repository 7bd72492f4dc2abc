// quant/q6_k: super-blocks of 256 weights, 210 bytes (only 2-byte aligned):
//   ql[128] low nibbles, qh[64] high 2-bit pairs, 16 signed 8-bit scales
//   (one per 16 weights), f16 d. Weight e = 128n + 32j + l (n < 2, j < 4,
//   l < 32) has q = ((ql[64n + 32(j & 1) + l] >> 4(j >> 1)) & 15)
//   | ((qh[32n + l] >> 2j) & 3) << 4, and value (d * scale[e / 16]) * (q - 32).
// Implements the fragment contract of quant/common.wgsl (cols % 256 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 210u;
}

// The 6-bit values (0..63) of four weights from a ql word and a qh word.
fn q6_word(ql: u32, qh: u32, lshift: u32, hshift: u32) -> vec4<f32> {
    return u8x4(((ql >> lshift) & 0x0F0F0F0Fu) | (((qh >> hshift) & 0x03030303u) << 4u));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + (sb >> 3u) * 210u;
    let n = (sb >> 2u) & 1u;
    let j = sb & 3u;
    let ql = w_u32x8(b + 64u * n + 32u * (j & 1u));
    let qh = w_u32x8(b + 128u + 32u * n);
    let ls = 4u * (j >> 1u);
    let hs = 2u * j;
    // Scales of weights l < 16 and l >= 16: two adjacent bytes at an even offset.
    let sc2 = w_u16(b + 192u + 8u * n + 2u * j);
    let scs = bitcast<vec2<i32>>(vec2<u32>(sc2 << 24u, sc2 << 16u)) >> vec2<u32>(24u);
    let d = w_f16(b + 208u);
    let lo = d * f32(scs.x);
    let hi = d * f32(scs.y);
    return array<vec4<f32>, 8>(
        lo * (q6_word(ql[0], qh[0], ls, hs) - 32.0), lo * (q6_word(ql[1], qh[1], ls, hs) - 32.0),
        lo * (q6_word(ql[2], qh[2], ls, hs) - 32.0), lo * (q6_word(ql[3], qh[3], ls, hs) - 32.0),
        hi * (q6_word(ql[4], qh[4], ls, hs) - 32.0), hi * (q6_word(ql[5], qh[5], ls, hs) - 32.0),
        hi * (q6_word(ql[6], qh[6], ls, hs) - 32.0), hi * (q6_word(ql[7], qh[7], ls, hs) - 32.0));
}

fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    return dot_chunk(dequant32(row_byte, cols, sb), xv);
}
