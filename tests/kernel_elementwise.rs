//! Elementwise kernels against their CPU references: residual add, bias
//! add, RMSNorm, per-head RMSNorm (QK-norm), RoPE (with and without Llama 3
//! frequency factors), SwiGLU, GeGLU (GELU tanh), scale.

mod common;
use common::*;
use wgkv::kernels::Kernel;
use wgkv::ops::elementwise as ops;
use wgkv::reference::elementwise as reference;

/// Lengths that are and are not multiples of the workgroup size, a single
/// element, the model's dims, and one needing a 2-D grid (> 65535 groups).
const ADD_LENS: &[usize] = &[1, 63, 64, 65, 576, 1536, 9 * 64 * 7 + 3, 65535 * 64 + 100];

#[test]
fn add_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(1);
        for &n in ADD_LENS {
            let x = rng.vec(n, -2.0, 2.0);
            let y = rng.vec(n, -2.0, 2.0);
            let xb = g.buffer("x", 4 * (n + GUARD_WORDS) as u64);
            let mut xg = x.clone();
            xg.extend(std::iter::repeat_n(f32::from_bits(GUARD), GUARD_WORDS));
            g.write(&xb, 0, bytemuck::cast_slice(&xg));
            let yb = upload_f32(&g, "y", &y);
            let d = ops::add(&g, &xb, &yb, n as u32);
            assert_eq!(d.kernel, Kernel::Add);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &xb, n);
            let mut want = x.clone();
            reference::add(&mut want, &y);
            assert_close(&format!("add n={n} on {}", label(&g)), &got, &want, EXACT);
        }
    }
}

/// `x` followed by guard words, uploaded as a read-write buffer.
fn guarded(g: &wgkv::gpu::Gpu, x: &[f32]) -> wgpu::Buffer {
    let xb = g.buffer("x", 4 * (x.len() + GUARD_WORDS) as u64);
    let mut xg = x.to_vec();
    xg.extend(std::iter::repeat_n(f32::from_bits(GUARD), GUARD_WORDS));
    g.write(&xb, 0, bytemuck::cast_slice(&xg));
    xb
}

#[test]
fn add_bias_matches_reference() {
    // (tokens, width): one element, widths below / at / above the workgroup
    // size, Qwen2.5-0.5B's Q and K rows at prefill, and a 2-D grid.
    let shapes = [(1, 1), (1, 63), (3, 64), (7, 65), (16, 896), (13, 128), (1, 4864), (1029, 4097)];
    for g in contexts() {
        let mut rng = Rng::new(5);
        for &(t, w) in &shapes {
            let x = rng.vec(t * w, -2.0, 2.0);
            let bias = rng.vec(w, -1.0, 1.0);
            let xb = guarded(&g, &x);
            let bb = upload_f32(&g, "bias", &bias);
            let d = ops::add_bias(&g, &xb, &bb, t as u32, w as u32);
            assert_eq!(d.kernel, Kernel::Add);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &xb, t * w);
            let mut want = x.clone();
            reference::add_bias(&mut want, &bias);
            assert_close(&format!("add_bias {t}x{w} on {}", label(&g)), &got, &want, EXACT);
        }
    }
}

/// Per-head RMSNorm in place (QK-norm) against the reference RMSNorm over
/// rows of head_dim; rows past `rows` stay as they were.
#[test]
fn head_norm_matches_reference() {
    // (rows, head_dim, spare rows): Qwen3's heads (128) and Qwen2.5's (64)
    // at decode and prefill, dims below / above the workgroup size, a single
    // element, and more rows than one grid dimension holds.
    let shapes = [(16, 128, 0), (14, 64, 3), (16 * 8, 128, 5), (3, 1, 2), (5, 63, 1), (2, 65, 0), (33, 100, 7), (1, 256, 0), (70_000, 2, 9)];
    for g in contexts() {
        let mut rng = Rng::new(6);
        for &(rows, dim, spare) in &shapes {
            let n = (rows + spare) * dim;
            let x = rng.vec(n, -3.0, 3.0);
            let w = rng.vec(dim, 0.5, 1.5);
            let xb = guarded(&g, &x);
            let wb = upload_f32(&g, "w", &w);
            let d = ops::head_norm(&g, &xb, &wb, rows as u32, dim as u32, 1e-6);
            assert_eq!(d.kernel, Kernel::HeadNorm);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &xb, n);
            let want = reference::rmsnorm(&x[..rows * dim], &w, dim, 1e-6);
            let what = format!("head_norm {rows}x{dim} on {}", label(&g));
            assert_close(&what, &got[..rows * dim], &want, F32_REDUCTION);
            assert_close(&format!("{what}: rows past the last"), &got[rows * dim..], &x[rows * dim..], EXACT);
        }
    }
}

