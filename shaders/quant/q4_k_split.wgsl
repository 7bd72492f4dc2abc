// quant/q4_k_split: Q4_K in the split layout (quant::Layout::Split). A row
// of nb super-blocks holds their 128 nibble bytes at byte 128 * B (bytes
// 32p..32p+31: sub-block 2p in the low nibbles, 2p+1 in the high ones), then
// their 16-byte heads (f16 d, f16 dmin, 12 bytes of packed 6-bit scale/min
// pairs, as quant/q4_k.wgsl) at byte 128 * nb + 16 * B. A sub-block's
// nibbles are two aligned vec4 loads and its head one, through `wv`, the
// weight buffer bound a second time (ops::linear::SPLIT_BINDING).
// Fragment contract: quant/common.wgsl.

@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;

fn row_bytes(cols: u32) -> u32 {
    return cols / 256u * 144u;
}

// (d * scale_j, dmin * min_j) of sub-block j from the super-block's head
// `h` (the words q4k_scale_min reads at i .. i + 3).
fn q4k_head_scale_min(h: vec4<u32>, j: u32) -> vec2<f32> {
    let dd = half2(h.x);
    let sh = 8u * (j & 3u);
    let a = (h.y >> sh) & 0xFFu;
    let c = (h.z >> sh) & 0xFFu;
    let e = (h.w >> sh) & 0xFFu;
    let lo = vec2<u32>(a, c) & vec2<u32>(63u);
    let hi = ((vec2<u32>(e) >> vec2<u32>(0u, 4u)) & vec2<u32>(15u)) | ((vec2<u32>(a, c) >> vec2<u32>(6u)) << vec2<u32>(4u));
    let sm = select(hi, lo, j < 4u);
    return dd * vec2<f32>(sm);
}

// Sub-chunk sb's (scale, min) and the two vec4s of its bytes; its nibbles
// sit at bit (sb & 1) * 4 of each byte.
fn q4k_split_dm(row_byte: u32, cols: u32, sb: u32) -> vec2<f32> {
    // Every weight kernel binds `w` (binding 0); this type reads only `wv`.
    _ = &w;
    return q4k_head_scale_min(wv[(row_byte >> 4u) + cols / 256u * 8u + (sb >> 3u)], sb & 7u);
}

fn q4k_split_nibbles(row_byte: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 4u) + (sb >> 3u) * 8u + ((sb & 7u) >> 1u) * 2u;
    let a = wv[i];
    let b = wv[i + 1u];
    let s = (sb & 1u) * 4u;
    return array<vec4<f32>, 8>(nib4(a.x, s), nib4(a.y, s), nib4(a.z, s), nib4(a.w, s),
                               nib4(b.x, s), nib4(b.y, s), nib4(b.z, s), nib4(b.w, s));
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let dm = q4k_split_dm(row_byte, cols, sb);
    let n = q4k_split_nibbles(row_byte, sb);
    return array<vec4<f32>, 8>(
        dm.x * n[0] - dm.y, dm.x * n[1] - dm.y, dm.x * n[2] - dm.y, dm.x * n[3] - dm.y,
        dm.x * n[4] - dm.y, dm.x * n[5] - dm.y, dm.x * n[6] - dm.y, dm.x * n[7] - dm.y);
}

// (d * scale) * sum nibble*x - (dmin * min) * sum x.
fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>, xsum: vec4<f32>) -> vec4<f32> {
    let dm = q4k_split_dm(row_byte, cols, sb);
    return dm.x * dot_chunk(q4k_split_nibbles(row_byte, sb), xv) - dm.y * xsum;
}
