// quant/q6_k_split: Q6_K in the split layout (quant::Layout::Split). A row
// of nb super-blocks holds their ql[128] at byte 128 * B, then their
// qh[64] at byte 128 * nb + 64 * B, then their 16 signed scales at byte
// 192 * nb + 16 * B, then their f16 d at byte 208 * nb + 2 * B, padded to
// 16 bytes (the bytes mean what quant/q6_k.wgsl says). A 32-weight chunk's
// ql and qh bytes are two aligned vec4 loads each, through `wv`, the weight
// buffer bound a second time (ops::linear::SPLIT_BINDING).
// Fragment contract: quant/common.wgsl.

@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn row_bytes(cols: u32) -> u32 {
    return (cols / 256u * 210u + 15u) / 16u * 16u;
}

// The 6-bit values (0..63) of four weights from a ql word and a qh word.
fn q6_word(ql: u32, qh: u32, lshift: u32, hshift: u32) -> vec4<f32> {
    return u8x4(((ql >> lshift) & 0x0F0F0F0Fu) | (((qh >> hshift) & 0x03030303u) << 4u));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let nb = cols / 256u;
    let sup = sb >> 3u;
    let n = (sb >> 2u) & 1u;
    let j = sb & 3u;
    let v = row_byte >> 4u;
    let li = v + sup * 8u + 4u * n + 2u * (j & 1u);
    let hi = v + nb * 8u + sup * 4u + 2u * n;
    let l0 = wv[li];
    let l1 = wv[li + 1u];
    let h0 = wv[hi];
    let h1 = wv[hi + 1u];
    let ls = 4u * (j >> 1u);
    let hs = 2u * j;
    // Scales of weights l < 16 and l >= 16: two adjacent bytes at an even offset.
    let sc2 = w_u16(row_byte + nb * 192u + sup * 16u + 8u * n + 2u * j);
    let scs = bitcast<vec2<i32>>(vec2<u32>(sc2 << 24u, sc2 << 16u)) >> vec2<u32>(24u);
    let d = w_f16(row_byte + nb * 208u + sup * 2u);
    let lo = d * f32(scs.x);
    let hi2 = d * f32(scs.y);
    return array<vec4<f32>, 8>(
        lo * (q6_word(l0.x, h0.x, ls, hs) - 32.0), lo * (q6_word(l0.y, h0.y, ls, hs) - 32.0),
        lo * (q6_word(l0.z, h0.z, ls, hs) - 32.0), lo * (q6_word(l0.w, h0.w, ls, hs) - 32.0),
        hi2 * (q6_word(l1.x, h1.x, ls, hs) - 32.0), hi2 * (q6_word(l1.y, h1.y, ls, hs) - 32.0),
        hi2 * (q6_word(l1.z, h1.z, ls, hs) - 32.0), hi2 * (q6_word(l1.w, h1.w, ls, hs) - 32.0));
}

fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    return dot_chunk(dequant32(row_byte, cols, sb), xv);
}
