//! Eviction's kernels against their CPU references, on every context:
//! compaction gathers exactly the kept rows per KV head and leaves the rest.

mod common;
use common::*;
use wgkv::kernels::Kernel;
use wgkv::ops::attention::AttnShape;
use wgkv::ops::evict as ops;
use wgkv::reference::evict as reference;

#[test]
fn compaction_gathers_the_kept_rows_per_head() {
    for g in contexts() {
        let mut rng = Rng::new(5);
        // (KV heads, head_dim, slots, cached): awkward head dims and a full cache.
        for &(kvh, hd, max_seq, len) in &[(3usize, 64usize, 200usize, 157usize), (2, 32, 50, 50), (1, 96, 70, 9), (4, 128, 40, 33)] {
            let s = AttnShape { n_heads: kvh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32 };
            let n = kvh * max_seq * hd;
            let k = kv_round(&g, &rng.vec(n, -1.0, 1.0));
            let v = kv_round(&g, &rng.vec(n, -1.0, 1.0));
            let (kb, vb) = (g.upload("k", &kv_bytes(&g, &k)), g.upload("v", &kv_bytes(&g, &v)));
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
            let d = ops::kv_compact(&g, &s, &kb, &vb, &lb, &cb, max_seq as u32).unwrap();
            assert_eq!(d.kernel, Kernel::KvCompact);
            g.run(&[&d]);
            let (mut wk, mut wv) = (k.clone(), v.clone());
            reference::kv_compact(&s, &mut wk, &mut wv, &keep);
            let what = format!("{kvh} heads x {hd}, {len} of {max_seq} slots, kept {counts:?} on {}", label(&g));
            assert_eq!(read_kv(&g, &kb, n), wk, "keys: {what}");
            assert_eq!(read_kv(&g, &vb, n), wv, "values: {what}");
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
        let s = AttnShape { n_heads: 1, n_kv_heads: 1, head_dim: 4, max_seq: 8 };
        let b = g.buffer("b", 64);
        let Err(e) = ops::kv_compact(&g, &s, &b, &b, &b, &b, ops::MAX_KEEP + 1) else { panic!("accepted a list past the cap") };
        let e = e.to_string();
        assert!(e.contains("supported"), "{e}");
    }
}

#[test]
fn accumulated_attention_equals_the_reference_and_adds_one_per_head() {
    use wgkv::ops::attention::{attn_decode, DecodeScratch};
    use wgkv::ops::Step;
    for g in contexts() {
        let mut rng = Rng::new(6);
        // (heads, KV heads, head_dim, slots, cached): GQA groups 3, 1 and 8.
        for &(nh, kvh, hd, max_seq, len) in &[(9usize, 3usize, 64usize, 300usize, 257usize), (4, 4, 32, 100, 1), (8, 1, 96, 80, 80)] {
            let s = AttnShape { n_heads: nh as u32, n_kv_heads: kvh as u32, head_dim: hd as u32, max_seq: max_seq as u32 };
            let n = kvh * max_seq * hd;
            let k = kv_round(&g, &rng.vec(n, -1.0, 1.0));
            let v = kv_round(&g, &rng.vec(n, -1.0, 1.0));
            let (kb, vb) = (g.upload("k", &kv_bytes(&g, &k)), g.upload("v", &kv_bytes(&g, &v)));
            let q = rng.vec(nh * hd, -3.0, 3.0);
            let qb = upload_f32(&g, "q", &q);
            let init = rng.vec(kvh * max_seq, 0.0, 2.0);
            let acc = upload_f32(&g, "acc", &init);
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: len as u32 - 1, n_tokens: 1, kv_len: len as u32, _pad: 0 }));
            let (out, lse) = (g.buffer("out", (nh * hd * 4) as u64), g.buffer("lse", (nh * 4) as u64));
            let scratch = DecodeScratch::new(&g, &s);
            let dec = attn_decode(&g, &s, &qb, &kb, &vb, &scratch, &out, &lse, &step);
            let d = ops::attn_accum(&g, &s, &qb, &kb, &lse, &acc, &step);
            assert_eq!(d.kernel, Kernel::AttnAccum);
            g.run(&[&dec.partial, &dec.merge, &d]);
            let got = g.read_f32(&acc, kvh * max_seq);
            let lse_gpu = g.read_f32(&lse, nh);
            let mut want = init.clone();
            reference::accumulate(&s, &q, &k, &lse_gpu, len, &mut want);
            let what = format!("{nh}/{kvh} heads x {hd}, {len} of {max_seq} slots on {}", label(&g));
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
