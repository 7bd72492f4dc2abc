// The quantized KV cache's row format (spec const KVQ = 8 or 4), shared by
// kv_quant (which writes rows) and every kernel that reads the cache through
// kv_k / kv_v (kernels.rs generates those two around kv_deq).
//
// A row is one token's HEAD_DIM keys (or values) of one KV head, in blocks
// of 32 elements, each with an f16 scale d (llama.cpp's q8_0 / q4_0 caches):
//   q8: x = d * q, q a signed byte, d = max|x| / 127;
//   q4: x = d * (n - 8), n a nibble, d = m / -8 with m the element of
//       largest magnitude (so it is exactly -8 d).
// Words of a row (u32): first KV_QW quant words, element e in
//   q8: word e / 4, byte e % 4 (bits 8 (e % 4) ..);
//   q4: word e / 8, nibble e % 8 (bits 4 (e % 8) ..);
// then one word per two blocks: block b's scale is half b % 2 (low first)
// of word KV_QW + b / 2 (pack_halves, half.wgsl). KV_ROW words in all.
// The cache is [n_kv_heads][max_seq][KV_ROW] u32: row r = kvh * max_seq + slot.

const KV_QW: u32 = HEAD_DIM * KVQ / 32u;
const KV_ROW: u32 = KV_QW + (HEAD_DIM + 63u) / 64u;

// The quant word holding the 4 elements 4 d .. 4 d + 3.
fn kv_word(d: u32) -> u32 {
    return select(d / 2u, d, KVQ == 8u);
}

// The 4 elements 4 d .. 4 d + 3 from their quant word `w` and the scale
// word `sw` of their block (d / 8).
fn kv_deq(w: u32, sw: u32, d: u32) -> vec4<f32> {
    let s = half_to_f32((sw >> (((d / 8u) & 1u) * 16u)) & 0xFFFFu);
    if (KVQ == 8u) {
        let b = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
        return vec4<f32>(b) * s;
    }
    let n = (vec4<u32>(w) >> (vec4<u32>(0u, 4u, 8u, 12u) + vec4<u32>((d & 1u) * 16u))) & vec4<u32>(15u);
    return (vec4<f32>(n) - vec4<f32>(8.0)) * s;
}
