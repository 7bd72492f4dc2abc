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

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + (sb >> 3u) * 36u;
    let j = sb & 7u;
    let dd = unpack2x16float(w[i]);
    let s = array<u32, 3>(w[i + 1u], w[i + 2u], w[i + 3u]);
    // Byte k of the scales is (s[k / 4] >> 8 * (k % 4)) & 0xFF.
    let jl = j & 3u;
    let a = (s[0] >> (8u * jl)) & 0xFFu; // s[j & 3]
    let c = (s[1] >> (8u * jl)) & 0xFFu; // s[(j & 3) + 4]
    let e = (s[2] >> (8u * jl)) & 0xFFu; // s[(j & 3) + 8]
    var sc: u32;
    var mn: u32;
    if (j < 4u) {
        sc = a & 63u;
        mn = c & 63u;
    } else {
        sc = (e & 15u) | ((a >> 6u) << 4u);
        mn = (e >> 4u) | ((c >> 6u) << 4u);
    }
    let d1 = dd.x * f32(sc);
    let m1 = dd.y * f32(mn);
    let qi = i + 4u + (j >> 1u) * 8u;
    let shift = (j & 1u) * 4u;
    var out: array<vec4<f32>, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = d1 * nib4(w[qi + k], shift) - m1;
    }
    return out;
}