#[test]
fn rmsnorm_matches_reference() {
    // (tokens, dim): real model dim, awkward dims below / above the workgroup size.
    let shapes = [(1, 576), (7, 576), (3, 1), (2, 63), (5, 65), (1, 4096), (33, 100)];
    for g in contexts() {
        let mut rng = Rng::new(2);
        for &(t, dim) in &shapes {
            let x = rng.vec(t * dim, -3.0, 3.0);
            let w = rng.vec(dim, 0.5, 1.5);
            let xb = upload_f32(&g, "x", &x);
            let wb = upload_f32(&g, "w", &w);
            let out = poisoned(&g, "out", t * dim);
            let d = ops::rmsnorm(&g, &xb, &wb, &out, t as u32, dim as u32, 1e-5);
            assert_eq!(d.kernel, Kernel::RmsNorm);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &out, t * dim);
            let want = reference::rmsnorm(&x, &w, dim, 1e-5);
            assert_close(&format!("rmsnorm {t}x{dim} on {}", label(&g)), &got, &want, F32_REDUCTION);
        }
    }
}

/// RoPE against the f64 reference. The shader reduces the angle exactly (see
/// shaders/rope.wgsl), which leaves f32 sin/cos in [-pi, pi] and one rotation:
/// measured <= 1.6e-6 on |x| <= 2 at any position below 2^24 (a naive f32
/// angle is off by 1.2e-3 at position 8191).
const ROPE: Tol = Tol { name: "rope", abs: 3e-6, rel: 1e-6 };

#[test]
fn rope_matches_reference() {
    use wgkv::ops::Step;
    use wgkv::ops::elementwise::{Rope, RopeLayout};
    // (heads, head_dim, rot_dim, base): q and k of the real model, partial
    // rotary, a tiny head, an odd head count with a small rotary part, Llama
    // 3's heads and base (with its frequency factors below).
    let shapes = [(9, 64, 64, 1e5), (3, 64, 64, 1e5), (2, 64, 32, 1e4), (1, 2, 2, 1e4), (5, 10, 6, 5e5), (4, 128, 128, 5e5)];
    let max_tokens = 65usize;
    for g in contexts() {
        let mut rng = Rng::new(3);
        let step_buf = g.uniform("step", bytemuck::bytes_of(&Step::default()));
        for (&(heads, hd, rot, base), with_factors) in shapes.iter().flat_map(|s| [(s, false), (s, true)]) {
            // Head 128: a Llama 3 profile (fast pairs kept, slow ones divided
            // by 8, blended between); other shapes: arbitrary divisors.
            let factors: Option<Vec<f32>> = match (with_factors, hd) {
                (false, _) => None,
                (true, 128) => Some(
                    (0..64)
                        .map(|j| {
                            if j < 20 {
                                1.0
                            } else if j < 40 {
                                1.0 + 7.0 * (j - 20) as f32 / 20.0
                            } else {
                                8.0
                            }
                        })
                        .collect(),
                ),
                (true, _) => Some(rng.vec(rot / 2, 0.25, 40.0)),
            };
            for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
                let row = heads * hd;
                let xb = g.buffer("x", 4 * (max_tokens * row + GUARD_WORDS) as u64);
                let r = Rope { n_heads: heads as u32, head_dim: hd as u32, rot_dim: rot as u32, base, layout, factors: factors.as_deref() };
                // One dispatch for every step, as in the engine: only the Step uniform changes.
                let d = ops::rope(&g, &xb, &step_buf, &r, max_tokens as u32).unwrap();
                assert_eq!(d.kernel, Kernel::Rope);
                for pos in [0u32, 1, 4095, 8191, 1_000_000] {
                    for n_tokens in [1usize, 7, 65] {
                        let x = rng.vec(max_tokens * row, -2.0, 2.0);
                        let mut xg = x.clone();
                        xg.extend(std::iter::repeat_n(f32::from_bits(GUARD), GUARD_WORDS));
                        g.write(&xb, 0, bytemuck::cast_slice(&xg));
                        let step = Step { pos, n_tokens: n_tokens as u32, kv_len: pos + n_tokens as u32, _pad: 0 };
                        g.write(&step_buf, 0, bytemuck::bytes_of(&step));
                        g.run(&[&d]);
                        let got = read_guarded_f32(&g, &xb, max_tokens * row);
                        let mut want = x[..n_tokens * row].to_vec();
                        let half = layout == RopeLayout::HalfSplit;
                        reference::rope(&mut want, heads, hd, rot, base, factors.as_deref(), half, pos);
                        let what = format!("rope {heads}x{hd} rot {rot} {layout:?} factors {with_factors} pos {pos} tokens {n_tokens} on {}", label(&g));
                        assert_close(&what, &got[..n_tokens * row], &want, ROPE);
                        assert_close(&format!("{what}: rows past n_tokens"), &got[n_tokens * row..], &x[n_tokens * row..], EXACT);
                    }
                }
            }
        }
    }
}

