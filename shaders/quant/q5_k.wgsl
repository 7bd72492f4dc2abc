// quant/q5_k: super-blocks of 256 weights, 176 bytes (always 4-byte aligned):
//   f16 d, f16 dmin, 12 bytes of packed 6-bit (scale, min) pairs for the
//   eight 32-weight sub-blocks (as Q4_K), qh[32] fifth bits, then 128 bytes
//   of nibbles: bytes 32p..32p+31 hold sub-block 2p in their low nibbles and
//   sub-block 2p+1 in the high ones. Weight 32j + l has q = nibble |
//   ((qh[l] >> j) & 1) << 4 and value (d * scale_j) * q - dmin * min_j.
// Implements the fragment contract of quant/common.wgsl (cols % 256 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 176u;
}

// The 5-bit values of four weights: nibbles at bit `s` of `v`, fifth bits at bit `j` of `h`.
fn q5k_word(v: u32, h: u32, s: u32, j: u32) -> vec4<f32> {
    return u8x4(((v >> s) & 0x0F0F0F0Fu) | (((h >> j) & 0x01010101u) << 4u));
}

// Sub-block j's 32 values (0..31) in weight order; i is the super-block's word.
fn q5k_values(i: u32, j: u32) -> array<vec4<f32>, 8> {
    let hi = i + 4u;
    let qi = i + 12u + (j >> 1u) * 8u;
    let s = (j & 1u) * 4u;
    return array<vec4<f32>, 8>(
        q5k_word(w[qi], w[hi], s, j), q5k_word(w[qi + 1u], w[hi + 1u], s, j),
        q5k_word(w[qi + 2u], w[hi + 2u], s, j), q5k_word(w[qi + 3u], w[hi + 3u], s, j),
        q5k_word(w[qi + 4u], w[hi + 4u], s, j), q5k_word(w[qi + 5u], w[hi + 5u], s, j),
        q5k_word(w[qi + 6u], w[hi + 6u], s, j), q5k_word(w[qi + 7u], w[hi + 7u], s, j));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 44u;
    let j = sb & 7u;
    let dm = q4k_scale_min(i, j);
    let q = q5k_values(i, j);
    return array<vec4<f32>, 8>(
        dm.x * q[0] - dm.y, dm.x * q[1] - dm.y, dm.x * q[2] - dm.y, dm.x * q[3] - dm.y,
        dm.x * q[4] - dm.y, dm.x * q[5] - dm.y, dm.x * q[6] - dm.y, dm.x * q[7] - dm.y);
}

// (d * scale) * sum q*x - (dmin * min) * sum x.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 44u;
    let j = sb & 7u;
    let dm = q4k_scale_min(i, j);
    return dm.x * dot_chunk(q5k_values(i, j), xv) - dm.y * xsum;
}
