// quant/f16: IEEE half weights, 2 bytes each; a row of odd length leaves the
// next row 2-byte aligned, hence the funnel reads. Decoded with
// unpack2x16float, so no `enable f16` is needed.
// Implements the fragment contract of quant/common.wgsl.

fn row_bytes(cols: u32) -> u32 {
    return cols * 2u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 64u;
    let q0 = w_u32x8(b);
    let q1 = w_u32x8(b + 32u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        out[i] = vec4<f32>(unpack2x16float(q0[2u * i]), unpack2x16float(q0[2u * i + 1u]));
        out[i + 4u] = vec4<f32>(unpack2x16float(q1[2u * i]), unpack2x16float(q1[2u * i + 1u]));
    }
    return mask_tail(out, sb * 32u, cols);
}
