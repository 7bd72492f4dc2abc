//! KV-cache append, causal prefill attention and flash-decoding (decode +
//! merge) against their CPU references, on every context (f16 and f32 KV
//! storage). The references see the same cache values the GPU stores (rounded
//! through f16 on f16 contexts), so only f32-vs-f64 arithmetic differs.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::Kernel;
use wgkv::ops::Step;
use wgkv::ops::attention::{self as ops, AttnKind, AttnShape, DecodeScratch, PrefillScratch};
use wgkv::reference::attention as reference;

/// Attention outputs are convex combinations of V rows (|v| <= 1), computed from
/// the same (f16-rounded) K/V as the reference: what is left is f32 scores over
/// head_dim terms, f32 exp and sums over up to 8192 slots, so the f32 reduction
/// preset applies. The log-sum-exp uses it too (|lse| stays below ~20 here).
const ATTN: Tol = F32_REDUCTION;

fn shape(n_heads: u32, n_kv_heads: u32, head_dim: u32, max_seq: u32) -> AttnShape {
    AttnShape { n_heads, n_kv_heads, head_dim, max_seq, ..Default::default() }
}

fn step_bytes(pos: u32, n_tokens: u32, kv_len: u32) -> Vec<u8> {
    bytemuck::bytes_of(&Step { pos, n_tokens, kv_len, _pad: 0 }).to_vec()
}

/// One layer's K/V cache on the GPU (poisoned, with guard words after it) and
/// its CPU mirror (the values the GPU holds, in f32).
struct Cache {
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    kc: Vec<f32>,
    vc: Vec<f32>,
}

impl Cache {
    fn new(g: &Gpu, s: &AttnShape) -> Cache {
        let words = (s.cache_bytes(g.caps.f16) / 4) as usize;
        let n = (s.n_kv_heads * s.max_seq * s.head_dim) as usize;
        Cache { k: poisoned(g, "k_cache", words), v: poisoned(g, "v_cache", words), kc: vec![0.0; n], vc: vec![0.0; n] }
    }

    /// Fill slots `0..n` of every head with random values, directly.
    fn preload(&mut self, g: &Gpu, s: &AttnShape, rng: &mut Rng, n: usize) {
        let hd = s.head_dim as usize;
        let elem = if g.caps.f16 { 2 } else { 4 };
        for h in 0..s.n_kv_heads as usize {
            let off = h * s.max_seq as usize * hd;
            for (buf, mirror) in [(&self.k, &mut self.kc), (&self.v, &mut self.vc)] {
                let vals = kv_round(g, &rng.vec(n * hd, -1.0, 1.0));
                g.write(buf, (off * elem) as u64, &kv_bytes(g, &vals));
                mirror[off..off + n * hd].copy_from_slice(&vals);
            }
        }
    }

    /// Mirror a kv_append of `k_new`/`v_new` at `first_slot`.
    fn append_ref(&mut self, g: &Gpu, s: &AttnShape, k_new: &[f32], v_new: &[f32], first_slot: usize) {
        reference::kv_append(s, &mut self.kc, &mut self.vc, &kv_round(g, k_new), &kv_round(g, v_new), first_slot);
    }
}

