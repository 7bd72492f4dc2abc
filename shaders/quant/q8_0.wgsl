// quant/q8_0: blocks of 32 weights, 34 bytes: f16 scale d, then 32 signed
// bytes q; weight = q * d. Blocks are only 2-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 34u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 34u;
    let d = w_f16(b);
    let q = w_u32x8(b + 2u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        out[i] = i8x4(q[i]) * d;
    }
    return out;
}
