//! Eviction's kernels against their CPU references, on every context and
//! over dense and quantized (`q8`, `q4`) caches:
//! compaction gathers exactly the kept rows (and scores) per KV head and
//! leaves the rest; accumulated and window attention, slot scores, the
//! per-head selection and DynamicKV's ranking equal the references.

mod common;
use common::*;
use wgkv::kernels::Kernel;
use wgkv::ops::attention::AttnShape;
use wgkv::ops::evict as ops;
use wgkv::reference::evict as reference;

/// Keys and values of `n` elements each, uniform in ±`amp` and rounded to
/// the cache type, and their GPU caches.
fn random_caches(g: &wgkv::gpu::Gpu, rng: &mut Rng, n: usize, amp: f32) -> (Vec<f32>, Vec<f32>, wgpu::Buffer, wgpu::Buffer) {
    let k = kv_round(g, &rng.vec(n, -amp, amp));
    let v = kv_round(g, &rng.vec(n, -amp, amp));
    let (kb, vb) = (g.upload("k", &kv_bytes(g, &k)), g.upload("v", &kv_bytes(g, &v)));
    (k, v, kb, vb)
}

/// `random_caches` for the cache format of `s`: with `kvq`, rows in ±`amp`
/// quantized on the GPU (`kv_quant`) into every slot, and the values they
/// decode to (`reference::kvquant`).
fn caches(g: &wgkv::gpu::Gpu, rng: &mut Rng, s: &AttnShape, amp: f32) -> (Vec<f32>, Vec<f32>, wgpu::Buffer, wgpu::Buffer) {
    let n = (s.n_kv_heads * s.max_seq * s.head_dim) as usize;
    if s.kvq == 0 {
        return random_caches(g, rng, n, amp);
    }
    let bytes = s.cache_bytes(g.caps.f16);
    let (kb, vb) = (g.buffer("k", bytes), g.buffer("v", bytes));
    let step = g.uniform("step", bytemuck::bytes_of(&wgkv::ops::Step { pos: 0, n_tokens: s.max_seq, kv_len: s.max_seq, _pad: 0 }));
    let (k_new, v_new) = (upload_f32(g, "k_new", &rng.vec(n, -amp, amp)), upload_f32(g, "v_new", &rng.vec(n, -amp, amp)));
    g.run(&[&wgkv::ops::attention::kv_append(g, s, &k_new, &v_new, &kb, &vb, &step, s.max_seq)]);
    (read_cache(g, &kb, s), read_cache(g, &vb, s), kb, vb)
}

/// A cache buffer's values `[n_kv_heads][max_seq][head_dim]` in f32.
fn read_cache(g: &wgkv::gpu::Gpu, buf: &wgpu::Buffer, s: &AttnShape) -> Vec<f32> {
    let (hd, rows) = (s.head_dim as usize, (s.n_kv_heads * s.max_seq) as usize);
    if s.kvq == 0 {
        return read_kv(g, buf, rows * hd);
    }
    let rw = wgkv::reference::kvquant::row_words(hd, s.kvq);
    g.read_u32(buf, rows * rw).chunks(rw).flat_map(|w| wgkv::reference::kvquant::decode_row(w, hd, s.kvq)).collect()
}