#[test]
fn kv_append_stores_exact_rows_and_nothing_else() {
    // (n_kv_heads, head_dim, max_seq, prior slots, n_tokens): real model, a
    // single token landing on the last slot, 65 tokens with head_dim 32, 512
    // tokens after prior context.
    let cases = [(3, 64, 40, 0, 7), (3, 64, 40, 20, 5), (1, 128, 16, 15, 1), (2, 32, 70, 0, 65), (3, 64, 600, 3, 512)];
    for g in contexts() {
        let mut rng = Rng::new(10);
        for &(kvh, hd, ms, prior, n) in &cases {
            let s = shape(kvh, kvh, hd, ms);
            let max_tokens = n + 3; // rows past step.n_tokens must not be stored
            let row = (kvh * hd) as usize;
            let k_new = rng.vec(max_tokens as usize * row, -4.0, 4.0);
            let v_new = rng.vec(max_tokens as usize * row, -4.0, 4.0);
            let cache = Cache::new(&g, &s);
            let step = g.uniform("step", &step_bytes(prior, n, prior + n));
            let d = ops::kv_append(&g, &s, &upload_f32(&g, "k", &k_new), &upload_f32(&g, "v", &v_new), &cache.k, &cache.v, &step, max_tokens);
            assert_eq!(d.kernel, Kernel::KvAppend);
            g.run(&[&d]);

            let words = (s.cache_bytes(g.caps.f16) / 4) as usize + GUARD_WORDS;
            for (buf, new, name) in [(&cache.k, &k_new, "k"), (&cache.v, &v_new, "v")] {
                let got = g.read_u32(buf, words);
                // Expected: poison everywhere (guard words included) except the new rows.
                let mut want: Vec<u8> = bytemuck::cast_slice(&vec![GUARD; words]).to_vec();
                let elem = if g.caps.f16 { 2 } else { 4 };
                for t in 0..n as usize {
                    for h in 0..kvh as usize {
                        let src = &new[t * row + h * hd as usize..][..hd as usize];
                        let dst = (h * ms as usize + prior as usize + t) * hd as usize * elem;
                        want[dst..dst + src.len() * elem].copy_from_slice(&kv_bytes(&g, src));
                    }
                }
                let want: Vec<u32> = bytemuck::pod_collect_to_vec(&want);
                let bad = got.iter().zip(&want).position(|(a, b)| a != b);
                assert!(
                    bad.is_none(),
                    "kv_append {name} kvh={kvh} hd={hd} prior={prior} n={n} on {}: word {} is {:08x}, want {:08x}",
                    label(&g),
                    bad.unwrap(),
                    got[bad.unwrap()],
                    want[bad.unwrap()]
                );
            }
        }
    }
}

/// Run append + prefill for `n` new tokens after `prior` preloaded slots and
/// compare with the reference; rows past `n` of `out` must stay poisoned.
fn check_prefill(g: &Gpu, rng: &mut Rng, s: &AttnShape, n: u32, prior: u32) {
    check_prefill_kind(g, rng, s, n, prior, AttnKind::for_gpu(g));
}

fn check_prefill_kind(g: &Gpu, rng: &mut Rng, s: &AttnShape, n: u32, prior: u32, kind: AttnKind) {
    check_prefill_q(g, rng, s, n, prior, kind, 2.0);
}

/// `check_prefill_kind` with queries in ±`q_range` (wide scores for the
/// softcap); with options on, the log-sum-exp is checked too.
#[allow(clippy::too_many_arguments)]
fn check_prefill_q(g: &Gpu, rng: &mut Rng, s: &AttnShape, n: u32, prior: u32, kind: AttnKind, q_range: f32) {
    let max_tokens = n + 2;
    let (qrow, kvrow) = ((s.n_heads * s.head_dim) as usize, (s.n_kv_heads * s.head_dim) as usize);
    let mut cache = Cache::new(g, s);
    cache.preload(g, s, rng, prior as usize);
    let q = rng.vec(max_tokens as usize * qrow, -q_range, q_range);
    let k_new = rng.vec(max_tokens as usize * kvrow, -1.0, 1.0);
    let v_new = rng.vec(max_tokens as usize * kvrow, -1.0, 1.0);
    let step = g.uniform("step", &step_bytes(prior, n, prior + n));
    let out = poisoned(g, "out", max_tokens as usize * qrow);
    let (kb, vb, qb) = (upload_f32(g, "k", &k_new), upload_f32(g, "v", &v_new), upload_f32(g, "q", &q));
    let app = ops::kv_append(g, s, &kb, &vb, &cache.k, &cache.v, &step, max_tokens);
    let scratch = PrefillScratch::with_kind(g, s, kind, max_tokens).unwrap();
    let attn = ops::attn_prefill(g, s, &qb, &cache.k, &cache.v, &scratch, &out, &step);
    let want_kernel = if kind == AttnKind::Lanes { Kernel::AttnPrefillLanes } else { Kernel::AttnPrefill };
    assert_eq!(attn[0].kernel, want_kernel);
    g.run(&[&[&app], attn.iter().collect::<Vec<_>>().as_slice()].concat());

    let all = read_guarded_f32(g, &out, max_tokens as usize * qrow);
    let (got, rest) = all.split_at(n as usize * qrow);
    assert!(rest.iter().all(|v| v.to_bits() == GUARD), "prefill wrote rows past n_tokens");
    let used = n as usize * kvrow;
    cache.append_ref(g, s, &k_new[..used], &v_new[..used], prior as usize);
    let want = reference::attention(s, &q[..n as usize * qrow], &cache.kc, &cache.vc, n as usize, (prior + n) as usize);
    let what = format!("prefill ({kind:?}) heads {}/{} dim {} n={n} prior={prior} on {}", s.n_heads, s.n_kv_heads, s.head_dim, label(g));
    assert_close(&format!("{what} softcap {} window {} q±{q_range}", s.softcap, s.window), got, &want.out, ATTN);
    if s.softcap > 0.0 || s.window > 0 {
        // The log-sum-exp eviction's scores divide by: over the same scores and slots.
        let lse = g.read_f32(&scratch.lse, (n * s.n_heads) as usize);
        assert_close(&format!("{what} softcap {} window {}: lse", s.softcap, s.window), &lse, &want.lse, ATTN);
    }
}

