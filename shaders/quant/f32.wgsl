// quant/f32: little-endian f32 weights, 4 bytes each (rows always 4-byte aligned).
// Implements the fragment contract of quant/common.wgsl.

fn row_bytes(cols: u32) -> u32 {
    return cols * 4u;
}

fn f32x4_at(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + sb * 32u;
    let v = array<vec4<f32>, 8>(
        f32x4_at(i), f32x4_at(i + 4u), f32x4_at(i + 8u), f32x4_at(i + 12u),
        f32x4_at(i + 16u), f32x4_at(i + 20u), f32x4_at(i + 24u), f32x4_at(i + 28u));
    return mask_tail(v, sb * 32u, cols);
}

fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    return dot_chunk(dequant32(row_byte, cols, sb), xv);
}
