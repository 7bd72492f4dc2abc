// kv_place: copy a layer's dense window (Mustafar's recent, uncompressed
// slots) behind its expanded compressed blocks in a dense scratch cache, so
// the dense prefill kernels see the whole context:
//   dst[h][c0 + i] <- src[h][i]   for i < w, per KV head h,
// with w = win.kv_len (the window's slots, this call's tokens included) and
// c0 = step.kv_len - win.kv_len (the slots held compressed).
//
// Layout: k_src, v_src [n_kv_heads][src_seq][HEAD_DIM] kv_t (as kv4_t);
// k_dst, v_dst [n_kv_heads][dst_seq][HEAD_DIM].
// Bindings: k_src, v_src (read), k_dst, v_dst (read_write), params, step,
// win (ops::Step of the whole context and of the window).
// Prelude consts: WG, HEAD_DIM (a multiple of 4).
// Grid: grid_1d(ceil(n_kv_heads * src_seq * HEAD_DIM / 4 / WG)), one vec4 each.

struct Params { n_kv_heads: u32, src_seq: u32, dst_seq: u32, _p: u32 }

@group(0) @binding(0) var<storage, read> k_src: array<kv4_t>;
@group(0) @binding(1) var<storage, read> v_src: array<kv4_t>;
@group(0) @binding(2) var<storage, read_write> k_dst: array<kv4_t>;
@group(0) @binding(3) var<storage, read_write> v_dst: array<kv4_t>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<uniform> win: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let d = i % D4;
    let r = i / D4;
    let slot = r % p.src_seq;
    let h = r / p.src_seq;
    let w = min(win.kv_len, p.src_seq);
    if (h >= p.n_kv_heads || slot >= w || win.kv_len > step.kv_len) {
        return;
    }
    let dst = step.kv_len - win.kv_len + slot;
    if (dst >= p.dst_seq) {
        return;
    }
    let s = (h * p.src_seq + slot) * D4 + d;
    let o = (h * p.dst_seq + dst) * D4 + d;
    k_dst[o] = k_src[s];
    v_dst[o] = v_src[s];
}