#[test]
fn prefill_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(20);
        for &(nh, nkv) in &[(9, 3), (4, 4), (8, 1)] {
            for &n in &[1, 7, 65, 300] {
                for &prior in &[0, 37] {
                    check_prefill(&g, &mut rng, &shape(nh, nkv, 64, n + prior + 5), n, prior);
                }
            }
        }
        // Other head dims (other tile sizes), the tile-boundary count 64 and a
        // full 512-token chunk.
        check_prefill(&g, &mut rng, &shape(9, 3, 128, 200), 65, 40);
        check_prefill(&g, &mut rng, &shape(4, 2, 32, 200), 7, 100);
        check_prefill(&g, &mut rng, &shape(6, 2, 96, 200), 30, 50);
        check_prefill(&g, &mut rng, &shape(9, 3, 64, 600), 64, 0);
        check_prefill(&g, &mut rng, &shape(9, 3, 64, 600), 512, 0);
        // Late chunks of long prompts: deep prior contexts. llvmpipe stops an
        // invocation's loops after 65535 iterations in all; one lane walking
        // every slot broke past ~3.6k slots (f16) before the slots were split.
        check_prefill(&g, &mut rng, &shape(9, 3, 64, 8192), 512, 1600);
        check_prefill(&g, &mut rng, &shape(9, 3, 64, 8192), 512, 3500);
        check_prefill(&g, &mut rng, &shape(9, 3, 64, 8192), 9, 8183);
        check_prefill(&g, &mut rng, &shape(16, 2, 128, 4096), 8, 4000);
    }
}

/// Append one token at slot kv_len - 1 after `kv_len - 1` preloaded slots and
/// decode it; `q_range` widens the scores to test the softmax's stability.
fn check_decode(g: &Gpu, rng: &mut Rng, s: &AttnShape, kv_len: u32, q_range: f32) {
    check_decode_kind(g, rng, s, kv_len, q_range, AttnKind::for_gpu(g));
}

fn check_decode_kind(g: &Gpu, rng: &mut Rng, s: &AttnShape, kv_len: u32, q_range: f32, kind: AttnKind) {
    let (qrow, kvrow) = ((s.n_heads * s.head_dim) as usize, (s.n_kv_heads * s.head_dim) as usize);
    let mut cache = Cache::new(g, s);
    cache.preload(g, s, rng, kv_len as usize - 1);
    let q = rng.vec(qrow, -q_range, q_range);
    let k_new = rng.vec(kvrow, -1.0, 1.0);
    let v_new = rng.vec(kvrow, -1.0, 1.0);
    let step = g.uniform("step", &step_bytes(kv_len - 1, 1, kv_len));
    let (kb, vb, qb) = (upload_f32(g, "k", &k_new), upload_f32(g, "v", &v_new), upload_f32(g, "q", &q));
    let scratch = DecodeScratch::with_kind(g, s, kind);
    let out = poisoned(g, "out", qrow);
    let lse = poisoned(g, "lse", s.n_heads as usize);
    let app = ops::kv_append(g, s, &kb, &vb, &cache.k, &cache.v, &step, 1);
    let dec = ops::attn_decode(g, s, &qb, &cache.k, &cache.v, &scratch, &out, &lse, &step);
    let want_kernel = if kind == AttnKind::Lanes { Kernel::AttnDecodeLanes } else { Kernel::AttnDecode };
    assert_eq!(dec.partial.kernel, want_kernel);
    assert_eq!(dec.merge.kernel, Kernel::AttnMerge);
    g.run(&[&app, &dec.partial, &dec.merge]);

    cache.append_ref(g, s, &k_new, &v_new, kv_len as usize - 1);
    let want = reference::attention(s, &q, &cache.kc, &cache.vc, 1, kv_len as usize);
    let what = format!("decode ({kind:?}) heads {}/{} dim {} kv_len={kv_len} q±{q_range} on {}", s.n_heads, s.n_kv_heads, s.head_dim, label(g));
    assert_close(&format!("{what}: out"), &read_guarded_f32(g, &out, qrow), &want.out, ATTN);
    assert_close(&format!("{what}: lse"), &read_guarded_f32(g, &lse, s.n_heads as usize), &want.lse, ATTN);
}

