// quant/q4_1_split: Q4_1 in the split layout (quant::Layout::Split). A row
// of nb blocks holds the blocks' 16 quant bytes (low nibbles weights 0..15,
// high nibbles 16..31) at byte 16 * b, then their (f16 d, f16 m) words at
// byte 16 * nb + 4 * b, padded to 16 bytes; weight = nibble * d + m.
// A block's quants are one aligned vec4 load through `wv`, the weight buffer
// bound a second time (ops::linear::SPLIT_BINDING); its scales one word of
// `w`. Fragment contract: quant/common.wgsl.

@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn row_bytes(cols: u32) -> u32 {
    return (cols / 32u * 20u + 15u) / 16u * 16u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let q = wv[(row_byte >> 4u) + sb];
    let dm = half2(w[(row_byte >> 2u) + cols / 32u * 4u + sb]);
    return array<vec4<f32>, 8>(
        nib4(q.x, 0u) * dm.x + dm.y, nib4(q.y, 0u) * dm.x + dm.y,
        nib4(q.z, 0u) * dm.x + dm.y, nib4(q.w, 0u) * dm.x + dm.y,
        nib4(q.x, 4u) * dm.x + dm.y, nib4(q.y, 4u) * dm.x + dm.y,
        nib4(q.z, 4u) * dm.x + dm.y, nib4(q.w, 4u) * dm.x + dm.y);
}

// d * sum nibble*x + m * sum x (nibbles read in place: `nib8_dot`).
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let q = wv[(row_byte >> 4u) + sb];
    let dm = half2(w[(row_byte >> 2u) + cols / 32u * 4u + sb]);
    let s = (nib8_dot(q.x, xv[0] * NIB_LO, xv[4] * NIB_HI) + nib8_dot(q.y, xv[1] * NIB_LO, xv[5] * NIB_HI))
          + (nib8_dot(q.z, xv[2] * NIB_LO, xv[6] * NIB_HI) + nib8_dot(q.w, xv[3] * NIB_LO, xv[7] * NIB_HI));
    return s * dm.x + xsum * dm.y;
}
