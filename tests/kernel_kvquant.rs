//! The quantized KV cache (`q8`, `q4`): `kv_quant` stores each appended row
//! as `reference::kvquant` quantizes it, rotated or not (and writes nothing
//! else); `kv_rotate` is the reference's Walsh-Hadamard rotation and its
//! own inverse; the prefill and decode attention kernels of both adapter
//! classes read the blocks as the CPU attention over the rows those blocks
//! decode to.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::Kernel;
use wgkv::ops::Step;
use wgkv::ops::attention::{self as ops, AttnKind, AttnShape, DecodeScratch, PrefillScratch};
use wgkv::reference::attention as reference;
use wgkv::reference::kvquant::{decode_row, quantize_block, rotate, roundtrip, row_words};

fn shape(n_heads: u32, n_kv_heads: u32, head_dim: u32, max_seq: u32, kvq: u32) -> AttnShape {
    AttnShape { n_heads, n_kv_heads, head_dim, max_seq, kvq, ..Default::default() }
}

fn step(g: &Gpu, pos: u32, n_tokens: u32, kv_len: u32) -> wgpu::Buffer {
    g.uniform("step", bytemuck::bytes_of(&Step { pos, n_tokens, kv_len, _pad: 0 }))
}

/// `n` rows of `row` values in ±`r`, with awkward blocks: the first row
/// all zero, the second one large outlier per block, the third negative
/// extremes (q4's signed maximum).
fn rows(rng: &mut Rng, n: usize, row: usize, r: f32) -> Vec<f32> {
    let mut v = rng.vec(n * row, -r, r);
    if n > 3 {
        v[..row].fill(0.0);
        for (i, x) in v[row..2 * row].iter_mut().enumerate() {
            if i % 32 == 5 {
                *x = 40.0;
            }
        }
        for (i, x) in v[2 * row..3 * row].iter_mut().enumerate() {
            if i % 32 == 31 {
                *x = -3.0 * r;
            }
        }
    }
    v
}

/// The cache buffer's rows decoded (`[n_kv_heads][max_seq][head_dim]`):
/// the values the attention kernels must see.
fn decode_cache(g: &Gpu, buf: &wgpu::Buffer, s: &AttnShape) -> Vec<f32> {
    let (hd, rw) = (s.head_dim as usize, row_words(s.head_dim as usize, s.kvq));
    let words = g.read_u32(buf, (s.n_kv_heads * s.max_seq) as usize * rw);
    words.chunks(rw).flat_map(|w| if w.iter().all(|&x| x == GUARD) { vec![0.0; hd] } else { decode_row(w, hd, s.kvq) }).collect()
}

/// Append `n` rows after `prior` slots with `kv_quant`.
#[allow(clippy::too_many_arguments)]
fn append(g: &Gpu, s: &AttnShape, k: &wgpu::Buffer, v: &wgpu::Buffer, k_new: &[f32], v_new: &[f32], prior: u32, n: u32, max_tokens: u32) {
    let st = step(g, prior, n, prior + n);
    let d = ops::kv_append(g, s, &upload_f32(g, "k", k_new), &upload_f32(g, "v", v_new), k, v, &st, max_tokens);
    assert_eq!(d.kernel, Kernel::KvQuant);
    g.run(&[&d]);
}