#[test]
fn decode_matches_reference() {
    let lens = [1, 2, 63, 64, 65, 1000, 4097];
    for g in contexts() {
        let mut rng = Rng::new(30);
        for &(nh, nkv, hd) in &[(9, 3, 64), (4, 4, 64), (8, 1, 64), (9, 3, 128)] {
            let s = shape(nh, nkv, hd, 4100);
            for &kv_len in &lens {
                check_decode(&g, &mut rng, &s, kv_len, 2.0);
            }
        }
        check_decode(&g, &mut rng, &shape(9, 3, 64, 200), 130, 12.0);
        // head_dim 96: 24 vec4 columns do not divide the 64 invocations.
        check_decode(&g, &mut rng, &shape(6, 2, 96, 300), 257, 2.0);
        check_decode(&g, &mut rng, &shape(6, 2, 32, 300), 100, 2.0);
        check_decode(&g, &mut rng, &shape(9, 3, 64, 8192), 8192, 2.0);
    }
}

#[test]
fn prefill_other_kind_matches_reference() {
    // The prefill kernel of the other adapter class, on every context.
    for g in contexts() {
        let kind = if AttnKind::for_gpu(&g) == AttnKind::Lanes { AttnKind::Shared } else { AttnKind::Lanes };
        let mut rng = Rng::new(21);
        for &(nh, nkv) in &[(9, 3), (8, 1)] {
            for &(n, prior) in &[(1, 0), (7, 37), (65, 0), (300, 37)] {
                check_prefill_kind(&g, &mut rng, &shape(nh, nkv, 64, n + prior + 5), n, prior, kind);
            }
        }
        check_prefill_kind(&g, &mut rng, &shape(6, 2, 96, 200), 30, 50, kind);
    }
}

#[test]
fn decode_other_kind_matches_reference() {
    // The decode kernel of the other adapter class, on every context: odd
    // lengths (partial lanes and chunks), GQA groups 3 and 8, head_dim 96.
    for g in contexts() {
        let kind = if AttnKind::for_gpu(&g) == AttnKind::Lanes { AttnKind::Shared } else { AttnKind::Lanes };
        let mut rng = Rng::new(31);
        for &(nh, nkv, hd) in &[(9, 3, 64), (8, 1, 64), (6, 2, 96)] {
            let s = shape(nh, nkv, hd, 4100);
            for &kv_len in &[1, 7, 65, 1000, 4097] {
                check_decode_kind(&g, &mut rng, &s, kv_len, 2.0, kind);
            }
        }
    }
}

