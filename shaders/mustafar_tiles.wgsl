// Mustafar's tile geometry and tile reading, shared by its kernels
// (prepended after half.wgsl; reference::mustafar defines the format). The
// including shader declares `pool: array<vec4<u32>>` (8 f16 per unit).

const T: u32 = 64u; // tokens per block, elements per tile
const VT: u32 = (HEAD_DIM + 63u) / 64u; // value tiles per token
const TILES: u32 = HEAD_DIM + T * VT; // tiles per (KV head, block)

// Element j of the tile with bitmap bm whose non-zeros start at unit u:
// 0 when its bit is clear, else non-zero number popcount(bits below j).
fn tile_get(bm: vec2<u32>, u: u32, j: u32) -> f32 {
    let w = select(bm.x, bm.y, j >= 32u);
    let b = j % 32u;
    if (((w >> b) & 1u) == 0u) {
        return 0.0;
    }
    let below = select(0u, countOneBits(bm.x), j >= 32u) + countOneBits(w & ((1u << b) - 1u));
    let pair = half_pair(pool[u + below / 8u][(below % 8u) / 2u]);
    return select(pair.x, pair.y, (below & 1u) == 1u);
}