/// `rope_qk` (queries and keys in one dispatch) against the reference and
/// against a `rope` dispatch of each, bit for bit: head counts the model's
/// (9 and 3), grouped (14 and 2), one key head; both layouts, partial
/// rotary, frequency factors; fewer tokens than the buffers hold.
#[test]
fn rope_of_queries_and_keys_in_one_dispatch_equals_two() {
    use wgkv::ops::Step;
    use wgkv::ops::elementwise::{Rope, RopeLayout};
    let shapes = [(9, 3, 64, 64), (14, 2, 64, 64), (5, 1, 10, 6)];
    let max_tokens = 33usize;
    for g in contexts() {
        let mut rng = Rng::new(5);
        let step_buf = g.uniform("step", bytemuck::bytes_of(&Step::default()));
        for (qh, kh, hd, rot) in shapes {
            let factors = (rot == 6).then(|| rng.vec(rot / 2, 0.5, 8.0));
            for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
                let r = Rope { n_heads: qh as u32, head_dim: hd as u32, rot_dim: rot as u32, base: 1e5, layout, factors: factors.as_deref() };
                let rk = Rope { n_heads: kh as u32, ..r };
                let half = layout == RopeLayout::HalfSplit;
                for (pos, n_tokens) in [(0u32, 1usize), (4097, 1), (70_000, 33), (9, 20)] {
                    let (q, k) = (rng.vec(max_tokens * qh * hd, -2.0, 2.0), rng.vec(max_tokens * kh * hd, -2.0, 2.0));
                    let upload = |x: &[f32]| {
                        let mut v = x.to_vec();
                        v.extend(std::iter::repeat_n(f32::from_bits(GUARD), GUARD_WORDS));
                        g.upload("x", bytemuck::cast_slice(&v))
                    };
                    let (qb, kb, q2, k2) = (upload(&q), upload(&k), upload(&q), upload(&k));
                    let step = Step { pos, n_tokens: n_tokens as u32, kv_len: pos + n_tokens as u32, _pad: 0 };
                    g.write(&step_buf, 0, bytemuck::bytes_of(&step));
                    let one = ops::rope_qk(&g, &qb, &kb, kh as u32, &step_buf, &r, max_tokens as u32).unwrap();
                    let two = [ops::rope(&g, &q2, &step_buf, &r, max_tokens as u32).unwrap(), ops::rope(&g, &k2, &step_buf, &rk, max_tokens as u32).unwrap()];
                    g.run(&[&one, &two[0], &two[1]]);
                    let what = format!("rope_qk {qh}+{kh}x{hd} rot {rot} {layout:?} pos {pos} tokens {n_tokens} on {}", label(&g));
                    for (heads, x, fused, plain) in [(qh, &q, &qb, &q2), (kh, &k, &kb, &k2)] {
                        let n = max_tokens * heads * hd;
                        let got = read_guarded_f32(&g, fused, n);
                        let mut want = x[..n_tokens * heads * hd].to_vec();
                        reference::rope(&mut want, heads, hd, rot, 1e5, factors.as_deref(), half, pos);
                        assert_close(&what, &got[..want.len()], &want, ROPE);
                        assert_close(&format!("{what}: rows past n_tokens"), &got[want.len()..], &x[want.len()..], EXACT);
                        assert_close(&format!("{what}: against two dispatches"), &got, &read_guarded_f32(&g, plain, n), EXACT);
                    }
                }
            }
        }
    }
}

