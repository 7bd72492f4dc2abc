// quant/q4_k: super-blocks of 256 weights, 144 bytes (always 4-byte aligned):
//   f16 d, f16 dmin, 12 bytes of packed 6-bit (scale, min) pairs for the
//   eight 32-weight sub-blocks, then 128 bytes of nibbles: bytes 32p..32p+31
//   hold sub-block 2p in their low nibbles and sub-block 2p+1 in the high ones.
// Sub-block j: weight = (d * scale_j) * nibble - dmin * min_j, where for
//   j < 4: scale = s[j] & 63,                    min = s[j+4] & 63
//   j >= 4: scale = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
//           min   = (s[j+4] >> 4) | (s[j]   >> 6) << 4.
// Implements the fragment contract of quant/common.wgsl (cols % 256 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 144u;
}

// (d * scale_j, dmin * min_j) of sub-block j = sb % 8 of the super-block at word i.
fn q4k_scale_min(i: u32, j: u32) -> vec2<f32> {
    let dd = half2(w[i]);
    // Byte k of the 12 scale bytes is (w[i + 1 + k / 4] >> 8 * (k % 4)) & 0xFF.
    let sh = 8u * (j & 3u);
    let a = (w[i + 1u] >> sh) & 0xFFu; // byte j & 3
    let c = (w[i + 2u] >> sh) & 0xFFu; // byte (j & 3) + 4
    let e = (w[i + 3u] >> sh) & 0xFFu; // byte (j & 3) + 8
    let lo = vec2<u32>(a, c) & vec2<u32>(63u);
    let hi = ((vec2<u32>(e) >> vec2<u32>(0u, 4u)) & vec2<u32>(15u)) | ((vec2<u32>(a, c) >> vec2<u32>(6u)) << vec2<u32>(4u));
    let sm = select(hi, lo, j < 4u);
    return dd * vec2<f32>(sm);
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
