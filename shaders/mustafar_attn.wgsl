// mustafar_attn: decode attention of the query token over the compressed
// blocks, read directly in Mustafar's format (no expansion): the first half
// of flash-decoding, one partial softmax state per (query head, block) for
// attn_merge, which combines them with the dense window's partials.
//   q.K: invocation t walks the HEAD_DIM key tiles; token t's channel c is
//        present when bit t of tile c is set, at position popcount(bits
//        below t) of the tile's non-zeros.
//   p.V: invocation c (a channel) walks the 64 tokens' value tiles the same
//        way with bit c % 64.
// Partial of (head h, block b) at part index h * part_stride + part_base + b:
//   part_ml = (m, l) = (max_t s_t, sum_t exp(s_t - m)),
//   s_t = attn_score(scale q_h . K_t) (the softcap, if any);
//   part_o  = sum_t exp(s_t - m) V_t (unnormalised). Blocks at or past
//   n_blocks write (-1e30, 0) and no o.
//
// Layout: q [n_heads][HEAD_DIM] f32 (row 0); bits / offs / pool as
// mustafar_compress writes them; part_o [..][HEAD_DIM] f32; part_ml [..]
// vec2 f32.
// Bindings: q, bits, offs, pool (read), part_o, part_ml (read_write),
// params, blocks (uniform: n_blocks, the live compressed blocks, and first:
// the live blocks form a ring, live block b being store block
// (first + b) % max_blocks), list (read).
// Selection (Quest over the blocks): with list_len > 0, workgroup x attends
// live block list[kvh * list_len + x] for x < min(n_blocks, list_len)
// (quest_select's page list, one per KV head), and writes partial x.
// Prelude consts: HEAD_DIM (a multiple of 4, at most 128), GROUP (query
// heads per KV head); SOFTCAP (attn_core.wgsl). No WINDOW: a block does not
// know its tokens' positions (ops::mustafar refuses a window).
// Fragments: half.wgsl, mustafar_tiles.wgsl (T, VT, TILES, tile_get).
// Grid: (max_blocks, n_kv_heads, 1), 64 invocations.

struct Params {
    n_heads: u32, max_blocks: u32, part_stride: u32, part_base: u32,
    scale: f32, list_len: u32, _p1: u32, _p2: u32,
}
struct Blocks { n_blocks: u32, first: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> bits: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> offs: array<u32>;
@group(0) @binding(3) var<storage, read> pool: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<uniform> blocks: Blocks;
@group(0) @binding(8) var<storage, read> list: array<u32>;


var<workgroup> prob: array<f32, GROUP * T>; // scores, then exp(s - m)
var<workgroup> ml: array<vec2<f32>, GROUP>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let b = wid.x;
    let kvh = wid.y;
    let h0 = kvh * GROUP;
    let count = select(blocks.n_blocks, min(blocks.n_blocks, p.list_len), p.list_len > 0u);
    if (b >= count) {
        if (t < GROUP) {
            part_ml[(h0 + t) * p.part_stride + p.part_base + b] = vec2<f32>(NEG, 0.0);
        }
        return;
    }
    var live = b;
    if (p.list_len > 0u) {
        live = list[kvh * p.list_len + b];
    }
    let tbase = (kvh * p.max_blocks + (blocks.first + live) % p.max_blocks) * TILES;
    // scores of token t for the group's heads
    var s: array<f32, GROUP>;
    for (var c = 0u; c < HEAD_DIM; c++) {
        let k = tile_get(bits[tbase + c], offs[tbase + c], t);
        for (var g = 0u; g < GROUP; g++) {
            s[g] += q[(h0 + g) * HEAD_DIM + c] * k;
        }
    }
    for (var g = 0u; g < GROUP; g++) {
        prob[g * T + t] = attn_score(s[g] * p.scale);
    }
    workgroupBarrier();
    if (t < GROUP) {
        var m = NEG;
        for (var j = 0u; j < T; j++) {
            m = max(m, prob[t * T + j]);
        }
        var l = 0.0;
        for (var j = 0u; j < T; j++) {
            l += exp(prob[t * T + j] - m);
        }
        ml[t] = vec2<f32>(m, l);
    }
    workgroupBarrier();
    for (var g = 0u; g < GROUP; g++) {
        prob[g * T + t] = exp(prob[g * T + t] - ml[g].x);
    }
    workgroupBarrier();
    for (var c = t; c < HEAD_DIM; c += T) {
        var o: array<f32, GROUP>;
        for (var j = 0u; j < T; j++) {
            let ti = tbase + HEAD_DIM + j * VT + c / T;
            let v = tile_get(bits[ti], offs[ti], c % T);
            for (var g = 0u; g < GROUP; g++) {
                o[g] += prob[g * T + j] * v;
            }
        }
        for (var g = 0u; g < GROUP; g++) {
            part_o[((h0 + g) * p.part_stride + p.part_base + b) * HEAD_DIM + c] = o[g];
        }
    }
    if (t < GROUP) {
        part_ml[(h0 + t) * p.part_stride + p.part_base + b] = ml[t];
    }
}
