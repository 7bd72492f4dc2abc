// evict_budget: DynamicKV's global ranking for one re-allocation: over the
// pooled scores of layers 0 .. p.n_layers - 1 (every KV head, the prefix
// slots j < prefix[l] of each), the p.keep-th largest score T, and per layer
// the count of its scores >= T:
//   counts[l] = #{(h, j) : j < prefix[l], score[l][h][j] >= T}.
// The host turns the counts into per-layer budgets (kv/scored.rs).
//
// Layout: score [layers][n_kv_heads][max_seq] f32; prefix [layers] u32;
// counts [layers] u32.
// Bindings: score, prefix (read), counts (read_write), params.
// Fragments: score_key, radix_select. Workgroup size 256; at most 256 layers.
// Grid: one workgroup. Each invocation walks 5 * ceil(n_layers * n_kv_heads
// * max_seq / 256) keys (under 65535 loop iterations for 8192-slot caches
// up to 60 layers of 3 KV heads; the builder checks).

struct Params { max_seq: u32, n_kv_heads: u32, n_layers: u32, keep: u32 }

@group(0) @binding(0) var<storage, read> score: array<f32>;
@group(0) @binding(1) var<storage, read> prefix: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
// Params come in a storage buffer, not a uniform: lavapipe inlines small
// uniforms into the shader and compiles (and keeps) a variant per value, so
// per-cut values in a uniform grew its memory by megabytes per cut.
@group(0) @binding(3) var<storage, read> p: Params;

var<workgroup> per_layer: array<atomic<u32>, 256>;

fn select_key(i: u32) -> u32 {
    let l = i / (p.n_kv_heads * p.max_seq);
    let j = i % p.max_seq;
    if (j >= prefix[l]) {
        return 0u;
    }
    return score_key(score[i]);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let n = p.n_layers * p.n_kv_heads * p.max_seq;
    let r = radix_select(lid, n, max(p.keep, 1u));
    atomicStore(&per_layer[lid], 0u);
    workgroupBarrier();
    for (var i = lid; i < n; i += 256u) {
        let k = select_key(i);
        if (k >= r.x && k != 0u) {
            atomicAdd(&per_layer[i / (p.n_kv_heads * p.max_seq)], 1u);
        }
    }
    workgroupBarrier();
    if (lid < p.n_layers) {
        counts[lid] = atomicLoad(&per_layer[lid]);
    }
}