#[test]
fn compaction_gathers_the_kept_rows_per_head() {
    for g in contexts() {
        let mut rng = Rng::new(5);
        // (KV heads, head_dim, slots, cached): awkward head dims and a full cache.
        // Dense rows, and quantized ones (8 and 4 bits: words, not vec4, per column).
        let cases = [(3usize, 64usize, 200usize, 157usize), (2, 32, 50, 50), (1, 96, 70, 9), (4, 128, 40, 33)];
        for (kvq, &(kvh, hd, max_seq, len)) in [0, 8, 4].into_iter().flat_map(|q| cases.iter().map(move |c| (q, c))) {
            let s = AttnShape { n_heads: kvh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32, kvq, ..Default::default() };
            let (k, v, kb, vb) = caches(&g, &mut rng, &s, 1.0);
            // Per head its own increasing subset of 0..len (head 0 keeps none
            // when there are several heads, head 1 everything).
            let keep: Vec<Vec<usize>> = (0..kvh)
                .map(|h| match h {
                    0 if kvh > 1 => vec![],
                    1 => (0..len).collect(),
                    _ => (0..len).filter(|_| rng.below(3) != 0).collect(),
                })
                .collect();
            let mut words = vec![0u32; kvh * max_seq];
            for (h, kept) in keep.iter().enumerate() {
                for (i, &slot) in kept.iter().enumerate() {
                    words[h * max_seq + i] = slot as u32;
                }
            }
            let counts: Vec<u32> = keep.iter().map(|k| k.len() as u32).collect();
            let (lb, cb) = (g.upload("keep", bytemuck::cast_slice(&words)), g.upload("counts", bytemuck::cast_slice(&counts)));
            let acc0 = rng.vec(kvh * max_seq, 0.0, 5.0);
            let acc = upload_f32(&g, "acc", &acc0);
            let d = ops::kv_compact(&g, &s, &kb, &vb, &lb, &cb, Some(&acc), max_seq as u32).unwrap();
            assert_eq!(d.kernel, Kernel::KvCompact);
            g.run(&[&d]);
            // Scores move with their rows; the freed ones are zeroed.
            let mut want_acc = vec![0f32; kvh * max_seq];
            for (h, kept) in keep.iter().enumerate() {
                for (i, &slot) in kept.iter().enumerate() {
                    want_acc[h * max_seq + i] = acc0[h * max_seq + slot];
                }
            }
            assert_eq!(g.read_f32(&acc, kvh * max_seq), want_acc, "scores: {kvh} heads, {len} of {max_seq} on {}", label(&g));
            let (mut wk, mut wv) = (k.clone(), v.clone());
            reference::kv_compact(&s, &mut wk, &mut wv, &keep);
            let what = format!("{kvh} heads x {hd} (kvq {kvq}), {len} of {max_seq} slots, kept {counts:?} on {}", label(&g));
            assert_eq!(read_cache(&g, &kb, &s), wk, "keys: {what}");
            assert_eq!(read_cache(&g, &vb, &s), wv, "values: {what}");
        }
    }
}

#[test]
fn streaming_keeps_the_sinks_and_the_most_recent() {
    assert_eq!(reference::streaming_keep(10, 6, 2), vec![0, 1, 6, 7, 8, 9]);
    assert_eq!(reference::streaming_keep(5, 6, 2), vec![0, 1, 2, 3, 4]);
    assert_eq!(reference::streaming_keep(10, 3, 4), vec![0, 1, 2], "more sinks than the target");
    assert_eq!(reference::streaming_keep(10, 4, 0), vec![6, 7, 8, 9]);
}

#[test]
fn compaction_refuses_lists_past_the_loop_cap() {
    if let Some(g) = contexts().into_iter().next() {
        let s = AttnShape { n_heads: 1, n_kv_heads: 1, head_dim: 4, max_seq: 8, ..Default::default() };
        let b = g.buffer("b", 64);
        let Err(e) = ops::kv_compact(&g, &s, &b, &b, &b, &b, None, ops::MAX_KEEP + 1) else { panic!("accepted a list past the cap") };
        let e = e.to_string();
        assert!(e.contains("supported"), "{e}");
    }
}