/// The model's usage: one set of dispatches per layer, built once; prefill in
/// chunks (a later chunk sees the earlier ones through the cache), then decode
/// steps, only the step uniform changing between calls.
#[test]
fn chunked_prefill_then_decode_reuse_bind_groups() {
    let s = shape(9, 3, 64, 700);
    let max_tokens = 300;
    let (qrow, kvrow) = ((s.n_heads * s.head_dim) as usize, (s.n_kv_heads * s.head_dim) as usize);
    for g in contexts() {
        let mut rng = Rng::new(40);
        let mut cache = Cache::new(&g, &s);
        let (qb, kb, vb) =
            (g.buffer("q", (max_tokens * qrow * 4) as u64), g.buffer("k", (max_tokens * kvrow * 4) as u64), g.buffer("v", (max_tokens * kvrow * 4) as u64));
        let out = g.buffer("out", (max_tokens * qrow * 4) as u64);
        let lse = g.buffer("lse", s.n_heads as u64 * 4);
        let step = g.uniform("step", &step_bytes(0, 0, 0));
        let scratch = DecodeScratch::new(&g, &s);
        let app = ops::kv_append(&g, &s, &kb, &vb, &cache.k, &cache.v, &step, max_tokens as u32);
        let pre_scratch = PrefillScratch::new(&g, &s, max_tokens as u32).unwrap();
        let pre = ops::attn_prefill(&g, &s, &qb, &cache.k, &cache.v, &pre_scratch, &out, &step);
        let dec = ops::attn_decode(&g, &s, &qb, &cache.k, &cache.v, &scratch, &out, &lse, &step);

        let mut kv_len = 0usize;
        // Prefill chunks to 373 slots, then 20 decode steps; with 3 decode chunks the
        // chunk length grows from 128 to 192 slots at kv_len 385.
        let calls: Vec<usize> = [65, 7, 1, 64, 236].into_iter().chain(std::iter::repeat_n(1, 20)).collect();
        for (i, &n) in calls.iter().enumerate() {
            let q = rng.vec(n * qrow, -2.0, 2.0);
            let k = rng.vec(n * kvrow, -1.0, 1.0);
            let v = rng.vec(n * kvrow, -1.0, 1.0);
            g.write(&qb, 0, bytemuck::cast_slice(&q));
            g.write(&kb, 0, bytemuck::cast_slice(&k));
            g.write(&vb, 0, bytemuck::cast_slice(&v));
            g.write(&step, 0, &step_bytes(kv_len as u32, n as u32, (kv_len + n) as u32));
            let decode = i >= 5;
            if decode {
                g.run(&[&app, &dec.partial, &dec.merge]);
            } else {
                g.run(&[&[&app], pre.iter().collect::<Vec<_>>().as_slice()].concat());
            }
            cache.append_ref(&g, &s, &k, &v, kv_len);
            kv_len += n;
            let want = reference::attention(&s, &q, &cache.kc, &cache.vc, n, kv_len);
            let what = format!("call {i} ({} n={n}, kv_len={kv_len}) on {}", if decode { "decode" } else { "prefill" }, label(&g));
            assert_close(&what, &g.read_f32(&out, n * qrow), &want.out, ATTN);
            if decode {
                assert_close(&format!("{what}: lse"), &g.read_f32(&lse, s.n_heads as usize), &want.lse, ATTN);
            }
        }
    }
}

#[test]
fn shapes_are_checked_and_specs_cover_the_model() {
    for g in contexts() {
        assert!(shape(9, 3, 64, 8192).check(&g).is_ok());
        assert!(shape(9, 4, 64, 8192).check(&g).is_err(), "9 heads over 4 KV heads");
        assert!(shape(9, 3, 62, 8192).check(&g).is_err(), "head_dim not a multiple of 4");
        assert!(shape(9, 3, 260, 8192).check(&g).is_err(), "head_dim above 4 * WG");
        assert!(shape(9, 3, 64, 0).check(&g).is_err(), "empty context");
        let long = shape(1, 1, 4, ops::MAX_SEQ + 1).check(&g).unwrap_err().to_string();
        assert!(long.contains("lower --ctx"), "{long}");
    }
    // A lanes prefill split stays inside the loop budget for every listed shape.
    for &hd in ops::SPEC_HEAD_DIMS {
        for &gr in ops::SPEC_GROUPS {
            let s = shape(gr, 1, hd, 8192);
            let (d4, kb, chunk) = (hd / 4, s.prefill_lanes_kb(), s.prefill_lanes_chunk());
            // Per block: its own iteration, K and V walks over d4 (loads of kb,
            // heads of kb), softmax per head (two loops of kb).
            let per_block = 1 + 2 * d4 * (1 + kb + gr + gr * kb) + gr * (1 + 2 * kb);
            assert!(chunk.div_ceil(kb) * per_block <= ops::LANES_LOOP_BUDGET, "head_dim {hd} group {gr}: chunk {chunk}");
            assert!(chunk >= 8 && chunk.is_power_of_two());
        }
    }
    // Shared memory of the real model's shape stays under the 16 KiB portable minimum.
    let (prefill, decode) = shape(9, 3, 64, 8192).shared_bytes();
    assert!(prefill <= 16384 && decode <= 16384, "{prefill} / {decode} bytes");
    let specs = ops::specs();
    for k in [Kernel::KvAppend, Kernel::AttnPrefill, Kernel::AttnDecode, Kernel::AttnDecodeLanes, Kernel::AttnPrefillLanes, Kernel::AttnMerge] {
        assert!(specs.iter().any(|s| s.kernel == k && s.get("HEAD_DIM") == Some(64)), "{k:?} for head_dim 64 missing");
    }
}

