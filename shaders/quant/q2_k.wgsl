// quant/q2_k: super-blocks of 256 weights, 84 bytes (always 4-byte aligned):
//   16 scale bytes (one per 16 weights: low nibble scale, high nibble min),
//   qs[64] of 2-bit quants, f16 d, f16 dmin. Weight e = 128n + 32j + l
//   (n < 2, j < 4, l < 32) has q = (qs[32n + l] >> 2j) & 3 and value
//   (d * (sc[e / 16] & 15)) * q - dmin * (sc[e / 16] >> 4).
// 32-weight chunk c (0..7) of a super-block: qs bytes 32(c / 4).., shift
// 2(c % 4), scale bytes 2c (weights l < 16) and 2c + 1 (l >= 16).
// Implements the fragment contract of quant/common.wgsl (cols % 256 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 84u;
}

// The 2-bit quants of four weights at bit `shift` of each byte of `v`.
fn q2_word(v: u32, shift: u32) -> vec4<f32> {
    return u8x4((v >> shift) & 0x03030303u);
}

// (d * scale, dmin * min) of the chunk's first 16 weights (xy) and last 16 (zw).
fn q2k_scales(i: u32, c: u32) -> vec4<f32> {
    let dd = half2(w[i + 20u]);
    let s = (w[i + (c >> 1u)] >> (16u * (c & 1u))) & 0xFFFFu;
    let v = (vec4<u32>(s) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    return vec4<f32>(dd, dd) * vec4<f32>(v);
}

// The chunk's 32 quants (0..3) in weight order.
fn q2k_quants(i: u32, c: u32) -> array<vec4<f32>, 8> {
    let qi = i + 4u + (c >> 2u) * 8u;
    let s = 2u * (c & 3u);
    return array<vec4<f32>, 8>(
        q2_word(w[qi], s), q2_word(w[qi + 1u], s), q2_word(w[qi + 2u], s), q2_word(w[qi + 3u], s),
        q2_word(w[qi + 4u], s), q2_word(w[qi + 5u], s), q2_word(w[qi + 6u], s), q2_word(w[qi + 7u], s));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 21u;
    let c = sb & 7u;
    let dm = q2k_scales(i, c);
    let q = q2k_quants(i, c);
    return array<vec4<f32>, 8>(
        dm.x * q[0] - dm.y, dm.x * q[1] - dm.y, dm.x * q[2] - dm.y, dm.x * q[3] - dm.y,
        dm.z * q[4] - dm.w, dm.z * q[5] - dm.w, dm.z * q[6] - dm.w, dm.z * q[7] - dm.w);
}

// Per 16-weight half: (d * scale) * sum q*x - (dmin * min) * sum x.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 21u;
    let c = sb & 7u;
    let dm = q2k_scales(i, c);
    let q = q2k_quants(i, c);
    let lo = (q[0] * xv[0] + q[1] * xv[1]) + (q[2] * xv[2] + q[3] * xv[3]);
    let hi = (q[4] * xv[4] + q[5] * xv[5]) + (q[6] * xv[6] + q[7] * xv[7]);
    let xlo = (xv[0] + xv[1]) + (xv[2] + xv[3]);
    let xhi = (xv[4] + xv[5]) + (xv[6] + xv[7]);
    return (dm.x * lo - dm.y * xlo) + (dm.z * hi - dm.w * xhi);
}
