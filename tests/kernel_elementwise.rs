//! Elementwise kernels against their CPU references: residual add, RMSNorm,
//! embedding lookup, RoPE, SwiGLU.

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