/// `s` with the attention core's options.
fn opts(s: AttnShape, softcap: f32, window: u32) -> AttnShape {
    AttnShape { softcap, window, ..s }
}

const KINDS: [AttnKind; 2] = [AttnKind::Shared, AttnKind::Lanes];

#[test]
fn sliding_window_prefill_matches_reference() {
    // (heads, KV heads, head_dim, window, n, prior), both prefill kernels.
    let cases: &[(u32, u32, u32, u32, u32, u32)] = &[
        (9, 3, 64, 1, 7, 0),     // window 1: every token sees only itself
        (9, 3, 64, 1, 65, 37),   // ... after prior context
        (9, 3, 64, 16, 65, 0),   // the chunk straddles the window's edge
        (9, 3, 64, 100, 65, 37), // the window fills inside the chunk (at slot 99)
        (9, 3, 64, 500, 65, 37), // a window larger than the context
        (8, 1, 64, 33, 300, 37), // group 8, a long chunk
        (4, 4, 64, 16, 130, 0),  // window == one tile of keys at head_dim 64
        (6, 2, 96, 50, 30, 50),  // head_dim 96
        (4, 2, 32, 7, 7, 100),   // head_dim 32, the chunk as long as the window
        // Deep prior: whole tiles / lanes splits before the window are skipped.
        (16, 2, 128, 1000, 8, 4000),
        (9, 3, 64, 1024, 512, 3500),
    ];
    for g in contexts() {
        let mut rng = Rng::new(50);
        for kind in KINDS {
            for &(nh, nkv, hd, w, n, prior) in cases {
                check_prefill_q(&g, &mut rng, &opts(shape(nh, nkv, hd, n + prior + 5), 0.0, w), n, prior, kind, 2.0);
            }
        }
    }
}

#[test]
fn softcap_prefill_matches_reference() {
    // (softcap, query range): Gemma 2's 50 against scores past it (queries in
    // ±100 give scaled scores of tens to hundreds), 0.5 far into tanh's
    // saturation, 30 on ordinary scores; with and without a window.
    let caps: &[(f32, f32)] = &[(50.0, 100.0), (0.5, 30.0), (30.0, 2.0)];
    for g in contexts() {
        let mut rng = Rng::new(52);
        for kind in KINDS {
            for &(cap, q) in caps {
                check_prefill_q(&g, &mut rng, &opts(shape(9, 3, 64, 120), cap, 0), 65, 37, kind, q);
                check_prefill_q(&g, &mut rng, &opts(shape(8, 1, 96, 120), cap, 40), 65, 37, kind, q);
                check_prefill_q(&g, &mut rng, &opts(shape(4, 2, 32, 20), cap, 1), 7, 3, kind, q);
            }
        }
    }
}

#[test]
fn sliding_window_decode_matches_reference() {
    // Decode before the window fills (kv_len <= W), as it fills, and after,
    // with both decode kernels: windows of 1, 100 and past the context.
    for g in contexts() {
        let mut rng = Rng::new(51);
        for kind in KINDS {
            for &(nh, nkv, hd, windows) in &[(9, 3, 64, &[1u32, 100, 5000][..]), (8, 1, 64, &[1, 100]), (6, 2, 96, &[100])] {
                for &w in windows {
                    let s = opts(shape(nh, nkv, hd, 4100), 0.0, w);
                    for &kv_len in &[1, 2, 65, 100, 101, 1000, 4097] {
                        check_decode_kind(&g, &mut rng, &s, kv_len, 2.0, kind);
                    }
                }
            }
            // head_dim 32, and a window of one decode chunk.
            check_decode_kind(&g, &mut rng, &opts(shape(6, 2, 32, 300), 0.0, 64), 257, 2.0, kind);
        }
    }
}