#[test]
fn kv_quant_stores_the_reference_blocks_and_nothing_else() {
    // (n_kv_heads, head_dim, max_seq, prior slots, n_tokens): the real
    // models' 64, one block per row (32: a scale word with one half), three
    // (96), 128 and 256, a token on the last slot, 512 tokens.
    let cases = [(3, 64, 40, 0, 7), (1, 32, 16, 15, 1), (2, 96, 70, 3, 65), (2, 128, 600, 3, 512), (1, 256, 9, 2, 6)];
    for g in contexts() {
        let mut rng = Rng::new(70);
        for (bits, rot) in [(8, false), (4, false), (8, true), (4, true)] {
            for &(kvh, hd, ms, prior, n) in &cases {
                let group = if rot { ops::rotation_group(hd) as usize } else { 0 };
                let s = AttnShape { kvrot: group as u32, ..shape(kvh, kvh, hd, ms, bits) };
                let row = (kvh * hd) as usize;
                let max_tokens = n + 2; // rows past step.n_tokens must not be stored
                let (k_new, v_new) = (rows(&mut rng, max_tokens as usize, row, 4.0), rows(&mut rng, max_tokens as usize, row, 1.0));
                let words = (s.cache_bytes(g.caps.f16) / 4) as usize;
                let (kb, vb) = (poisoned(&g, "k_cache", words), poisoned(&g, "v_cache", words));
                append(&g, &s, &kb, &vb, &k_new, &v_new, prior, n, max_tokens);
                let rw = row_words(hd as usize, bits);
                assert_eq!(rw as u64 * 4, s.row_bytes(g.caps.f16));
                let what = format!("q{bits} rot {group} kvh={kvh} hd={hd} prior={prior} n={n} on {}", label(&g));
                for (buf, new, name) in [(&kb, &k_new, "k"), (&vb, &v_new, "v")] {
                    let got = g.read_u32(buf, words + GUARD_WORDS);
                    assert!(got[words..].iter().all(|&w| w == GUARD), "{what} {name}: wrote past the cache");
                    let mut exact = 0;
                    for h in 0..kvh as usize {
                        for slot in 0..ms as usize {
                            let w = &got[(h * ms as usize + slot) * rw..][..rw];
                            let t = slot.wrapping_sub(prior as usize);
                            if t >= n as usize {
                                assert!(w.iter().all(|&x| x == GUARD), "{what} {name}: slot {slot} of head {h} was written");
                                continue;
                            }
                            // What is quantized: the row, rotated group by group.
                            let src = &rotate(&new[t * row + h * hd as usize..][..hd as usize], group);
                            let (gv, wv) = (decode_row(w, hd as usize, bits), roundtrip(src, bits));
                            for (b, blk) in src.chunks(32).enumerate() {
                                let d = quantize_block(blk, bits).0;
                                for e in b * 32..(b + 1) * 32 {
                                    // 1 / d may differ in its last bit on the GPU: a quant
                                    // at a rounding boundary may land one step over.
                                    assert!((gv[e] - wv[e]).abs() <= d.abs() * 1.001, "{what} {name}: head {h} slot {slot} elem {e}: {} vs {}", gv[e], wv[e]);
                                    exact += (gv[e] == wv[e]) as usize;
                                }
                            }
                            // Every element within half a step of its input (q4: one
                            // step, its range -8 d ..= 7 d clips the side opposite the
                            // largest magnitude), plus the f16 scale's rounding
                            // (2^-11) times the largest quant.
                            let (step, qmax) = if bits == 8 { (0.5, 127.0) } else { (1.0, 8.0) };
                            for e in 0..hd as usize {
                                let d = quantize_block(&src[e / 32 * 32..][..32], bits).0.abs();
                                let bound = (step + qmax / 2048.0) * d * 1.001 + 1e-6;
                                assert!((gv[e] - src[e]).abs() <= bound, "{what} {name}: elem {e} {} from {}", gv[e], src[e]);
                            }
                        }
                    }
                    let total = (n * kvh * hd) as usize;
                    assert!(exact * 1000 >= total * 999, "{what} {name}: {exact} of {total} elements equal the reference");
                }
            }
        }
    }
}

fn other(g: &Gpu) -> AttnKind {
    if AttnKind::for_gpu(g) == AttnKind::Lanes { AttnKind::Shared } else { AttnKind::Lanes }
}

