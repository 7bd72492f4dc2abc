// quant/q8_0_split: Q8_0 in the split layout (quant::Layout::Split). A row
// of nb blocks holds the blocks' 32 signed quant bytes at byte 32 * b, then
// their f16 scales d at byte 32 * nb + 2 * b, padded to 16 bytes; weight =
// q * d. A block's quants are two aligned vec4 loads through `wv`, the
// weight buffer bound a second time (ops::linear::SPLIT_BINDING).
// Fragment contract: quant/common.wgsl.

@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn row_bytes(cols: u32) -> u32 {
    return (cols / 32u * 34u + 15u) / 16u * 16u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 4u) + sb * 2u;
    let a = wv[i];
    let b = wv[i + 1u];
    let d = w_f16(row_byte + cols + sb * 2u);
    return array<vec4<f32>, 8>(
        i8x4(a.x) * d, i8x4(a.y) * d, i8x4(a.z) * d, i8x4(a.w) * d,
        i8x4(b.x) * d, i8x4(b.y) * d, i8x4(b.z) * d, i8x4(b.w) * d);
}

// sum q*x, then one multiply by d.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let i = (row_byte >> 4u) + sb * 2u;
    let a = wv[i];
    let b = wv[i + 1u];
    let s = array<vec4<f32>, 8>(i8x4(a.x), i8x4(a.y), i8x4(a.z), i8x4(a.w),
                                i8x4(b.x), i8x4(b.y), i8x4(b.z), i8x4(b.w));
    return dot_chunk(s, xv) * w_f16(row_byte + cols + sb * 2u);
}
