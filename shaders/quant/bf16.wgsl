// quant/bf16: bfloat16 weights (the top half of an f32), 2 bytes each; rows
// of odd length leave the next row 2-byte aligned, hence the funnel reads.
// Implements the fragment contract of quant/common.wgsl.

fn row_bytes(cols: u32) -> u32 {
    return cols * 2u;
}

fn bf16x2(v: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(v << 16u, v & 0xFFFF0000u));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let b = row_byte + sb * 64u;
    let q0 = w_u32x8(b);
    let q1 = w_u32x8(b + 32u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        out[i] = vec4<f32>(bf16x2(q0[2u * i]), bf16x2(q0[2u * i + 1u]));
        out[i + 4u] = vec4<f32>(bf16x2(q1[2u * i]), bf16x2(q1[2u * i + 1u]));
    }
    return mask_tail(out, sb * 32u, cols);
}