/// Prefill `n` tokens after `prior` tokens appended by an earlier call;
/// compare with the reference over the decoded cache.
fn check_prefill(g: &Gpu, rng: &mut Rng, s: &AttnShape, n: u32, prior: u32, kind: AttnKind) {
    let max_tokens = n + 2;
    let (qrow, kvrow) = ((s.n_heads * s.head_dim) as usize, (s.n_kv_heads * s.head_dim) as usize);
    let words = (s.cache_bytes(g.caps.f16) / 4) as usize;
    let (kb, vb) = (poisoned(g, "k_cache", words), poisoned(g, "v_cache", words));
    if prior > 0 {
        let (k0, v0) = (rng.vec(prior as usize * kvrow, -1.0, 1.0), rng.vec(prior as usize * kvrow, -1.0, 1.0));
        append(g, s, &kb, &vb, &k0, &v0, 0, prior, prior);
    }
    let q = rng.vec(max_tokens as usize * qrow, -2.0, 2.0);
    let (k_new, v_new) = (rng.vec(max_tokens as usize * kvrow, -1.0, 1.0), rng.vec(max_tokens as usize * kvrow, -1.0, 1.0));
    let st = step(g, prior, n, prior + n);
    let out = poisoned(g, "out", max_tokens as usize * qrow);
    let app = ops::kv_append(g, s, &upload_f32(g, "k", &k_new), &upload_f32(g, "v", &v_new), &kb, &vb, &st, max_tokens);
    let scratch = PrefillScratch::with_kind(g, s, kind, max_tokens).unwrap();
    let qb = upload_f32(g, "q", &q);
    let attn = ops::attn_prefill(g, s, &qb, &kb, &vb, &scratch, &out, &st);
    g.run(&[&[&app], attn.iter().collect::<Vec<_>>().as_slice()].concat());
    let (kc, vc) = (decode_cache(g, &kb, s), decode_cache(g, &vb, s));
    let want = reference::attention(s, &q[..n as usize * qrow], &kc, &vc, n as usize, (prior + n) as usize);
    let what = format!("q{} prefill ({kind:?}) heads {}/{} dim {} n={n} prior={prior} on {}", s.kvq, s.n_heads, s.n_kv_heads, s.head_dim, label(g));
    let all = read_guarded_f32(g, &out, max_tokens as usize * qrow);
    assert!(all[n as usize * qrow..].iter().all(|v| v.to_bits() == GUARD), "{what}: wrote rows past n_tokens");
    assert_close(&what, &all[..n as usize * qrow], &want.out, F32_REDUCTION);
}

/// Decode at `kv_len` (the token appended first); compare as above.
fn check_decode(g: &Gpu, rng: &mut Rng, s: &AttnShape, kv_len: u32, kind: AttnKind) {
    let (qrow, kvrow) = ((s.n_heads * s.head_dim) as usize, (s.n_kv_heads * s.head_dim) as usize);
    let words = (s.cache_bytes(g.caps.f16) / 4) as usize;
    let (kb, vb) = (poisoned(g, "k_cache", words), poisoned(g, "v_cache", words));
    let n = kv_len as usize;
    let (k0, v0) = (rng.vec(n * kvrow, -1.0, 1.0), rng.vec(n * kvrow, -1.0, 1.0));
    if kv_len > 1 {
        append(g, s, &kb, &vb, &k0[..(n - 1) * kvrow], &v0[..(n - 1) * kvrow], 0, kv_len - 1, kv_len - 1);
    }
    let q = rng.vec(qrow, -2.0, 2.0);
    let st = step(g, kv_len - 1, 1, kv_len);
    let scratch = DecodeScratch::with_kind(g, s, kind);
    let (out, lse) = (poisoned(g, "out", qrow), poisoned(g, "lse", s.n_heads as usize));
    let app = ops::kv_append(g, s, &upload_f32(g, "k", &k0[(n - 1) * kvrow..]), &upload_f32(g, "v", &v0[(n - 1) * kvrow..]), &kb, &vb, &st, 1);
    let qb = upload_f32(g, "q", &q);
    let dec = ops::attn_decode(g, s, &qb, &kb, &vb, &scratch, &out, &lse, &st);
    g.run(&[&app, &dec.partial, &dec.merge]);
    let (kc, vc) = (decode_cache(g, &kb, s), decode_cache(g, &vb, s));
    let want = reference::attention(s, &q, &kc, &vc, 1, n);
    let what = format!("q{} decode ({kind:?}) heads {}/{} dim {} kv_len={kv_len} on {}", s.kvq, s.n_heads, s.n_kv_heads, s.head_dim, label(g));
    assert_close(&format!("{what}: out"), &read_guarded_f32(g, &out, qrow), &want.out, F32_REDUCTION);
    assert_close(&format!("{what}: lse"), &read_guarded_f32(g, &lse, s.n_heads as usize), &want.lse, F32_REDUCTION);
}

