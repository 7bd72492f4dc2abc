// quant/q4_0: blocks of 32 weights, 18 bytes: f16 scale d, then 16 bytes whose
// low nibbles are weights 0..15 and high nibbles weights 16..31;
// weight = (nibble - 8) * d. Blocks are only 2-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 18u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 18u;
    let d = w_f16(b);
    let q = w_u32x4(b + 2u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        out[i] = (nib4(q[i], 0u) - 8.0) * d;
        out[i + 4u] = (nib4(q[i], 4u) - 8.0) * d;
    }
    return out;
}
