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
    return array<vec4<f32>, 8>(
        i8x4(q[0]) * d, i8x4(q[1]) * d, i8x4(q[2]) * d, i8x4(q[3]) * d,
        i8x4(q[4]) * d, i8x4(q[5]) * d, i8x4(q[6]) * d, i8x4(q[7]) * d);
}

// sum q*x, then one multiply by d.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let b = row_byte + sb * 34u;
    let q = w_u32x8(b + 2u);
    let s = array<vec4<f32>, 8>(i8x4(q[0]), i8x4(q[1]), i8x4(q[2]), i8x4(q[3]),
                                i8x4(q[4]), i8x4(q[5]), i8x4(q[6]), i8x4(q[7]));
    return dot_chunk(s, xv) * w_f16(b);
}
