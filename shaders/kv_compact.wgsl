// kv_compact: eviction's compaction. Gathers the kept slots of one layer's
// K and V caches in place, per KV head h: for i < counts[h],
//   row i <- row keep[h][i],
// so the kept tokens become slots 0 .. counts[h] - 1 in their old order and
// the slots after them are free for new tokens. Rows hold post-RoPE keys, so
// a token keeps its original position whatever slot it lands in.
// keep[h] must be strictly increasing (then keep[h][i] >= i, and walking i
// upward never overwrites a row still to be read). Each invocation owns one
// column (a kvw_t unit: a vec4 of a dense row, a word of a quantized one) of one head and walks the rows in order, so no two
// invocations touch the same element. With p.has_acc, the invocation of a
// head's first column moves the head's scores the same way
// (acc[h][i] <- acc[h][keep[h][i]]) and zeroes the
// freed rows past counts[h], so a slot filled later starts from 0.
//
// Layout: k_cache, v_cache [n_kv_heads][max_seq][KV_ROW] kvw_t (kernels.rs:
// HEAD_DIM / 4 kv4_t when dense, the quantized row's words with KVQ);
// keep [n_kv_heads][max_keep] u32; counts [n_kv_heads] u32; acc
// [n_kv_heads][max_seq] f32 (a placeholder without scores).
// Bindings: k_cache, v_cache (read_write), keep, counts (read), acc
// (read_write), params.
// Prelude consts: WG, HEAD_DIM (a multiple of 4), KVQ where quantized.
// Grid: ceil(n_kv_heads * KV_ROW / WG) workgroups. Loop length
// counts[h] <= max_keep, plus max_seq - counts[h] to zero scores (llvmpipe caps an invocation at 65535 iterations:
// the builder refuses max_keep above MAX_KEEP).

struct Params { n_kv_heads: u32, max_seq: u32, max_keep: u32, has_acc: u32 }

@group(0) @binding(0) var<storage, read_write> k_cache: array<kvw_t>;
@group(0) @binding(1) var<storage, read_write> v_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> keep: array<u32>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.n_kv_heads * KV_ROW) {
        return;
    }
    let h = i / KV_ROW;
    let d = i % KV_ROW;
    let head = h * p.max_seq * KV_ROW + d;
    let n = min(counts[h], min(p.max_keep, p.max_seq));
    for (var r = 0u; r < n; r++) {
        let src = keep[h * p.max_keep + r];
        if (src != r && src < p.max_seq) {
            k_cache[head + r * KV_ROW] = k_cache[head + src * KV_ROW];
            v_cache[head + r * KV_ROW] = v_cache[head + src * KV_ROW];
        }
    }
    if (p.has_acc != 0u && d == 0u) {
        let row = h * p.max_seq;
        for (var r = 0u; r < n; r++) {
            let src = keep[h * p.max_keep + r];
            if (src < p.max_seq) {
                acc[row + r] = acc[row + src];
            }
        }
        for (var r = n; r < p.max_seq; r++) {
            acc[row + r] = 0.0;
        }
    }
}
