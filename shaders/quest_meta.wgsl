// quest_meta: Quest's page metadata. For every page of PAGE cache slots that
// the call's tokens touched (slots kv_len - n_tokens .. kv_len - 1, written by
// this call's kv_append), recompute from the cache the element-wise maximum
// and minimum of the page's valid keys (post-RoPE, as stored):
//   kmax[kvh, pg, i] = max_{s in page pg, s < kv_len} K[kvh, s, i], kmin likewise.
// A partial last page covers only its valid slots; the next call that adds
// to it recomputes it, so a page's metadata always equals its keys' min/max.
// Values are copied through f32, exact for kv_t.
//
// Layout: k_cache [n_kv_heads][max_seq][HEAD_DIM] kv_t (read as kv4_t);
// kmax, kmin [n_kv_heads][max_pages][HEAD_DIM] kv_t.
// Bindings: k_cache (read), kmax (read_write), kmin (read_write), params,
// step (ops::Step).
// Prelude consts: WG, HEAD_DIM (a multiple of 4), PAGE.
// Grid: one invocation per (page of the call, KV head, 4 dims), span pages:
// grid_1d(ceil(span * n_kv_heads * HEAD_DIM / 4 / WG)); span = the most pages
// a call of max_tokens tokens touches. Pages past kv_len are skipped.

struct Params { n_kv_heads: u32, max_seq: u32, max_pages: u32, span: u32 }

@group(0) @binding(0) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(1) var<storage, read_write> kmax: array<kv4_t>;
@group(0) @binding(2) var<storage, read_write> kmin: array<kv4_t>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let d = i % D4;
    let r = i / D4;
    let kvh = r % p.n_kv_heads;
    let pi = r / p.n_kv_heads;
    let kv_len = min(step.kv_len, p.max_seq);
    if (pi >= p.span || step.n_tokens == 0u || step.n_tokens > kv_len) {
        return;
    }
    let pg = (kv_len - step.n_tokens) / PAGE + pi;
    let s0 = pg * PAGE;
    if (s0 >= kv_len || pg >= p.max_pages) {
        return;
    }
    let s1 = min(s0 + PAGE, kv_len);
    let row = kvh * p.max_seq;
    var hi = kv_k(row + s0, d);
    var lo = hi;
    for (var s = s0 + 1u; s < s1; s++) {
        let k = kv_k(row + s, d);
        hi = max(hi, k);
        lo = min(lo, k);
    }
    let o = (kvh * p.max_pages + pg) * D4 + d;
    kmax[o] = kv4_t(hi);
    kmin[o] = kv4_t(lo);
}
