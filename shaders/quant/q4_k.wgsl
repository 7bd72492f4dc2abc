// quant/q4_k: super-blocks of 256 weights, 144 bytes (always 4-byte aligned):
//   f16 d, f16 dmin, 12 bytes of packed 6-bit (scale, min) pairs for the
//   eight 32-weight sub-blocks, then 128 bytes of nibbles: bytes 32p..32p+31
//   hold sub-block 2p in their low nibbles and sub-block 2p+1 in the high ones.
// Sub-block j: weight = (d * scale_j) * nibble - dmin * min_j, where for
//   j < 4: scale = s[j] & 63,                    min = s[j+4] & 63
//   j >= 4: scale = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
//           min   = (s[j+4] >> 4) | (s[j]   >> 6) << 4.
// The (scale, min) pairs decode with q4k_scale_min (quant/common.wgsl).
// Implements the fragment contract of quant/common.wgsl (cols % 256 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 144u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 36u;
    let j = sb & 7u;
    let dm = q4k_scale_min(i, j);
    let qi = i + 4u + (j >> 1u) * 8u;
    let s = (j & 1u) * 4u;
    return array<vec4<f32>, 8>(
        dm.x * nib4(w[qi], s) - dm.y, dm.x * nib4(w[qi + 1u], s) - dm.y,
        dm.x * nib4(w[qi + 2u], s) - dm.y, dm.x * nib4(w[qi + 3u], s) - dm.y,
        dm.x * nib4(w[qi + 4u], s) - dm.y, dm.x * nib4(w[qi + 5u], s) - dm.y,
        dm.x * nib4(w[qi + 6u], s) - dm.y, dm.x * nib4(w[qi + 7u], s) - dm.y);
}

// (d * scale) * sum nibble*x - (dmin * min) * sum x.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 36u;
    let j = sb & 7u;
    let dm = q4k_scale_min(i, j);
    let qi = i + 4u + (j >> 1u) * 8u;
    let s = (j & 1u) * 4u;
    let n = array<vec4<f32>, 8>(
        nib4(w[qi], s), nib4(w[qi + 1u], s), nib4(w[qi + 2u], s), nib4(w[qi + 3u], s),
        nib4(w[qi + 4u], s), nib4(w[qi + 5u], s), nib4(w[qi + 6u], s), nib4(w[qi + 7u], s));
    return dm.x * dot_chunk(n, xv) - dm.y * xsum;
}
