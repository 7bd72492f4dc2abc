// quant/q5_0_split: Q5_0 in the split layout (quant::Layout::Split). A row
// of nb blocks holds the blocks' 16 nibble bytes (low nibbles weights 0..15,
// high nibbles 16..31) at byte 16 * b, then their fifth-bit words qh (bit k
// for weight k) at byte 16 * nb + 4 * b, then their f16 scales d at byte
// 20 * nb + 2 * b, padded to 16 bytes; weight = (q - 16) * d with q =
// nibble | bit << 4. A block's nibbles are one aligned vec4 load through
// `wv`, the weight buffer bound a second time (ops::linear::SPLIT_BINDING).
// Fragment contract: quant/common.wgsl.

@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn row_bytes(cols: u32) -> u32 {
    return (cols / 32u * 22u + 15u) / 16u * 16u;
}

// The block's 32 values q (0..31), in weight order.
fn q5_split(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    return q5_values(w[(row_byte >> 2u) + cols / 8u + sb], wv[(row_byte >> 4u) + sb]);
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let d = w_f16(row_byte + cols / 32u * 20u + sb * 2u);
    let q = q5_split(row_byte, cols, sb);
    return array<vec4<f32>, 8>(
        (q[0] - 16.0) * d, (q[1] - 16.0) * d, (q[2] - 16.0) * d, (q[3] - 16.0) * d,
        (q[4] - 16.0) * d, (q[5] - 16.0) * d, (q[6] - 16.0) * d, (q[7] - 16.0) * d);
}

// d * (sum q*x - 16 * sum x).
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let d = w_f16(row_byte + cols / 32u * 20u + sb * 2u);
    return (dot_chunk(q5_split(row_byte, cols, sb), xv) - 16.0 * xsum) * d;
}
