// quant/f16: IEEE half weights, 2 bytes each; a row of odd length leaves the
// next row 2-byte aligned, hence the funnel reads. Decoded with bit
// arithmetic (quant/common.wgsl), so no `enable f16` is needed.
// Implements the fragment contract of quant/common.wgsl.

fn row_bytes(cols: u32) -> u32 {
    return cols * 2u;
}

fn h4(a: u32, b: u32) -> vec4<f32> {
    return half4(a, b);
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 64u;
    let q = w_u32x8(b);
    let r = w_u32x8(b + 32u);
    let v = array<vec4<f32>, 8>(
        h4(q[0], q[1]), h4(q[2], q[3]), h4(q[4], q[5]), h4(q[6], q[7]),
        h4(r[0], r[1]), h4(r[2], r[3]), h4(r[4], r[5]), h4(r[6], r[7]));
    return mask_tail(v, sb * 32u, cols);
}

fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    return dot_chunk(dequant32(row_byte, cols, sb), xv);
}