#[test]
fn prefill_reads_quantized_blocks() {
    for g in contexts() {
        let mut rng = Rng::new(71);
        for kind in [AttnKind::for_gpu(&g), other(&g)] {
            for bits in [8, 4] {
                check_prefill(&g, &mut rng, &shape(9, 3, 64, 60, bits), 7, 37, kind);
                check_prefill(&g, &mut rng, &shape(8, 1, 32, 80, bits), 65, 0, kind);
                check_prefill(&g, &mut rng, &shape(6, 2, 96, 200, bits), 30, 50, kind);
                check_prefill(&g, &mut rng, &shape(9, 3, 64, 600, bits), 300, 37, kind);
            }
        }
        // A late chunk of a long prompt (the lanes kernel's splits).
        check_prefill(&g, &mut rng, &shape(9, 3, 64, 4200, 4), 64, 4000, AttnKind::for_gpu(&g));
    }
}

#[test]
fn decode_reads_quantized_blocks() {
    for g in contexts() {
        let mut rng = Rng::new(72);
        for kind in [AttnKind::for_gpu(&g), other(&g)] {
            for bits in [8, 4] {
                for &(nh, nkv, hd) in &[(9, 3, 64), (8, 1, 32), (6, 2, 96), (14, 2, 128)] {
                    for &kv_len in &[1, 65, 1000] {
                        check_decode(&g, &mut rng, &shape(nh, nkv, hd, 1100, bits), kv_len, kind);
                    }
                }
            }
        }
        check_decode(&g, &mut rng, &shape(9, 3, 64, 4100, 8), 4097, AttnKind::for_gpu(&g));
    }
}

#[test]
fn kv_rotate_is_the_reference_rotation_and_its_own_inverse() {
    for g in contexts() {
        let mut rng = Rng::new(73);
        for (group, row, n, max_tokens) in [(64u32, 9 * 64u32, 5u32, 7u32), (32, 2 * 32, 1, 1), (64, 14 * 64, 33, 40), (32, 6 * 96, 3, 3)] {
            let x = rng.vec((max_tokens * row) as usize, -3.0, 3.0);
            let buf = upload_f32(&g, "x", &x);
            let st = step(&g, 0, n, n);
            let d = ops::kv_rotate(&g, &buf, row, group, &st, max_tokens);
            assert_eq!(d.kernel, Kernel::KvRotate);
            g.run(&[&d]);
            let got = g.read_f32(&buf, x.len());
            let used = (n * row) as usize;
            let want = rotate(&x[..used], group as usize);
            let what = format!("group {group} row {row} n {n} on {}", label(&g));
            assert_close(&what, &got[..used], &want, F32_REDUCTION);
            assert_eq!(&got[used..], &x[used..], "{what}: rows past n_tokens changed");
            g.run(&[&d]);
            assert_close(&format!("{what}: twice"), &g.read_f32(&buf, used), &x[..used], F32_REDUCTION);
        }
    }
}

#[test]
fn quantized_rows_need_whole_blocks() {
    for g in contexts() {
        assert!(shape(4, 2, 64, 64, 8).check(&g).is_ok());
        let e = shape(4, 2, 48, 64, 4).check(&g).unwrap_err().to_string();
        assert!(e.contains("multiple of 32"), "{e}");
        assert_eq!(shape(4, 2, 64, 64, 8).row_bytes(true), 4 * (16 + 1));
        assert_eq!(shape(4, 2, 64, 64, 4).row_bytes(false), 4 * (8 + 1));
        assert_eq!(shape(4, 2, 96, 64, 4).row_bytes(true), 4 * (12 + 2));
    }
}
