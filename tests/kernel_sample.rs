//! Greedy argmax and top-k candidate selection against their CPU
//! references. Indices and values are compared exactly; the inputs include
//! deliberate ties, duplicated maxima in different blocks, -inf and signed
//! zeros, and patterns that defeat the top-k fast path.

mod common;
use common::*;
use wgkv::kernels::Kernel;
use wgkv::ops::sample as ops;
use wgkv::reference::sample as reference;

/// 1 and 7 (tiny), 1000, the real vocabulary, one past 65536.
const LENS: &[usize] = &[1, 7, 63, 64, 65, 1000, 49152, 65537];

/// Named input patterns of length n.
fn inputs(n: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::new();
    v.push(("uniform", rng.vec(n, -10.0, 10.0)));
    // A few levels only: massive ties everywhere, including the top.
    v.push(("levels", (0..n).map(|_| rng.below(5) as f32 - 2.0).collect()));
    v.push(("constant", vec![0.5; n]));
    // The max duplicated in far-apart places (different blocks of every split).
    let mut dup = rng.vec(n, -10.0, 10.0);
    for &i in &[n - 1, n / 2, n / 3 + 1, 2 * n / 3, 16384 + 17, 5000] {
        if i < n {
            dup[i] = 11.0;
        }
    }
    v.push(("duplicated max", dup));
    // Large values owned by a few invocations of a 256-wide workgroup:
    // more than 512 candidates reach topk's first threshold (slow path).
    v.push(("clustered", (0..n).map(|i| if i % 256 < 4 { 5.0 + rng.uniform(0.0, 1.0) } else { rng.uniform(-5.0, 0.0) }).collect()));
    // Descending then -inf tail; signed zeros at the top.
    v.push(("descending, -inf", (0..n).map(|i| if i > n / 2 && i > 3 { f32::NEG_INFINITY } else { -(i as f32) * 1e-3 }).collect()));
    let mut zeros = rng.vec(n, -10.0, -1.0);
    for (k, &i) in [n / 2, n / 4, 3 * n / 4, n - 1].iter().enumerate() {
        zeros[i] = if k % 2 == 0 { -0.0 } else { 0.0 };
    }
    v.push(("signed zeros", zeros));
    v.push(("all -inf", vec![f32::NEG_INFINITY; n]));
    v
}

/// First-stage block sizes: the engine's (65537 = one block of 65536 and
/// one of a single logit), and smaller ones giving many records to merge.
fn blocks(n: usize) -> Vec<u32> {
    assert_eq!(ops::ARGMAX_BLOCK, ops::TOPK_BLOCK);
    let mut b = vec![ops::ARGMAX_BLOCK, 1000];
    if n > 4096 {
        b.push(4096);
    }
    b
}

#[test]
fn argmax_matches_reference() {
    for g in contexts() {
        for &n in LENS {
            for (name, logits) in inputs(n, n as u64) {
                let want = reference::argmax(&logits);
                let lb = upload_f32(&g, "logits", &logits);
                for block in blocks(n) {
                    let out = poisoned(&g, "out", ops::ARGMAX_WORDS);
                    let ds = ops::argmax_blocks(&g, &lb, &out, n as u32, block);
                    assert!(ds.iter().all(|d| d.kernel == Kernel::Argmax));
                    g.run(&ds.iter().collect::<Vec<_>>());
                    let got = read_guarded_u32(&g, &out, ops::ARGMAX_WORDS);
                    let what = format!("argmax n={n} {name} block {block} on {}", label(&g));
                    assert_eq!(got[0], want, "{what}: id");
                    assert_eq!(f32::from_bits(got[1]), logits[want as usize], "{what}: value");
                }
            }
        }
    }
}

/// An f32 sum of up to 65537 terms in [0, 1] against the f64 reference.
const SUM_EXP: Tol = F32_REDUCTION;

#[test]
fn topk_matches_reference() {
    for g in contexts() {
        for &n in LENS {
            for (name, logits) in inputs(n, 100 + n as u64) {
                let want = reference::topk(&logits, 64);
                let lb = upload_f32(&g, "logits", &logits);
                for k in ops::TOPK_KS {
                    for block in blocks(n) {
                        let words = ops::topk_words(k);
                        let out = poisoned(&g, "out", words);
                        let ds = ops::topk_blocks(&g, &lb, &out, n as u32, k, block).unwrap();
                        assert!(ds.iter().all(|d| d.kernel == Kernel::TopK));
                        g.run(&ds.iter().collect::<Vec<_>>());
                        let raw = read_guarded_u32(&g, &out, words);
                        let got = ops::TopK::parse(&raw, k).unwrap();
                        let what = format!("topk k={k} n={n} {name} block {block} on {}", label(&g));
                        let kk = (k as usize).min(n);
                        let want_c: Vec<(u32, u32)> = want.candidates[..kk].iter().map(|&(i, v)| (i, v.to_bits())).collect();
                        let got_c: Vec<(u32, u32)> = got.candidates.iter().map(|&(i, v)| (i, v.to_bits())).collect();
                        assert_eq!(got_c, want_c, "{what}: candidates (index, logit bits)");
                        assert_eq!(raw[3] as usize, kk, "{what}: count");
                        for r in kk..k as usize {
                            assert_eq!((raw[4 + 2 * r], f32::from_bits(raw[5 + 2 * r])), (u32::MAX, f32::NEG_INFINITY), "{what}: unused slot {r}");
                        }
                        assert_eq!(got.max, want.max, "{what}: max");
                        assert_close(&format!("{what}: sum of exp"), &[got.sum_exp], &[want.sum_exp as f32], SUM_EXP);
                        let lse = want.max as f64 + want.sum_exp.ln();
                        if lse.is_finite() {
                            assert_close(&format!("{what}: lse"), &[got.lse], &[lse as f32], SUM_EXP);
                        } else {
                            assert_eq!(got.lse, lse as f32, "{what}: lse");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn topk_rejects_bad_k() {
    let Some(g) = contexts().into_iter().next() else { return };
    let b = g.buffer("b", 64);
    for k in [0, ops::WG + 1] {
        assert!(ops::topk(&g, &b, &b, 16, k).is_err(), "k = {k} accepted");
    }
}

#[test]
fn empty_input() {
    for g in contexts() {
        let lb = g.buffer("logits", 4);
        let out = poisoned(&g, "out", ops::ARGMAX_WORDS);
        let ds = ops::argmax(&g, &lb, &out, 0);
        g.run(&ds.iter().collect::<Vec<_>>());
        let got = read_guarded_u32(&g, &out, ops::ARGMAX_WORDS);
        assert_eq!((got[0], f32::from_bits(got[1])), (reference::argmax(&[]), f32::NEG_INFINITY), "argmax n=0 on {}", label(&g));
        let k = ops::TOPK_K;
        let out = poisoned(&g, "out", ops::topk_words(k));
        let ds = ops::topk(&g, &lb, &out, 0, k).unwrap();
        g.run(&ds.iter().collect::<Vec<_>>());
        let got = ops::TopK::parse(&read_guarded_u32(&g, &out, ops::topk_words(k)), k).unwrap();
        let want = reference::topk(&[], k as usize);
        assert_eq!((got.max, got.sum_exp, got.lse), (want.max, 0.0, f32::NEG_INFINITY), "topk n=0 on {}", label(&g));
        assert!(got.candidates.is_empty() && want.candidates.is_empty());
    }
}