#[test]
fn softcap_decode_matches_reference() {
    let caps: &[(f32, f32)] = &[(50.0, 100.0), (0.5, 30.0), (30.0, 2.0)];
    for g in contexts() {
        let mut rng = Rng::new(53);
        for kind in KINDS {
            for &(cap, q) in caps {
                for &kv_len in &[1, 65, 1000] {
                    check_decode_kind(&g, &mut rng, &opts(shape(9, 3, 64, 1100), cap, 0), kv_len, q, kind);
                    check_decode_kind(&g, &mut rng, &opts(shape(8, 1, 96, 1100), cap, 300), kv_len, q, kind);
                }
            }
        }
    }
}

/// The model's usage with both options: bind groups built once, prefill
/// chunks that straddle the window's edge, then decode steps as the window
/// slides, on both kernel kinds.
#[test]
fn chunked_prefill_then_decode_with_window_and_softcap() {
    let s = opts(shape(9, 3, 64, 700), 20.0, 100);
    let max_tokens = 300;
    let (qrow, kvrow) = ((s.n_heads * s.head_dim) as usize, (s.n_kv_heads * s.head_dim) as usize);
    for g in contexts() {
        for kind in KINDS {
            let mut rng = Rng::new(54);
            let mut cache = Cache::new(&g, &s);
            let (qb, kb, vb) =
                (g.buffer("q", (max_tokens * qrow * 4) as u64), g.buffer("k", (max_tokens * kvrow * 4) as u64), g.buffer("v", (max_tokens * kvrow * 4) as u64));
            let out = g.buffer("out", (max_tokens * qrow * 4) as u64);
            let lse = g.buffer("lse", s.n_heads as u64 * 4);
            let step = g.uniform("step", &step_bytes(0, 0, 0));
            let scratch = DecodeScratch::with_kind(&g, &s, kind);
            let app = ops::kv_append(&g, &s, &kb, &vb, &cache.k, &cache.v, &step, max_tokens as u32);
            let pre_scratch = PrefillScratch::with_kind(&g, &s, kind, max_tokens as u32).unwrap();
            let pre = ops::attn_prefill(&g, &s, &qb, &cache.k, &cache.v, &pre_scratch, &out, &step);
            let dec = ops::attn_decode(&g, &s, &qb, &cache.k, &cache.v, &scratch, &out, &lse, &step);
            let mut kv_len = 0usize;
            // Prefill to 373 slots (the window fills in the 4th chunk; the 5th
            // starts past it), then decode steps with the window sliding.
            let calls: Vec<usize> = [65, 7, 1, 64, 236].into_iter().chain(std::iter::repeat_n(1, 12)).collect();
            for (i, &n) in calls.iter().enumerate() {
                let q = rng.vec(n * qrow, -20.0, 20.0);
                let k = rng.vec(n * kvrow, -1.0, 1.0);
                let v = rng.vec(n * kvrow, -1.0, 1.0);
                g.write(&qb, 0, bytemuck::cast_slice(&q));
                g.write(&kb, 0, bytemuck::cast_slice(&k));
                g.write(&vb, 0, bytemuck::cast_slice(&v));
                g.write(&step, 0, &step_bytes(kv_len as u32, n as u32, (kv_len + n) as u32));
                let decode = i >= 5;
                if decode {
                    g.run(&[&app, &dec.partial, &dec.merge]);
                } else {
                    g.run(&[&[&app], pre.iter().collect::<Vec<_>>().as_slice()].concat());
                }
                cache.append_ref(&g, &s, &k, &v, kv_len);
                kv_len += n;
                let want = reference::attention(&s, &q, &cache.kc, &cache.vc, n, kv_len);
                let what = format!("{kind:?} call {i} ({} n={n}, kv_len={kv_len}) on {}", if decode { "decode" } else { "prefill" }, label(&g));
                assert_close(&what, &g.read_f32(&out, n * qrow), &want.out, ATTN);
                let got_lse = if decode { g.read_f32(&lse, s.n_heads as usize) } else { g.read_f32(&pre_scratch.lse, n * s.n_heads as usize) };
                assert_close(&format!("{what}: lse"), &got_lse, &want.lse, ATTN);
            }
        }
    }
}

