// quant/q5_1: blocks of 32 weights, 24 bytes: f16 scale d, f16 offset m, a
// 32-bit word qh of fifth bits (bit k for weight k), then 16 bytes whose low
// nibbles are weights 0..15 and high nibbles 16..31; weight = q * d + m with
// q = nibble | bit << 4. 24-byte blocks keep every block 4-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 24u;
}

fn q5_1_values(i: u32) -> array<vec4<f32>, 8> {
    return q5_values(w[i + 1u], vec4<u32>(w[i + 2u], w[i + 3u], w[i + 4u], w[i + 5u]));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + sb * 6u;
    let dm = half2(w[i]);
    let q = q5_1_values(i);
    return array<vec4<f32>, 8>(
        q[0] * dm.x + dm.y, q[1] * dm.x + dm.y, q[2] * dm.x + dm.y, q[3] * dm.x + dm.y,
        q[4] * dm.x + dm.y, q[5] * dm.x + dm.y, q[6] * dm.x + dm.y, q[7] * dm.x + dm.y);
}

// d * sum q*x + m * sum x.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let i = (row_byte >> 2u) + sb * 6u;
    let dm = half2(w[i]);
    return dot_chunk(q5_1_values(i), xv) * dm.x + xsum * dm.y;
}
