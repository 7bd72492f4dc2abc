// quant/q4_0_split: Q4_0 in the split layout (quant::Layout::Split). A row
// of nb blocks holds the blocks' 16 quant bytes (low nibbles weights 0..15,
// high nibbles 16..31) at byte 16 * b, then their f16 scales d at byte
// 16 * nb + 2 * b, padded to 16 bytes; weight = (nibble - 8) * d. A block's
// quants are one aligned vec4 load through `wv`, the weight buffer bound a
// second time (ops::linear::SPLIT_BINDING). Fragment contract:
// quant/common.wgsl.

@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn row_bytes(cols: u32) -> u32 {
    return (cols / 32u * 18u + 15u) / 16u * 16u;
}

// The 32 nibbles of a block's 16 bytes, in weight order.
fn q4_nibbles(q: vec4<u32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        nib4(q.x, 0u), nib4(q.y, 0u), nib4(q.z, 0u), nib4(q.w, 0u),
        nib4(q.x, 4u), nib4(q.y, 4u), nib4(q.z, 4u), nib4(q.w, 4u));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let d = w_f16(row_byte + cols / 2u + sb * 2u);
    let n = q4_nibbles(wv[(row_byte >> 4u) + sb]);
    return array<vec4<f32>, 8>(
        (n[0] - 8.0) * d, (n[1] - 8.0) * d, (n[2] - 8.0) * d, (n[3] - 8.0) * d,
        (n[4] - 8.0) * d, (n[5] - 8.0) * d, (n[6] - 8.0) * d, (n[7] - 8.0) * d);
}

// d * (sum nibble*x - 8 * sum x).
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let n = q4_nibbles(wv[(row_byte >> 4u) + sb]);
    return (dot_chunk(n, xv) - 8.0 * xsum) * w_f16(row_byte + cols / 2u + sb * 2u);
}
