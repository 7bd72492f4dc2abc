// quant/f32: little-endian f32 weights, 4 bytes each (rows always 4-byte aligned).
// Implements the fragment contract of quant/common.wgsl.

fn row_bytes(cols: u32) -> u32 {
    return cols * 4u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i0 = (row_byte >> 2u) + sb * 32u;
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let j = i0 + 4u * i;
        out[i] = bitcast<vec4<f32>>(vec4<u32>(w[j], w[j + 1u], w[j + 2u], w[j + 3u]));
    }
    return mask_tail(out, sb * 32u, cols);
}
