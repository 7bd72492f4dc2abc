// mustafar_compress: prune and compress n_blocks blocks of 64 consecutive
// cache slots per KV head into Mustafar's bitmap format (research/
// algorithms.md §2.3; reference::mustafar defines the tiles).
//
// Pruning, per token and KV head: the key (post-RoPE) and the value each
// keep their keep_k / keep_v largest-magnitude elements, ties to the lower
// channel; survivors that are 0 as f16 are dropped too.
// Tiles of a block: HEAD_DIM key tiles (tile c: channel c of the 64 tokens),
// then 64 * VT value tiles (token t, channels 64 i ..): a 64-bit bitmap
// (element j = bit j % 32 of word j / 32) and the non-zeros in element
// order as f16 pairs (the lower element in the low half),
// padded with zeros to 8 halves (one vec4<u32>, a 16-byte unit).
// Blocks form a ring: block b of the call goes to store block
// (dst_block + b) % max_blocks.
// Placement: the block's tiles take one contiguous run of units in the pool;
// one invocation reserves it with an atomicAdd on state.top (the host sets
// top to the start of a free run of the pool before the dispatch, and
// pool_cap to its end), so blocks land in any order. A run that would pass
// pool_cap is not written: state.overflow
// is set and the block's offsets are 0xffffffff (the host sizes the pool so
// this does not happen; it checks the flag).
//
// Layout: k_src, v_src [n_kv_heads][src_seq][HEAD_DIM] kv_t; bits
// [n_kv_heads][max_blocks][TILES] vec2<u32>; offs [n_kv_heads][max_blocks]
// [TILES] u32 (pool unit of the tile's first non-zero); pool [pool_cap]
// vec4<u32>; state: (top, overflow) atomics.
// With with_meta != 0 it also writes Quest's metadata of each block (a page of
// 64 tokens): per key channel the max and min of the pruned keys as the
// tiles hold them (f16, pruned elements 0), kmax / kmin [n_kv_heads]
// [meta_stride][HEAD_DIM] kv_t (Quest's page layout, page = 64).
// Bindings: k_src (read), v_src (read), bits, offs, pool, state (read_write),
// params, kmax, kmin (read_write; not touched when with_meta == 0).
// Prelude consts: HEAD_DIM (a multiple of 4, at most 128).
// Fragments: half.wgsl, mustafar_tiles.wgsl (T, VT, TILES, tile_get).
// Grid: (n_blocks, n_kv_heads, 1), 64 invocations: invocation t prunes token
// t; then invocations take tiles.

struct Params {
    src_seq: u32, first_slot: u32, n_blocks: u32, dst_block: u32,
    max_blocks: u32, pool_cap: u32, keep_k: u32, keep_v: u32,
    with_meta: u32, meta_stride: u32, _p1: u32, _p2: u32,
}
struct State { top: atomic<u32>, overflow: atomic<u32> }

@group(0) @binding(0) var<storage, read> k_src: array<kv_t>;
@group(0) @binding(1) var<storage, read> v_src: array<kv_t>;
@group(0) @binding(2) var<storage, read_write> bits: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> offs: array<u32>;
@group(0) @binding(4) var<storage, read_write> pool: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> state: State;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read_write> kmax: array<kv_t>;
@group(0) @binding(8) var<storage, read_write> kmin: array<kv_t>;

const DW: u32 = (HEAD_DIM + 31u) / 32u; // mask words per vector
const NONE: u32 = 0xffffffffu;

var<workgroup> kmask: array<u32, T * DW>;
var<workgroup> vmask: array<u32, T * DW>;
var<workgroup> tbits: array<vec2<u32>, TILES>;
var<workgroup> start: array<u32, TILES>;
var<workgroup> base: u32;

fn f16_nonzero(x: f32) -> bool {
    return (f32_to_half(x) & 0x7FFFu) != 0u;
}

// Survivor mask of one vector (elements at src .. src + HEAD_DIM).
fn prune(row: ptr<function, array<f32, HEAD_DIM>>, keep: u32, out: ptr<function, array<u32, DW>>) {
    for (var j = 0u; j < HEAD_DIM; j++) {
        let a = abs((*row)[j]);
        var rank = 0u;
        for (var i = 0u; i < HEAD_DIM; i++) {
            let b = abs((*row)[i]);
            rank += select(0u, 1u, b > a || (b == a && i < j));
        }
        if (rank < keep && f16_nonzero((*row)[j])) {
            (*out)[j / 32u] |= 1u << (j % 32u);
        }
    }
}

fn src_elem(kv: u32, row: u32, c: u32) -> f32 {
    if (kv == 0u) {
        return f32(k_src[row + c]);
    }
    return f32(v_src[row + c]);
}

