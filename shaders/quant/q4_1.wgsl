// quant/q4_1: blocks of 32 weights, 20 bytes: f16 scale d, f16 offset m, then
// 16 bytes whose low nibbles are weights 0..15 and high nibbles 16..31;
// weight = nibble * d + m. 20-byte blocks keep every block 4-byte aligned.
// Implements the fragment contract of quant/common.wgsl (cols % 32 == 0).

fn row_bytes(cols: u32) -> u32 {
    return cols / 32u * 20u;
}

fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8> {
    let i = (row_byte >> 2u) + sb * 5u;
    let dm = unpack2x16float(w[i]);
    let q = vec4<u32>(w[i + 1u], w[i + 2u], w[i + 3u], w[i + 4u]);
    var out: array<vec4<f32>, 8>;
    for (var j = 0u; j < 4u; j++) {
        out[j] = nib4(q[j], 0u) * dm.x + dm.y;
        out[j + 4u] = nib4(q[j], 4u) * dm.x + dm.y;
    }
    return out;
}