#[test]
fn accumulated_attention_equals_the_reference_and_adds_one_per_head() {
    use wgkv::ops::Step;
    use wgkv::ops::attention::{DecodeScratch, attn_decode};
    for g in contexts() {
        let mut rng = Rng::new(6);
        // (heads, KV heads, head_dim, slots, cached): GQA groups 3, 1 and 8.
        let cases = [(9usize, 3usize, 64usize, 300usize, 257usize), (4, 4, 32, 100, 1), (8, 1, 96, 80, 80)];
        for (kvq, &(nh, kvh, hd, max_seq, len)) in [0, 8, 4].into_iter().flat_map(|q| cases.iter().map(move |c| (q, c))) {
            let s = AttnShape { n_heads: nh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32, kvq, ..Default::default() };
            let (k, _v, kb, vb) = caches(&g, &mut rng, &s, 1.0);
            let q = rng.vec(nh * hd, -3.0, 3.0);
            let qb = upload_f32(&g, "q", &q);
            let init = rng.vec(kvh * max_seq, 0.0, 2.0);
            let acc = upload_f32(&g, "acc", &init);
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: len as u32 - 1, n_tokens: 1, kv_len: len as u32, _pad: 0 }));
            let (out, lse) = (g.buffer("out", (nh * hd * 4) as u64), g.buffer("lse", (nh * 4) as u64));
            let scratch = DecodeScratch::new(&g, &s);
            let dec = attn_decode(&g, &s, &qb, &kb, &vb, &scratch, &out, &lse, &step);
            let d = ops::attn_accum(&g, &s, &qb, &kb, &lse, &acc, &step, 1, ops::Accum::Add);
            assert_eq!(d.kernel, Kernel::AttnAccum);
            g.run(&[&dec.partial, &dec.merge, &d]);
            let got = g.read_f32(&acc, kvh * max_seq);
            let lse_gpu = g.read_f32(&lse, nh);
            let mut want = init.clone();
            reference::accumulate(&s, &q, &k, &lse_gpu, len, &mut want);
            let what = format!("{nh}/{kvh} heads x {hd} (kvq {kvq}), {len} of {max_seq} slots on {}", label(&g));
            assert_close(&format!("accumulated attention: {what}"), &got, &want, F32_REDUCTION);
            // Each query head's probabilities sum to 1: the step added `group` per KV head.
            for h in 0..kvh {
                let added: f64 = (0..len).map(|j| (got[h * max_seq + j] - init[h * max_seq + j]) as f64).sum();
                assert!((added - (nh / kvh) as f64).abs() < 1e-3, "KV head {h} gained {added}: {what}");
                assert!(got[h * max_seq + len..(h + 1) * max_seq] == init[h * max_seq + len..(h + 1) * max_seq], "slots past kv_len: {what}");
            }
        }
    }
}

#[test]
fn window_attention_sums_the_last_rows_causally() {
    use wgkv::ops::Step;
    use wgkv::ops::attention::{PrefillScratch, attn_prefill};
    for g in contexts() {
        let mut rng = Rng::new(7);
        // (heads, KV heads, head_dim, slots, cached before, call tokens, rows summed):
        // a window, every row of a chunk, a window wider than the call.
        for &(nh, kvh, hd, max_seq, before, n, rows) in
            &[(9usize, 3usize, 64usize, 300usize, 150usize, 37usize, 8usize), (4, 2, 32, 64, 0, 40, 40), (8, 1, 96, 50, 30, 5, 8)]
        {
            let s = AttnShape { n_heads: nh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32, ..Default::default() };
            let len = before + n;
            let (k, _v, kb, vb) = random_caches(&g, &mut rng, kvh * max_seq * hd, 1.0);
            let q = rng.vec(n * nh * hd, -2.0, 2.0);
            let qb = upload_f32(&g, "q", &q);
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: before as u32, n_tokens: n as u32, kv_len: len as u32, _pad: 0 }));
            let scratch = PrefillScratch::new(&g, &s, n as u32).unwrap();
            let out = g.buffer("out", (n * nh * hd * 4) as u64);
            let pre = attn_prefill(&g, &s, &qb, &kb, &vb, &scratch, &out, &step);
            let init = rng.vec(kvh * max_seq, 0.0, 2.0);
            let what = format!("{nh}/{kvh} heads x {hd}, {n} tokens after {before}, {rows} rows on {}", label(&g));
            for mode in [ops::Accum::Set, ops::Accum::Add] {
                let acc = upload_f32(&g, "acc", &init);
                let d = ops::attn_accum(&g, &s, &qb, &kb, &scratch.lse, &acc, &step, rows as u32, mode);
                let mut list: Vec<&wgkv::kernels::Dispatch> = pre.iter().collect();
                list.push(&d);
                g.run(&list);
                let lse = g.read_f32(&scratch.lse, n * nh);
                let mut want = if mode == ops::Accum::Set {
                    let mut w = init.clone();
                    for h in 0..kvh {
                        w[h * max_seq..h * max_seq + len].iter_mut().for_each(|x| *x = 0.0);
                    }
                    w
                } else {
                    init.clone()
                };
                reference::accumulate_rows(&s, &q, &k, &lse, len, n, rows, &mut want);
                let got = g.read_f32(&acc, kvh * max_seq);
                assert_close(&format!("{mode:?}: {what}"), &got, &want, F32_REDUCTION);
                // Each summed row's probabilities add up to 1 per query head.
                let total: f64 = (0..kvh)
                    .flat_map(|h| (0..len).map(move |j| h * max_seq + j))
                    .map(|o| (got[o] - if mode == ops::Accum::Add { init[o] } else { 0.0 }) as f64)
                    .sum();
                assert!((total - (rows.min(n) * nh) as f64).abs() < 1e-2 * (rows * nh) as f64, "{mode:?}: probabilities sum to {total}: {what}");
            }
        }
    }
}

