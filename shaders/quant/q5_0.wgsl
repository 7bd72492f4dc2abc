// quant/q5_0: blocks of 32 weights, 22 bytes: f16 scale d, a 32-bit word qh
// of fifth bits (bit k for weight k), then 16 bytes whose low nibbles are
// weights 0..15 and high nibbles weights 16..31; weight = (q - 16) * d with
// q = nibble | bit << 4. Blocks are only 2-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 22u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 22u;
    let d = w_f16(b);
    let q = q5_values(w_u32(b + 2u), w_u32x4(b + 6u));
    return array<vec4<f32>, 8>(
        (q[0] - 16.0) * d, (q[1] - 16.0) * d, (q[2] - 16.0) * d, (q[3] - 16.0) * d,
        (q[4] - 16.0) * d, (q[5] - 16.0) * d, (q[6] - 16.0) * d, (q[7] - 16.0) * d);
}

// d * (sum q*x - 16 * sum x).
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let b = row_byte + sb * 22u;
    return (dot_chunk(q5_values(w_u32(b + 2u), w_u32x4(b + 6u)), xv) - 16.0 * xsum) * w_f16(b);
}
