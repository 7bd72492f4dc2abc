// quant/q4_0: blocks of 32 weights, 18 bytes: f16 scale d, then 16 bytes whose
// low nibbles are weights 0..15 and high nibbles weights 16..31;
// weight = (nibble - 8) * d. Blocks are only 2-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 18u;
}

// The 32 nibbles of a block's 16 bytes, in weight order.
fn q4_nibbles(q: vec4<u32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        nib4(q.x, 0u), nib4(q.y, 0u), nib4(q.z, 0u), nib4(q.w, 0u),
        nib4(q.x, 4u), nib4(q.y, 4u), nib4(q.z, 4u), nib4(q.w, 4u));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 18u;
    let d = w_f16(b);
    let n = q4_nibbles(w_u32x4(b + 2u));
    return array<vec4<f32>, 8>(
        (n[0] - 8.0) * d, (n[1] - 8.0) * d, (n[2] - 8.0) * d, (n[3] - 8.0) * d,
        (n[4] - 8.0) * d, (n[5] - 8.0) * d, (n[6] - 8.0) * d, (n[7] - 8.0) * d);
}

// d * (sum nibble*x - 8 * sum x).
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let b = row_byte + sb * 18u;
    return (dot_chunk(q4_nibbles(w_u32x4(b + 2u)), xv) - 8.0 * xsum) * w_f16(b);
}
