// mustafar_expand: write n_blocks compressed blocks (mustafar_compress's
// format) back as dense cache rows, pruned entries 0: the form the dense
// prefill kernels read, and the tests' window into the format.
//
// Layout: bits [n_kv_heads][max_blocks][TILES] vec2<u32>; offs likewise u32;
// pool vec4<u32> (8 f16 per unit); k_dst, v_dst [n_kv_heads][dst_seq]
// [HEAD_DIM] kv_t, block b of the call going to slots dst_slot + 64 b ...
// The live blocks form a ring: live block i (oldest first) is store block
// (live.first + i) % max_blocks. Blocks at or past live.n_blocks (a uniform
// the cache writes per call) are skipped, so a grid recorded once serves
// every length.
// Bindings: bits, offs, pool (read), k_dst, v_dst (read_write), params,
// blocks (uniform).
// Prelude consts: HEAD_DIM (a multiple of 4, at most 128).
// Fragments: half.wgsl, mustafar_tiles.wgsl (T, VT, TILES, tile_get).
// Grid: (n_blocks, n_kv_heads, 1), 64 invocations: invocation t writes token t.

struct Blocks { n_blocks: u32, first: u32, _p1: u32, _p2: u32 }
struct Params {
    dst_seq: u32, dst_slot: u32, n_blocks: u32, first_block: u32,
    max_blocks: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> bits: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read> offs: array<u32>;
@group(0) @binding(2) var<storage, read> pool: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> k_dst: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> v_dst: array<kv_t>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> live: Blocks;


@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let b = wid.x;
    let kvh = wid.y;
    if (b >= p.n_blocks || p.first_block + b >= live.n_blocks) {
        return;
    }
    let phys = (live.first + p.first_block + b) % p.max_blocks;
    let tbase = (kvh * p.max_blocks + phys) * TILES;
    let row = (kvh * p.dst_seq + p.dst_slot + b * T + t) * HEAD_DIM;
    for (var c = 0u; c < HEAD_DIM; c++) {
        k_dst[row + c] = kv_t(tile_get(bits[tbase + c], offs[tbase + c], t));
    }
    for (var c = 0u; c < HEAD_DIM; c++) {
        let ti = tbase + HEAD_DIM + t * VT + c / T;
        v_dst[row + c] = kv_t(tile_get(bits[ti], offs[ti], c % T));
    }
}