#[test]
fn slot_scores_equal_the_reference_for_every_mode() {
    use wgkv::reference::evict::Score;
    for g in contexts() {
        let mut rng = Rng::new(8);
        let cases = [(3usize, 64usize, 200usize, 157usize, 149usize), (1, 32, 40, 40, 33), (2, 96, 30, 5, 0)];
        for (kvq, &(kvh, hd, max_seq, len, prefix)) in [0, 8, 4].into_iter().flat_map(|q| cases.iter().map(move |c| (q, c))) {
            let s = AttnShape { n_heads: kvh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32, kvq, ..Default::default() };
            let (k, v, kb, vb) = caches(&g, &mut rng, &s, 2.0);
            let acc_v = rng.vec(kvh * max_seq, 0.0, 3.0);
            let acc = upload_f32(&g, "acc", &acc_v);
            // This layer's rows sit after another layer's in the score buffer.
            let base = kvh * max_seq;
            let score = g.buffer("score", (8 * kvh * max_seq) as u64);
            for (mode, how) in [
                (ops::ScoreMode::Attention, Score::Attention),
                (ops::ScoreMode::ValueAware, Score::ValueAware),
                (ops::ScoreMode::KeyNorm, Score::KeyNorm),
                (ops::ScoreMode::MaxPool, Score::MaxPool { radius: 3 }),
                (ops::ScoreMode::AvgPool, Score::AvgPool { radius: 2 }),
            ] {
                let radius = match how {
                    Score::MaxPool { radius } | Score::AvgPool { radius } => radius,
                    _ => 0,
                };
                let p = ops::ScoreParams {
                    max_seq: max_seq as u32,
                    len: len as u32,
                    prefix: prefix as u32,
                    mode: mode as u32,
                    radius: radius as u32,
                    out_base: base as u32,
                    _p: [0; 2],
                };
                let pb = g.upload("p", bytemuck::bytes_of(&p));
                let d = ops::evict_score(&g, &s, &kb, &vb, &acc, &score, &pb);
                assert_eq!(d.kernel, Kernel::EvictScore);
                g.run(&[&d]);
                let got = g.read_f32(&score, 2 * kvh * max_seq)[base..].to_vec();
                let want = reference::slot_scores(&s, &k, &v, &acc_v, len, prefix, how);
                let mask = |x: &[f32]| -> Vec<f32> { (0..kvh * max_seq).map(|o| if o % max_seq < len { x[o] } else { 0.0 }).collect() };
                assert_close(
                    &format!("{how:?}: {kvh} heads x {hd} (kvq {kvq}), {len} of {max_seq} on {}", label(&g)),
                    &mask(&got),
                    &mask(&want),
                    F32_REDUCTION,
                );
            }
        }
    }
}

#[test]
fn selection_keeps_the_top_slots_with_protected_ends_and_late_ties() {
    for g in contexts() {
        let mut rng = Rng::new(9);
        // (KV heads, slots, cached, keep, sinks, recent, distinct score values)
        for &(kvh, max_seq, len, keep, sinks, recent, levels) in &[
            (3usize, 300usize, 257usize, 40usize, 4usize, 8usize, 0u32),
            (2, 600, 600, 100, 0, 50, 5),
            (1, 64, 64, 64, 0, 0, 0),
            (3, 1000, 999, 1, 0, 0, 3),
            (1, 100, 90, 30, 20, 20, 0),
            (2, 4096, 4000, 405, 20, 200, 0),
        ] {
            let s = AttnShape { n_heads: kvh as u32, n_kv_heads: kvh as u32, head_dim: 4, max_seq: max_seq as u32, ..Default::default() };
            // Scores: continuous, or few values (many ties), negative ones too.
            let scores: Vec<f32> = (0..kvh * max_seq).map(|_| if levels == 0 { rng.uniform(-3.0, 3.0) } else { rng.below(levels) as f32 - 1.0 }).collect();
            let base = max_seq; // after one row of padding
            let mut buf = vec![7.0f32; max_seq];
            buf.extend_from_slice(&scores);
            let sb = upload_f32(&g, "score", &buf);
            let list = g.buffer("list", (4 * kvh * max_seq) as u64);
            let counts = g.buffer("counts", 4 * kvh as u64);
            let p = ops::SelectParams {
                max_seq: max_seq as u32,
                len: len as u32,
                keep: keep as u32,
                sinks: sinks as u32,
                recent: recent as u32,
                max_keep: max_seq as u32,
                score_base: base as u32,
                _p: 0,
            };
            let pb = g.upload("p", bytemuck::bytes_of(&p));
            let d = ops::evict_select(&g, &s, &sb, &list, &counts, &pb);
            assert_eq!(d.kernel, Kernel::EvictSelect);
            g.run(&[&d]);
            let got_counts = g.read_u32(&counts, kvh);
            let got = g.read_u32(&list, kvh * max_seq);
            for h in 0..kvh {
                let want = reference::select_keep(&scores[h * max_seq..(h + 1) * max_seq], len, keep, sinks, recent);
                let n = got_counts[h] as usize;
                let have: Vec<usize> = got[h * max_seq..h * max_seq + n].iter().map(|&x| x as usize).collect();
                assert_eq!(have, want, "head {h}: keep {keep} of {len}, sinks {sinks}, recent {recent}, {levels} levels on {}", label(&g));
            }
        }
    }
}