/// A WGSL module's `f32` constant `name`, as naga reads it.
fn naga_f32(src: &str, name: &str) -> f32 {
    let m = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    let (_, c) = m.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no constant {name}"));
    match m.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::F32(v)) => v,
        ref e => panic!("{name} = {e:?}"),
    }
}

#[test]
fn options_are_pipeline_constants_and_off_by_default() {
    use wgkv::kernels::{SOFTCAP, Spec, WINDOW, f32_literal};
    // Off: no option constants in any spec, and the kernels that include the
    // attention core read 0 for both.
    let plain = shape(9, 3, 64, 100);
    assert_eq!(plain.options(Spec::new(Kernel::AttnDecode)), Spec::new(Kernel::AttnDecode));
    let src = plain.options(Spec::new(Kernel::AttnDecode).with("WG", 64).with("HEAD_DIM", 64).with("GROUP", 3).with("CHUNK", 256)).source(false);
    assert!(src.contains("const WINDOW: u32 = 0u;") && src.contains("const SOFTCAP: f32 = 0.0f;"), "{}", &src[..400]);
    assert_eq!(naga_f32(&src, SOFTCAP), 0.0);
    // On: each a constant of the spec (so a pipeline of its own).
    let spec = opts(plain, 0.5, 7).options(Spec::new(Kernel::AttnMerge).with("WG", 64).with("HEAD_DIM", 64));
    assert_eq!((spec.get(WINDOW), spec.get_f32(SOFTCAP)), (Some(7), Some(0.5)));
    let src = spec.source(true);
    assert!(src.contains("const WINDOW: u32 = 7u;") && src.contains("const SOFTCAP: f32 = 0.5f;"));
    assert_eq!((src.matches("const WINDOW").count(), src.matches("const SOFTCAP").count()), (1, 1), "set options replace the defaults");
    // The literal is the exact f32 (naga reads `f`-suffixed literals as f32).
    for v in [50.0f32, 0.5, 0.1, 1.0 / 3.0, 30.000002, 1e-7, 3.0e38, f32::MIN_POSITIVE, 1e-45, 16777217.0] {
        let lit = f32_literal(v);
        let src = format!("const SOFTCAP: f32 = {lit};\n@compute @workgroup_size(1) fn main() {{}}\n");
        assert_eq!(naga_f32(&src, "SOFTCAP").to_bits(), v.to_bits(), "{v} written as {lit}");
    }
    // The portability list (tests/portability.rs) holds every kernel that
    // takes an option with it on: the softcap everywhere, the window where
    // the kernel knows positions (not Mustafar's blocks).
    let all = wgkv::ops::all_specs();
    let attending = [Kernel::AttnPrefill, Kernel::AttnPrefillLanes, Kernel::AttnDecode, Kernel::AttnDecodeLanes, Kernel::AttnDecodePages, Kernel::AttnAccum];
    for k in attending.into_iter().chain([Kernel::MustafarAttn]) {
        assert!(all.iter().any(|s| s.kernel == k && s.get_f32(SOFTCAP).is_some()), "{k:?} with a softcap missing");
        let windowed = all.iter().any(|s| s.kernel == k && s.get(WINDOW).is_some());
        assert_eq!(windowed, k != Kernel::MustafarAttn, "{k:?} with a window");
    }
    // Shapes that differ in an option are different shapes (and cache keys).
    assert_ne!(opts(plain, 50.0, 0), plain);
    assert_ne!(opts(plain, 0.0, 1), plain);
    assert_eq!(opts(plain, 50.0, 8), opts(plain, 50.0, 8));
}

#[test]
fn bad_softcaps_are_refused() {
    for g in contexts() {
        let s = shape(9, 3, 64, 8192);
        for bad in [-1.0, f32::NAN, f32::INFINITY] {
            let e = opts(s, bad, 0).check(&g).unwrap_err().to_string();
            assert!(e.contains("softcap"), "{bad}: {e}");
        }
        assert!(opts(s, 50.0, 4096).check(&g).is_ok());
        assert!(opts(s, 0.0, 1).check(&g).is_ok());
    }
}
