// quant/q4_1: blocks of 32 weights, 20 bytes: f16 scale d, f16 offset m, then
// 16 bytes whose low nibbles are weights 0..15 and high nibbles 16..31;
// weight = nibble * d + m. 20-byte blocks keep every block 4-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 20u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + sb * 5u;
    let dm = half2(w[i]);
    let q0 = w[i + 1u];
    let q1 = w[i + 2u];
    let q2 = w[i + 3u];
    let q3 = w[i + 4u];
    return array<vec4<f32>, 8>(
        nib4(q0, 0u) * dm.x + dm.y, nib4(q1, 0u) * dm.x + dm.y,
        nib4(q2, 0u) * dm.x + dm.y, nib4(q3, 0u) * dm.x + dm.y,
        nib4(q0, 4u) * dm.x + dm.y, nib4(q1, 4u) * dm.x + dm.y,
        nib4(q2, 4u) * dm.x + dm.y, nib4(q3, 4u) * dm.x + dm.y);
}

// d * sum nibble*x + m * sum x.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let i = (row_byte >> 2u) + sb * 5u;
    let dm = half2(w[i]);
    let q0 = w[i + 1u];
    let q1 = w[i + 2u];
    let q2 = w[i + 3u];
    let q3 = w[i + 4u];
    let s = ((nib4(q0, 0u) * xv[0] + nib4(q1, 0u) * xv[1]) + (nib4(q2, 0u) * xv[2] + nib4(q3, 0u) * xv[3]))
          + ((nib4(q0, 4u) * xv[4] + nib4(q1, 4u) * xv[5]) + (nib4(q2, 4u) * xv[6] + nib4(q3, 4u) * xv[7]));
    return s * dm.x + xsum * dm.y;
}