#[test]
fn dynamic_ranking_counts_each_layers_share_of_the_global_top() {
    for g in contexts() {
        let mut rng = Rng::new(10);
        // (layers, KV heads, slots, ranked layers, keep, distinct values)
        for &(layers, kvh, max_seq, ranked, keep, levels) in
            &[(6usize, 3usize, 128usize, 4usize, 300usize, 0u32), (6, 3, 128, 6, 77, 0), (5, 2, 64, 5, 40, 4), (2, 1, 4096, 2, 1, 0)]
        {
            let s = AttnShape { n_heads: kvh as u32, n_kv_heads: kvh as u32, head_dim: 4, max_seq: max_seq as u32, ..Default::default() };
            let prefix: Vec<usize> = (0..layers).map(|l| max_seq - 3 * l).collect();
            // Layers score on different scales, so the shares differ.
            let flat: Vec<f32> = (0..layers * kvh * max_seq)
                .map(|i| {
                    let l = i / (kvh * max_seq);
                    if levels == 0 { rng.uniform(0.0, 1.0 + l as f32) } else { rng.below(levels) as f32 }
                })
                .collect();
            let sb = upload_f32(&g, "score", &flat);
            let pw: Vec<u32> = prefix.iter().map(|&x| x as u32).collect();
            let pb = g.upload("prefix", bytemuck::cast_slice(&pw));
            let cb = g.buffer("counts", 4 * layers as u64);
            let params = ops::BudgetParams { max_seq: max_seq as u32, n_kv_heads: kvh as u32, n_layers: ranked as u32, keep: keep as u32 };
            let ub = g.upload("p", bytemuck::bytes_of(&params));
            let d = ops::evict_budget(&g, &s, layers as u32, &sb, &pb, &cb, &ub).unwrap();
            assert_eq!(d.kernel, Kernel::EvictBudget);
            g.run(&[&d]);
            let got: Vec<usize> = g.read_u32(&cb, ranked).into_iter().map(|c| c as usize).collect();
            let nested: Vec<Vec<Vec<f32>>> =
                (0..ranked).map(|l| (0..kvh).map(|h| flat[(l * kvh + h) * max_seq..(l * kvh + h + 1) * max_seq].to_vec()).collect()).collect();
            let want = reference::global_counts(&nested, &prefix[..ranked], keep);
            assert_eq!(got, want, "{ranked} of {layers} layers, keep {keep}, {levels} levels on {}", label(&g));
            if levels == 0 {
                assert_eq!(got.iter().sum::<usize>(), keep, "distinct scores: exactly keep counted");
            }
        }
    }
}