// Pack the set elements of a tile into the pool from unit `u`: element j of
// the tile is source element row(j) + col(j), walked in element order.
fn write_tile(kv: u32, bm: vec2<u32>, u: u32, row0: u32, row_step: u32, col0: u32, col_step: u32) {
    var n = 0u;
    var chunk = vec4<u32>(0u);
    var lo = 0.0;
    for (var j = 0u; j < T; j++) {
        let w = select(bm.x, bm.y, j >= 32u);
        if (((w >> (j % 32u)) & 1u) == 1u) {
            let x = src_elem(kv, row0 + j * row_step, col0 + j * col_step);
            if ((n & 1u) == 0u) {
                lo = x;
            } else {
                chunk[(n % 8u) / 2u] = pack_halves(lo, x);
            }
            n++;
            if (n % 8u == 0u) {
                pool[u + n / 8u - 1u] = chunk;
                chunk = vec4<u32>(0u);
            }
        }
    }
    if (n % 8u != 0u) {
        if ((n & 1u) == 1u) {
            chunk[(n % 8u) / 2u] = pack_halves(lo, 0.0);
        }
        pool[u + n / 8u] = chunk;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let b = wid.x;
    let kvh = wid.y;
    if (b >= p.n_blocks) {
        return;
    }
    let slot0 = kvh * p.src_seq + p.first_slot + b * T; // the block's first source row
    // 1. survivor masks of token t
    var kr: array<f32, HEAD_DIM>;
    var vr: array<f32, HEAD_DIM>;
    for (var c = 0u; c < HEAD_DIM; c++) {
        kr[c] = f32(k_src[(slot0 + t) * HEAD_DIM + c]);
        vr[c] = f32(v_src[(slot0 + t) * HEAD_DIM + c]);
    }
    var km: array<u32, DW>;
    var vm: array<u32, DW>;
    prune(&kr, p.keep_k, &km);
    prune(&vr, p.keep_v, &vm);
    for (var w = 0u; w < DW; w++) {
        kmask[t * DW + w] = km[w];
        vmask[t * DW + w] = vm[w];
    }
    workgroupBarrier();
    let block = (p.dst_block + b) % p.max_blocks;
    // Quest's block metadata: channel c's max / min over the pruned keys
    if (p.with_meta != 0u) {
        for (var c = t; c < HEAD_DIM; c += T) {
            var hi = 0.0;
            var lo = 0.0;
            for (var tt = 0u; tt < T; tt++) {
                let on = (kmask[tt * DW + c / 32u] >> (c % 32u)) & 1u;
                let x = select(0.0, half_to_f32(f32_to_half(src_elem(0u, (slot0 + tt) * HEAD_DIM, c))), on == 1u);
                hi = select(max(hi, x), x, tt == 0u);
                lo = select(min(lo, x), x, tt == 0u);
            }
            let o = (kvh * p.meta_stride + block) * HEAD_DIM + c;
            kmax[o] = kv_t(hi);
            kmin[o] = kv_t(lo);
        }
    }
    // 2. tile bitmaps and their sizes in units
    for (var c = t; c < HEAD_DIM; c += T) {
        var bm = vec2<u32>(0u);
        for (var tt = 0u; tt < T; tt++) {
            let bit = (kmask[tt * DW + c / 32u] >> (c % 32u)) & 1u;
            if (tt < 32u) {
                bm.x |= bit << tt;
            } else {
                bm.y |= bit << (tt - 32u);
            }
        }
        tbits[c] = bm;
    }
    for (var i = 0u; i < VT; i++) {
        let w0 = vmask[t * DW + 2u * i];
        let w1 = select(0u, vmask[t * DW + min(2u * i + 1u, DW - 1u)], 2u * i + 1u < DW);
        tbits[HEAD_DIM + t * VT + i] = vec2<u32>(w0, w1);
    }
    workgroupBarrier();
    // 3. exclusive prefix of the sizes, and the block's run in the pool
    if (t == 0u) {
        var run = 0u;
        for (var i = 0u; i < TILES; i++) {
            start[i] = run;
            let bm = tbits[i];
            run += (countOneBits(bm.x) + countOneBits(bm.y) + 7u) / 8u;
        }
        var at = atomicAdd(&state.top, run);
        if (at + run > p.pool_cap) {
            atomicMax(&state.overflow, 1u);
            at = NONE;
        }
        base = at;
    }
    let at = workgroupUniformLoad(&base);
    // 4. bitmaps, offsets and non-zeros
    let tbase = (kvh * p.max_blocks + block) * TILES;
    for (var i = t; i < TILES; i += T) {
        bits[tbase + i] = tbits[i];
        offs[tbase + i] = select(at + start[i], NONE, at == NONE);
    }
    if (at == NONE) {
        return;
    }
    for (var c = t; c < HEAD_DIM; c += T) {
        // key tile c: element j = token j's channel c
        write_tile(0u, tbits[c], at + start[c], slot0 * HEAD_DIM, HEAD_DIM, c, 0u);
    }
    for (var i = 0u; i < VT; i++) {
        // value tile (t, i): element j = channel 64 i + j of token t
        let ti = HEAD_DIM + t * VT + i;
        write_tile(1u, tbits[ti], at + start[ti], (slot0 + t) * HEAD_DIM, 0u, i * T, 1u);
    }
}
