// quant/q3_k: super-blocks of 256 weights, 110 bytes (only 2-byte aligned):
//   hmask[32] high bits, qs[64] low 2-bit pairs, 12 bytes of packed 6-bit
//   scales (one per 16 weights, stored + 32), f16 d. Weight e = 128n + 32j + l
//   (n < 2, j < 4, l < 32) has q = ((qs[32n + l] >> 2j) & 3) - 4 + 4 * bit,
//   bit = (hmask[l] >> (4n + j)) & 1, and value (d * (scale[e / 16] - 32)) * q.
//   Scale i: low 4 bits from byte i (i < 8) or the high nibble of byte i - 8,
//   top 2 bits from byte 8 + i % 4 at bit 2(i / 4).
// 32-weight chunk c (0..7) of a super-block: qs bytes 32(c / 4).., shift
// 2(c % 4), hmask bit c, scales 2c (weights l < 16) and 2c + 1 (l >= 16).
// Implements the fragment contract of quant/common.wgsl (cols % 256 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 110u;
}

// The 3-bit values (0..7, i.e. q + 4) of four weights: low pairs at bit `ls`
// of the qs word `v`, high bits at bit `hs` of the hmask word `h`.
fn q3_word(v: u32, h: u32, ls: u32, hs: u32) -> vec4<f32> {
    return u8x4(((v >> ls) & 0x03030303u) | (((h >> hs) & 0x01010101u) << 2u));
}

// d * (scale - 32) of the chunk's first 16 weights (x) and last 16 (y).
fn q3k_scales(b: u32, c: u32) -> vec2<f32> {
    // Scales 2c and 2c + 1: low bits in two adjacent bytes at an even
    // offset, top bits in two adjacent bytes 8 + 2(c & 1) .. at bit 2(c >> 1).
    let lo = (w_u16(b + 96u + 2u * (c & 3u)) >> (4u * (c >> 2u))) & 0x0F0Fu;
    let hi = (w_u16(b + 104u + 2u * (c & 1u)) >> (2u * (c >> 1u))) & 0x0303u;
    let s = lo | (hi << 4u);
    return w_f16(b + 108u) * (vec2<f32>(vec2<u32>(s & 0xFFu, s >> 8u)) - 32.0);
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + (sb >> 3u) * 110u;
    let c = sb & 7u;
    let q = w_u32x8(b + 32u + 32u * (c >> 2u));
    let h = w_u32x8(b);
    let ls = 2u * (c & 3u);
    let d = q3k_scales(b, c);
    return array<vec4<f32>, 8>(
        d.x * (q3_word(q[0], h[0], ls, c) - 4.0), d.x * (q3_word(q[1], h[1], ls, c) - 4.0),
        d.x * (q3_word(q[2], h[2], ls, c) - 4.0), d.x * (q3_word(q[3], h[3], ls, c) - 4.0),
        d.y * (q3_word(q[4], h[4], ls, c) - 4.0), d.y * (q3_word(q[5], h[5], ls, c) - 4.0),
        d.y * (q3_word(q[6], h[6], ls, c) - 4.0), d.y * (q3_word(q[7], h[7], ls, c) - 4.0));
}

fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    return dot_chunk(dequant32(row_byte, cols, sb), xv);
}