#[test]
fn scores_with_window_and_softcap_equal_the_reference() {
    // attn_accum recomputes probabilities from the attention kernels'
    // log-sum-exp: it must take the same (softcapped) scores and the same
    // slots (the window), or a row's probabilities no longer sum to 1.
    use wgkv::ops::Step;
    use wgkv::ops::attention::{DecodeScratch, PrefillScratch, attn_decode, attn_prefill};
    for g in contexts() {
        let mut rng = Rng::new(8);
        // (heads, KV heads, head_dim, slots, cached before, call tokens, rows summed, softcap, window, query range)
        type Case = (usize, usize, usize, usize, usize, usize, usize, f32, u32, f32);
        let cases: &[Case] = &[
            (9, 3, 64, 300, 256, 1, 1, 0.0, 40, 2.0),   // decode after the window filled
            (4, 4, 32, 100, 0, 1, 1, 0.0, 5, 2.0),      // decode of the first token
            (8, 1, 96, 80, 79, 1, 1, 50.0, 1, 100.0),   // window 1, softcap against large scores
            (9, 3, 64, 300, 150, 37, 8, 0.5, 20, 30.0), // rows straddling the window's edge
            (4, 2, 32, 64, 0, 40, 40, 30.0, 16, 2.0),   // every row of a chunk, the window filling in it
            (8, 1, 96, 50, 30, 5, 8, 50.0, 100, 60.0),  // a window past the context, softcap alone
        ];
        for &(nh, kvh, hd, max_seq, before, n, rows, softcap, window, q_range) in cases {
            let s =
                AttnShape { n_heads: nh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32, softcap, window, ..Default::default() };
            let len = before + n;
            let (k, _v, kb, vb) = random_caches(&g, &mut rng, kvh * max_seq * hd, 1.0);
            let q = rng.vec(n * nh * hd, -q_range, q_range);
            let qb = upload_f32(&g, "q", &q);
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: before as u32, n_tokens: n as u32, kv_len: len as u32, _pad: 0 }));
            let out = g.buffer("out", (n * nh * hd * 4) as u64);
            let (decode, prefill) = (DecodeScratch::new(&g, &s), PrefillScratch::new(&g, &s, n as u32).unwrap());
            let decode_lse = g.buffer("lse", (nh * 4) as u64);
            let (attn, lse) = if n == 1 {
                let dec = attn_decode(&g, &s, &qb, &kb, &vb, &decode, &out, &decode_lse, &step);
                (vec![dec.partial, dec.merge], &decode_lse)
            } else {
                (attn_prefill(&g, &s, &qb, &kb, &vb, &prefill, &out, &step), &prefill.lse)
            };
            let init = rng.vec(kvh * max_seq, 0.0, 2.0);
            let what = format!("{nh}/{kvh} heads x {hd}, {n} tokens after {before}, {rows} rows, softcap {softcap}, window {window} on {}", label(&g));
            for mode in [ops::Accum::Set, ops::Accum::Add] {
                let acc = upload_f32(&g, "acc", &init);
                let d = ops::attn_accum(&g, &s, &qb, &kb, lse, &acc, &step, rows as u32, mode);
                let mut list: Vec<&wgkv::kernels::Dispatch> = attn.iter().collect();
                list.push(&d);
                g.run(&list);
                let lse = g.read_f32(lse, n * nh);
                let mut want = init.clone();
                if mode == ops::Accum::Set {
                    for h in 0..kvh {
                        want[h * max_seq..h * max_seq + len].iter_mut().for_each(|x| *x = 0.0);
                    }
                }
                reference::accumulate_rows(&s, &q, &k, &lse, len, n, rows, &mut want);
                let got = g.read_f32(&acc, kvh * max_seq);
                assert_close(&format!("{mode:?}: {what}"), &got, &want, F32_REDUCTION);
                // Each summed row's probabilities over the slots it sees add up to 1 per query head.
                let total: f64 = (0..kvh)
                    .flat_map(|h| (0..len).map(move |j| h * max_seq + j))
                    .map(|o| (got[o] - if mode == ops::Accum::Add { init[o] } else { 0.0 }) as f64)
                    .sum();
                let want_total = (rows.min(n) * nh) as f64;
                assert!((total - want_total).abs() < 1e-2 * want_total, "{mode:?}: probabilities sum to {total}, want {want_total}: {what}");
                // Slots no summed row sees get nothing.
                let first_seen = (before + n - rows.min(n)).saturating_sub(window.saturating_sub(1) as usize);
                if window > 0 && mode == ops::Accum::Add {
                    for h in 0..kvh {
                        let o = h * max_seq;
                        assert!(got[o..o + first_seen] == init[o..o + first_seen], "slots before the window gained: {what}");
                    }
                }
            }
        }
    }
}
