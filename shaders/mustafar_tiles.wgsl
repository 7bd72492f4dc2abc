// Mustafar's tile geometry and tile reading, shared by its kernels
// (prepended after half.wgsl; reference::mustafar defines the format). The
// including shader declares `pool: array<vec4<u32>>` (8 f16 per unit).

const T: u32 = 64u; // tokens per block, elements per tile
const VT: u32 = (HEAD_DIM + 63u) / 64u; // value tiles per token
const TILES: u32 = HEAD_DIM + T * VT; // tiles per (KV head, block)

// Element j of the tile with bitmap bm whose non-zeros start at unit u:
// 0 when its bit is clear, else non-zero number popcount(bits below j).
// Branch-free (lanes of a SIMD group take the same path): the load happens
// for a clear bit too, clamped into the pool, and its value is dropped.
fn tile_get(bm: vec2<u32>, u: u32, j: u32) -> f32 {
    let hi = j >= 32u;
    let w = select(bm.x, bm.y, hi);
    let b = j % 32u;
    let below = select(0u, countOneBits(bm.x), hi) + countOneBits(w & ((1u << b) - 1u));
    let unit = min(u + below / 8u, arrayLength(&pool) - 1u);
    let word = pool[unit][(below % 8u) / 2u];
    let x = half_to_f32(select(word & 0xFFFFu, word >> 16u, (below & 1u) == 1u));
    return select(0.0, x, ((w >> b) & 1u) == 1u);
}