/// `rope_qk_at` (each token at its own position, a batched decode step)
/// against the reference token by token, and bit for bit against
/// `rope_qk` at one token's position: positions out of order, repeated,
/// past 4096 and 65536; fewer tokens than the table holds.
#[test]
fn rope_at_each_tokens_own_position_matches_reference() {
    use wgkv::ops::Step;
    use wgkv::ops::elementwise::{Rope, RopeLayout};
    let positions: [u32; 7] = [70_000, 0, 4097, 5, 5, 1023, 12];
    let max_tokens = positions.len();
    for g in contexts() {
        let mut rng = Rng::new(9);
        let step_buf = g.uniform("step", bytemuck::bytes_of(&Step::default()));
        let one_step = g.uniform("step1", bytemuck::bytes_of(&Step::default()));
        let table = g.upload("positions", bytemuck::cast_slice(&positions));
        for (qh, kh, hd, rot) in [(9, 3, 64, 64), (5, 1, 10, 6)] {
            for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
                let r = Rope { n_heads: qh as u32, head_dim: hd as u32, rot_dim: rot as u32, base: 1e4, layout, factors: None };
                let half = layout == RopeLayout::HalfSplit;
                for n_tokens in [max_tokens, 3] {
                    let (q, k) = (rng.vec(max_tokens * qh * hd, -2.0, 2.0), rng.vec(max_tokens * kh * hd, -2.0, 2.0));
                    let upload = |x: &[f32]| {
                        let mut v = x.to_vec();
                        v.extend(std::iter::repeat_n(f32::from_bits(GUARD), GUARD_WORDS));
                        g.upload("x", bytemuck::cast_slice(&v))
                    };
                    let (qb, kb) = (upload(&q), upload(&k));
                    let step = Step { pos: 0, n_tokens: n_tokens as u32, kv_len: 0, _pad: 0 };
                    g.write(&step_buf, 0, bytemuck::bytes_of(&step));
                    let d = ops::rope_qk_at(&g, [&qb, &kb], kh as u32, &step_buf, &table, &r, max_tokens as u32).unwrap();
                    g.run(&[&d]);
                    let what = format!("rope_qk_at {qh}+{kh}x{hd} rot {rot} {layout:?} tokens {n_tokens} on {}", label(&g));
                    for (heads, x, buf) in [(qh, &q, &qb), (kh, &k, &kb)] {
                        let row = heads * hd;
                        let got = read_guarded_f32(&g, buf, max_tokens * row);
                        for (t, &pos) in positions.iter().enumerate() {
                            let (src, out) = (&x[t * row..(t + 1) * row], &got[t * row..(t + 1) * row]);
                            if t >= n_tokens {
                                assert_close(&format!("{what}: token {t} past n_tokens"), out, src, EXACT);
                                continue;
                            }
                            let mut want = src.to_vec();
                            reference::rope(&mut want, heads, hd, rot, 1e4, None, half, pos);
                            assert_close(&format!("{what}: token {t} at {pos}"), out, &want, ROPE);
                        }
                    }
                    // Token 0 again through rope_qk at its position: the same bits.
                    let (q1, k1) = (upload(&q[..qh * hd]), upload(&k[..kh * hd]));
                    g.write(&one_step, 0, bytemuck::bytes_of(&Step { pos: positions[0], n_tokens: 1, kv_len: 0, _pad: 0 }));
                    g.run(&[&ops::rope_qk(&g, &q1, &k1, kh as u32, &one_step, &r, 1).unwrap()]);
                    assert_close(
                        &format!("{what}: against rope_qk"),
                        &read_guarded_f32(&g, &q1, qh * hd),
                        &read_guarded_f32(&g, &qb, max_tokens * qh * hd)[..qh * hd],
                        EXACT,
                    );
                    assert_close(
                        &format!("{what}: keys against rope_qk"),
                        &read_guarded_f32(&g, &k1, kh * hd),
                        &read_guarded_f32(&g, &kb, max_tokens * kh * hd)[..kh * hd],
                        EXACT,
                    );
                }
            }
        }
    }
}

