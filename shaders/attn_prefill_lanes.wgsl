// attn_prefill_lanes: the CPU-adapter form of attn_prefill (causal
// grouped-query attention for a prefill chunk), same contract: query token t
// of the call (t < step.n_tokens), at slot at = step.kv_len - step.n_tokens
// + t, attends the cache slots j it sees (attn_sees: j <= at, and
// j > at - WINDOW with a window), read after this call's kv_append:
//   out[t, h] = softmax_j(attn_score(scale * q[t, h] . K[kvh, j])) @ V[kvh, j],
//   kvh = h / GROUP.
// This kernel is the first half: partial softmax states per split of the
// slots, combined by attn_merge (rows = token x query head).
//
// A workgroup serves one KV head, LANES consecutive tokens and one split of
// at most CHUNK slots, one token per invocation with all GROUP query heads
// of the KV head. Every lane walks the same keys of the split (up to the
// last slot any of its tokens may attend, from the first its first token
// sees), so the K and V loads are the same in every lane; keys a lane's
// token does not see are masked. Each lane keeps
// one online-softmax state (max, sum, output) per head. No workgroup memory
// and no barriers: on lavapipe a workgroup runs as one 8-wide SIMD loop,
// where attn_prefill's staged tiles and barriers cost more than the
// arithmetic (about 1.4x attn_prefill's speed on lavapipe, 512-token
// prefill of the real model).
//
// Why splits: llvmpipe stops all loops of an invocation after 65535
// iterations in total (its LP_MAX_TGSI_LOOP_ITERATIONS, shared by every
// loop), silently. One lane walking a whole 8k context ran past it at
// about 3.6k slots with f16 caches. CHUNK is chosen on the host so that a
// split stays under that count even with no inner loop unrolled
// (AttnShape::prefill_lanes_chunk).
//
// Partial state of (token t, head h, split c), at part index
// (t * n_heads + h) * n_split + c:
//   part_ml = (m, l): max score and sum of exp(s - m) over the split's live
//   slots; part_o = sum of exp(s - m) V (unnormalised). A split without live
//   slots writes (-1e30, 0) and no o (the merge never reads o where l = 0).
//
// Layout: q [max_tokens][n_heads][HEAD_DIM] f32; caches
// [n_kv_heads][max_seq][HEAD_DIM] kv_t (read as kv4_t); part_o
// [max_tokens][n_heads][n_split][HEAD_DIM] f32; part_ml
// [max_tokens][n_heads][n_split] vec2 f32.
// Bindings: q (read), k_cache (read), v_cache (read), part_o (read_write),
// part_ml (read_write), params, step (ops::Step).
// Prelude consts: LANES (tokens per workgroup), HEAD_DIM (a multiple of 4),
// GROUP (query heads per KV head), CHUNK (most slots per split), KB (slots
// per iteration of the key loop); SOFTCAP,
// WINDOW (attn_core.wgsl).
// Grid: (ceil(max_tokens / LANES), n_kv_heads, n_split), n_split * CHUNK >=
// max_seq; workgroups past step.n_tokens exit at once, tokens past it write
// nothing.

struct Params {
    n_heads: u32, n_kv_heads: u32, max_seq: u32, group: u32,
    scale: f32, max_tokens: u32, n_split: u32, _p0: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<kvw_t>;
@group(0) @binding(2) var<storage, read> v_cache: array<kvw_t>;
@group(0) @binding(3) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

const D4: u32 = HEAD_DIM / 4u;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let kvh = wid.y;
    let h0 = kvh * GROUP;
    let n_tok = min(step.n_tokens, p.max_tokens);
    let t0 = wid.x * LANES;
    if (t0 >= n_tok || step.n_tokens > step.kv_len) {
        return;
    }
    let base = step.kv_len - step.n_tokens; // slots cached before this call
    let t = min(t0 + lane, n_tok - 1u); // lanes past n_tok repeat the last token
    let lim = min(base + t, p.max_seq - 1u); // this lane's slot, the last it may attend
    let kv_end = min(base + min(t0 + LANES, n_tok), p.max_seq); // keys any lane needs
    let s0 = wid.z * CHUNK;
    let s1 = min(s0 + CHUNK, kv_end); // this split's slots: s0 .. s1
    let first = max(s0, attn_window_lo(base + t0)); // the first any lane sees

    var qr: array<vec4<f32>, GROUP * D4>;
    let qo = (t * p.n_heads + h0) * D4;
    for (var i = 0u; i < GROUP * D4; i++) {
        qr[i] = q[qo + i] * p.scale;
    }
    var acc: array<vec4<f32>, GROUP * D4>;
    var m: array<f32, GROUP>;
    var l: array<f32, GROUP>;
    for (var g = 0u; g < GROUP; g++) {
        m[g] = NEG;
    }
    let head = kvh * p.max_seq;
    // KB slots per iteration: each query vector and each accumulator is
    // loaded once per block instead of once per slot (the per-lane state
    // does not fit in registers), and the running max rescales once per
    // block. Slots of the last block past s1 re-read slot s1 - 1, masked.
    for (var j = first; j < s1; j += KB) {
        var dp: array<vec4<f32>, GROUP * KB>;
        for (var d = 0u; d < D4; d++) {
            var kb: array<vec4<f32>, KB>;
            for (var b = 0u; b < KB; b++) {
                kb[b] = kv_k(head + min(j + b, s1 - 1u), d);
            }
            for (var g = 0u; g < GROUP; g++) {
                let qv = qr[g * D4 + d];
                for (var b = 0u; b < KB; b++) {
                    dp[g * KB + b] += qv * kb[b];
                }
            }
        }
        // Which slots of the block this lane's token sees (the same for its
        // query heads).
        var live: array<bool, KB>;
        for (var b = 0u; b < KB; b++) {
            live[b] = j + b < s1 && attn_sees(lim, j + b);
        }
        var alpha: array<f32, GROUP>;
        var pj: array<f32, GROUP * KB>;
        for (var g = 0u; g < GROUP; g++) {
            var sc: array<f32, KB>;
            var top = NEG;
            for (var b = 0u; b < KB; b++) {
                let e = dp[g * KB + b];
                sc[b] = select(NEG, attn_score((e.x + e.y) + (e.z + e.w)), live[b]);
                top = max(top, sc[b]);
            }
            let r = softmax_rescale(m[g], top);
            var sum = 0.0;
            for (var b = 0u; b < KB; b++) {
                let pb = select(0.0, exp(sc[b] - r.x), live[b]);
                pj[g * KB + b] = pb;
                sum += pb;
            }
            alpha[g] = r.y;
            m[g] = r.x;
            l[g] = l[g] * r.y + sum;
        }
        for (var d = 0u; d < D4; d++) {
            var vb: array<vec4<f32>, KB>;
            for (var b = 0u; b < KB; b++) {
                vb[b] = kv_v(head + min(j + b, s1 - 1u), d);
            }
            for (var g = 0u; g < GROUP; g++) {
                var a = acc[g * D4 + d] * alpha[g];
                for (var b = 0u; b < KB; b++) {
                    a += pj[g * KB + b] * vb[b];
                }
                acc[g * D4 + d] = a;
            }
        }
    }
    if (t0 + lane < n_tok) {
        for (var g = 0u; g < GROUP; g++) {
            let part = (t * p.n_heads + h0 + g) * p.n_split + wid.z;
            part_ml[part] = vec2<f32>(m[g], l[g]);
            if (l[g] > 0.0) {
                for (var d = 0u; d < D4; d++) {
                    part_o[part * D4 + d] = acc[g * D4 + d];
                }
            }
        }
    }
}