#[test]
fn rope_rejects_bad_shapes() {
    use wgkv::ops::elementwise::{Rope, RopeLayout};
    let Some(g) = contexts().into_iter().next() else { return };
    let x = g.buffer("x", 64);
    let step = g.uniform("step", &[0; 16]);
    for (hd, rot, base) in [(64, 63, 1e4), (64, 66, 1e4), (64, 0, 1e4), (64, 64, 1.0), (64, 64, f64::NAN)] {
        let r = Rope { n_heads: 1, head_dim: hd, rot_dim: rot, base, layout: RopeLayout::Interleaved, factors: None };
        assert!(ops::rope(&g, &x, &step, &r, 1).is_err(), "head_dim {hd} rot_dim {rot} base {base} accepted");
    }
    let good = vec![1.0f32; 32];
    let r = Rope { n_heads: 1, head_dim: 64, rot_dim: 64, base: 1e4, layout: RopeLayout::HalfSplit, factors: Some(&good) };
    assert!(ops::rope(&g, &x, &step, &r, 1).is_ok());
    for (factors, why) in [(vec![1.0f32; 31], "31 frequency factors for 32"), (vec![0.0; 32], "factor 0 is not"), (vec![f32::NAN; 32], "factor NaN")] {
        let r = Rope { factors: Some(&factors), ..r };
        let Err(e) = ops::rope(&g, &x, &step, &r, 1) else { panic!("{why}: accepted") };
        let e = e.to_string();
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn swiglu_matches_reference() {
    // ffn of the real model, per token and batched, awkward lengths, a 2-D grid.
    let lens = [1usize, 63, 64, 65, 1536, 7 * 1536, 65 * 1536 + 5, 65535 * 64 + 100];
    for g in contexts() {
        let mut rng = Rng::new(4);
        for &n in &lens {
            let mut gate = rng.vec(n, -12.0, 12.0);
            // Saturated ends of silu: exp(-g) overflows / underflows.
            for (i, v) in [-200.0f32, -90.0, -30.0, 0.0, 30.0, 90.0, 200.0].into_iter().enumerate().take(n) {
                gate[i] = v;
            }
            let up = rng.vec(n, -3.0, 3.0);
            let gb = upload_f32(&g, "gate", &gate);
            let ub = upload_f32(&g, "up", &up);
            let out = poisoned(&g, "out", n);
            let d = ops::swiglu(&g, &gb, &ub, &out, n as u32);
            assert_eq!(d.kernel, Kernel::Swiglu);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &out, n);
            let want = reference::swiglu(&gate, &up);
            assert_close(&format!("swiglu n={n} on {}", label(&g)), &got, &want, F32_ELEMENTWISE);
        }
    }
}

#[test]
fn geglu_matches_reference() {
    // Gemma 3 270M's ffn (2048), awkward lengths, a 2-D grid; GELU's saturated ends.
    let lens = [1usize, 63, 64, 65, 2048, 7 * 2048 + 3, 65535 * 64 + 100];
    for g in contexts() {
        let mut rng = Rng::new(14);
        for &n in &lens {
            let mut gate = rng.vec(n, -8.0, 8.0);
            for (i, v) in [-1e30f32, -200.0, -12.0, -10.0, 0.0, 10.0, 12.0, 200.0, 1e30].into_iter().enumerate().take(n) {
                gate[i] = v;
            }
            let up = rng.vec(n, -3.0, 3.0);
            let gb = upload_f32(&g, "gate", &gate);
            let ub = upload_f32(&g, "up", &up);
            let out = poisoned(&g, "out", n);
            let d = ops::geglu(&g, &gb, &ub, &out, n as u32);
            assert_eq!(d.kernel, Kernel::Geglu);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &out, n);
            let want = reference::geglu(&gate, &up);
            assert_close(&format!("geglu n={n} on {}", label(&g)), &got, &want, F32_ELEMENTWISE);
        }
    }
}

#[test]
fn scale_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(15);
        for &n in ADD_LENS {
            let x = rng.vec(n, -2.0, 2.0);
            let xb = guarded(&g, &x);
            let d = ops::scale(&g, &xb, 25.298_221, n as u32);
            assert_eq!(d.kernel, Kernel::Scale);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &xb, n);
            let want: Vec<f32> = x.iter().map(|v| v * 25.298_221).collect();
            assert_close(&format!("scale n={n} on {}", label(&g)), &got, &want, EXACT);
        }
    }
}

/// Gemma 2's final-logit softcap 30 over logits from inside it to far past
/// it (tanh saturates; an exp-based tanh must stay finite there).
#[test]
fn softcap_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(16);
        for &n in ADD_LENS {
            let mut x = rng.vec(n, -90.0, 90.0);
            if n > 2 {
                (x[0], x[1]) = (1e30, -3e4);
            }
            let xb = guarded(&g, &x);
            let d = ops::softcap(&g, &xb, 30.0, n as u32);
            assert_eq!(d.kernel, Kernel::Scale);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &xb, n);
            let want = reference::softcap(&x, 30.0);
            assert!(want.iter().all(|v| v.abs() <= 30.0));
            assert_close(&format!("softcap n={n} on {}", label(&g)), &got, &want, F32_ELEMENTWISE);
        }
    }
}
