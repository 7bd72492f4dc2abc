//! The decode step's fused weight kernels: `matvec_qkv` (Q, K, V and their
//! biases in one dispatch) and `matvec_glu` (gate, up and the gated product
//! in one dispatch), over matrices stacked in one buffer as the loader
//! stacks them; and the matvec and matmul reading one matrix of such a
//! stack (`Rows::stacked`). Each against the f64 reference, and the fused
//! kernels also against the unfused dispatches they replace, bit for bit.
//! The folded RMSNorm: the residual matvec (and `rms_parts`) leaving x *
//! gain and the sums of squares, the fused kernels applying the scale.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::NORM_PARTS_MAX;
use wgkv::kernels::{Dispatch, Kernel};
use wgkv::ops::Step;
use wgkv::ops::elementwise as ew;
use wgkv::ops::linear::{self as ops, Enc, MATVEC_CPU, MATVEC_GPU, MatmulShape, MatvecShape, NormIn, NormOut, Rows};
use wgkv::quant::{self, Layout, WType};
use wgkv::reference::{elementwise as ref_ew, linear as reference};

/// f32 dot products of up to 576 terms against f64 (as tests/kernel_linear.rs).
const F32_DOT: Tol = Tol { name: "f32-dot", abs: 3e-4, rel: 1e-4 };

/// Weight types and layouts: the default model's, Qwen's and a float type.
fn encodings() -> Vec<Enc> {
    let mut v = Vec::new();
    for w in [WType::Q4_1, WType::Q5_0, WType::Q8_0, WType::Q4_K, WType::F16] {
        v.push(Enc { wtype: w, layout: Layout::Gguf });
        if w.split_parts().is_some() {
            v.push(Enc { wtype: w, layout: Layout::Split });
        }
    }
    v
}

/// `rows[i]` random matrices of `cols` weights stacked in one buffer in
/// `enc` after `skip` rows of another matrix: the buffer, each matrix's
/// first row in it and its exact dequantization.
fn stack(g: &Gpu, rng: &mut Rng, enc: Enc, skip: usize, rows: &[usize], cols: usize) -> (wgpu::Buffer, Vec<u32>, Vec<Vec<f32>>) {
    let mut bytes = Vec::new();
    let (mut froms, mut deqs) = (Vec::new(), Vec::new());
    let mut at = skip;
    bytes.extend(enc.wtype.arrange(&quant::quantize(enc.wtype, &rng.vec(skip * cols, -1.0, 1.0)), cols, enc.layout));
    for &r in rows {
        let q = quant::quantize(enc.wtype, &rng.vec(r * cols, -1.0, 1.0));
        deqs.push(quant::dequantize(enc.wtype, &q, r * cols).unwrap());
        bytes.extend(enc.wtype.arrange(&q, cols, enc.layout));
        froms.push(at as u32);
        at += r;
    }
    (g.upload("stack", &bytes), froms, deqs)
}

/// A matvec input: uniform-capable where `uniform` (as the model's activations), NaN past `cols`.
fn input(g: &Gpu, x: &[f32], uniform: bool) -> wgpu::Buffer {
    let mut v = x.to_vec();
    v.resize(ops::x_stride(x.len() as u32) as usize, f32::NAN);
    if !uniform {
        return upload_f32(g, "x", &v);
    }
    v.resize(ops::X_UNIFORM_BYTES as usize / 4, f32::NAN);
    let b = g.activations("x", 4 * v.len() as u64);
    g.write(&b, 0, bytemuck::cast_slice(&v));
    b
}

/// `rows` random matrices stacked after `skip` rows (`stack`) and a random
/// input of `cols` (`input`): what each fused-kernel case starts from.
struct Case {
    w: wgpu::Buffer,
    froms: Vec<u32>,
    deqs: Vec<Vec<f32>>,
    x: Vec<f32>,
    xb: wgpu::Buffer,
}

fn case(g: &Gpu, rng: &mut Rng, enc: Enc, skip: usize, rows: &[usize], cols: usize, uniform: bool) -> Case {
    let (w, froms, deqs) = stack(g, rng, enc, skip, rows, cols);
    let x = rng.vec(cols, -1.0, 1.0);
    let xb = input(g, &x, uniform);
    Case { w, froms, deqs, x, xb }
}

fn run(g: &Gpu, ds: &[Dispatch]) {
    g.run(&ds.iter().collect::<Vec<_>>());
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn stacked_matrices_read_their_own_rows() {
    for g in contexts() {
        let mut rng = Rng::new(31);
        for enc in encodings() {
            let cols = if enc.wtype.block_elems() == 256 { 512 } else { 96 };
            let rows = [13, 7, 30];
            let (w, froms, deqs) = stack(&g, &mut rng, enc, 5, &rows, cols);
            let x = rng.vec(9 * cols, -1.0, 1.0);
            let what = |k: &str| format!("{k} {} {:?} stacked from row {} on {}", enc.wtype.name(), enc.layout, froms[1], label(&g));
            // The middle matrix, by the decode matvec...
            let y = poisoned(&g, "y", rows[1]);
            let xb = input(&g, &x[..cols], true);
            let d = ops::matvec_with(&g, MatvecShape::for_gpu(&g), enc, &w, &xb, &y, Rows::stacked(rows[1] as u32, froms[1]), cols as u32, false);
            run(&g, &[d]);
            let want = reference::matvec(&deqs[1], &x[..cols], rows[1], cols, None);
            assert_close(&what("matvec"), &read_guarded_f32(&g, &y, rows[1]), &want, F32_DOT);
            // ... and by the prefill matmul over 9 tokens (a type of each
            // family: the matmul's pipelines take seconds each to build).
            if !matches!((enc.wtype, enc.layout), (WType::Q4_1, Layout::Split) | (WType::Q4_K, Layout::Gguf) | (WType::F16, _)) {
                continue;
            }
            let y = poisoned(&g, "y", 9 * rows[1]);
            let mut xp = Vec::new();
            for t in x.chunks(cols) {
                xp.extend(t);
                xp.resize(xp.len() + ops::x_stride(cols as u32) as usize - cols, f32::NAN);
            }
            let xb = upload_f32(&g, "x", &xp);
            let st = g.uniform("step", bytemuck::bytes_of(&Step { pos: 0, n_tokens: 9, kv_len: 9, _pad: 0 }));
            let rows1 = Rows::stacked(rows[1] as u32, froms[1]);
            run(&g, &[ops::matmul_with(&g, MatmulShape::for_gpu(&g), enc, &w, &xb, &y, &st, rows1, cols as u32, 9, false)]);
            let want = reference::matmul(&deqs[1], &x, rows[1], cols, 9, None);
            assert_close(&what("matmul"), &read_guarded_f32(&g, &y, 9 * rows[1]), &want, F32_DOT);
        }
    }
}

#[test]
fn matvec_qkv_equals_three_matvecs_and_their_biases() {
    for g in contexts() {
        let mut rng = Rng::new(37);
        for enc in encodings() {
            let cols = if enc.wtype.block_elems() == 256 { 512 } else { 160 };
            // Awkward parts (not whole workgroups, a part of one row) and the default model's.
            for (rows, with_bias, shape) in
                [([37, 5, 9], true, MATVEC_CPU), ([1, 70, 2], false, MATVEC_GPU), ([64, 16, 16], true, MATVEC_GPU), ([576, 192, 192], false, MATVEC_CPU)]
            {
                let Case { w, froms, deqs, x, xb } = case(&g, &mut rng, enc, 3, &rows, cols, rows[0] % 2 == 1);
                let biases: Vec<Vec<f32>> = rows.iter().map(|&r| rng.vec(r, -1.0, 1.0)).collect();
                let bb: Vec<wgpu::Buffer> = biases.iter().map(|b| upload_f32(&g, "bias", b)).collect();
                let fused: Vec<wgpu::Buffer> = rows.iter().map(|&r| poisoned(&g, "y", r)).collect();
                let bias = with_bias.then(|| [&bb[0], &bb[1], &bb[2]]);
                let d = ops::matvec_qkv(&g, shape, enc, &w, froms[0], rows.map(|r| r as u32), cols as u32, &xb, [&fused[0], &fused[1], &fused[2]], bias, None);
                assert_eq!(d.kernel, Kernel::MatvecQkv);
                run(&g, &[d]);
                // The unfused dispatches it replaces.
                let plain: Vec<wgpu::Buffer> = rows.iter().map(|&r| poisoned(&g, "y", r)).collect();
                let mut ds = Vec::new();
                for i in 0..3 {
                    ds.push(ops::matvec_with(&g, shape, enc, &w, &xb, &plain[i], Rows::stacked(rows[i] as u32, froms[i]), cols as u32, false));
                    if with_bias {
                        ds.push(ew::add_bias(&g, &plain[i], &bb[i], 1, rows[i] as u32));
                    }
                }
                run(&g, &ds);
                for i in 0..3 {
                    let what = format!("matvec_qkv part {i} of {rows:?} {} {:?} bias={with_bias} {shape:?} on {}", enc.wtype.name(), enc.layout, label(&g));
                    let got = read_guarded_f32(&g, &fused[i], rows[i]);
                    let mut want = reference::matvec(&deqs[i], &x, rows[i], cols, None);
                    if with_bias {
                        ref_ew::add_bias(&mut want, &biases[i]);
                    }
                    assert_close(&what, &got, &want, F32_DOT);
                    assert_eq!(bits(&got), bits(&read_guarded_f32(&g, &plain[i], rows[i])), "{what}: differs from the unfused dispatches");
                }
            }
        }
    }
}

#[test]
fn matvec_glu_equals_two_matvecs_and_the_gate() {
    for g in contexts() {
        let mut rng = Rng::new(41);
        for enc in encodings() {
            let cols = if enc.wtype.block_elems() == 256 { 512 } else { 192 };
            for (rows, gelu, shape) in
                [(1, false, MATVEC_CPU), (7, true, MATVEC_GPU), (100, false, MATVEC_GPU), (193, true, MATVEC_CPU), (1536, false, MATVEC_CPU)]
            {
                // The up matrix first and a gap before it: any two row ranges.
                let Case { w, froms, deqs, x, xb } = case(&g, &mut rng, enc, 2, &[rows, rows], cols, rows % 2 == 0);
                let (up0, gate0) = (froms[0], froms[1]);
                let fused = poisoned(&g, "y", rows);
                let d = ops::matvec_glu(&g, shape, enc, &w, [gate0, up0], rows as u32, cols as u32, &xb, &fused, gelu, None);
                assert_eq!(d.kernel, Kernel::MatvecGlu);
                run(&g, &[d]);
                let (gate, up, plain) = (poisoned(&g, "gate", rows), poisoned(&g, "up", rows), poisoned(&g, "y", rows));
                let r = rows as u32;
                let act = if gelu { ew::geglu(&g, &gate, &up, &plain, r) } else { ew::swiglu(&g, &gate, &up, &plain, r) };
                run(
                    &g,
                    &[
                        ops::matvec_with(&g, shape, enc, &w, &xb, &gate, Rows::stacked(r, gate0), cols as u32, false),
                        ops::matvec_with(&g, shape, enc, &w, &xb, &up, Rows::stacked(r, up0), cols as u32, false),
                        act,
                    ],
                );
                let what = format!("matvec_glu {rows} rows {} {:?} gelu={gelu} {shape:?} on {}", enc.wtype.name(), enc.layout, label(&g));
                let got = read_guarded_f32(&g, &fused, rows);
                let (gv, uv) = (reference::matvec(&deqs[1], &x, rows, cols, None), reference::matvec(&deqs[0], &x, rows, cols, None));
                let want = if gelu { ref_ew::geglu(&gv, &uv) } else { ref_ew::swiglu(&gv, &uv) };
                assert_close(&what, &got, &want, F32_DOT);
                assert_eq!(bits(&got), bits(&read_guarded_f32(&g, &plain, rows)), "{what}: differs from the unfused dispatches");
            }
        }
    }
}

/// Sums of squares of `y` in groups of `per` rows, in f64.
fn squares(y: &[f32], per: usize) -> Vec<f32> {
    y.chunks(per).map(|c| c.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32).collect()
}

/// Reads a parts buffer: the first `n` parts, after checking that nothing was written past them.
#[track_caller]
fn read_parts(g: &Gpu, parts: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let all = g.read_u32(parts, NORM_PARTS_MAX as usize);
    assert!(all[n..].iter().all(|&w| w == 0), "parts written past the {n} expected");
    all[..n].iter().map(|&w| f32::from_bits(w)).collect()
}

#[test]
fn folded_norm_leaves_and_applies_the_rmsnorm() {
    for g in contexts() {
        let mut rng = Rng::new(43);
        let encs = [
            Enc { wtype: WType::Q4_1, layout: Layout::Split },
            Enc { wtype: WType::Q5_0, layout: Layout::Gguf },
            Enc { wtype: WType::F16, layout: Layout::Gguf },
        ];
        for enc in encs {
            // Widths: not whole workgroups nor whole parts of the GPU shape, and the default model's.
            for (dim, shape) in [(160, MATVEC_CPU), (96, MATVEC_GPU), (576, MATVEC_CPU)] {
                let (hidden, eps) = (64, 1e-5);
                let what = |k: &str| format!("{k} {} {:?} dim {dim} {shape:?} on {}", enc.wtype.name(), enc.layout, label(&g));
                let gain = rng.vec(dim, 0.5, 1.5);
                let gain_b = upload_f32(&g, "gain", &gain);
                let n_parts = ops::norm_parts(shape, dim as u32) as usize;
                // The residual projection: y = x0 + W h, leaving y * gain and y's squares.
                let (w, froms, deqs) = stack(&g, &mut rng, enc, 1, &[dim], hidden);
                let (x0, h) = (rng.vec(dim, -2.0, 2.0), rng.vec(hidden, -1.0, 1.0));
                let y = upload_f32(&g, "y", &x0);
                let hb = input(&g, &h, true);
                let xg = g.activations("xg", ops::X_UNIFORM_BYTES);
                let parts = g.activations("parts", 4 * NORM_PARTS_MAX as u64);
                let out = NormOut { gain: &gain_b, xg: &xg, parts: &parts };
                run(&g, &[ops::matvec_norm_out(&g, shape, enc, &w, &hb, &y, Rows::stacked(dim as u32, froms[0]), hidden as u32, true, out)]);
                let y_want = reference::matvec(&deqs[0], &h, dim, hidden, Some(&x0));
                let y_got = g.read_f32(&y, dim);
                assert_close(&what("matvec_norm_out y"), &y_got, &y_want, F32_DOT);
                let xg_want: Vec<f32> = y_got.iter().zip(&gain).map(|(v, g)| v * g).collect();
                assert_eq!(bits(&g.read_f32(&xg, dim)), bits(&xg_want), "{}", what("matvec_norm_out xg"));
                let ss = Tol { name: "sum of squares", abs: 1e-5, rel: 1e-5 };
                assert_close(&what("matvec_norm_out parts"), &read_parts(&g, &parts, n_parts), &squares(&y_got, shape.rows_per_thread as usize), ss);
                // rms_parts leaves the same from x0 alone.
                let (xg2, parts2) = (g.activations("xg", ops::X_UNIFORM_BYTES), g.activations("parts", 4 * NORM_PARTS_MAX as u64));
                let x0b = upload_f32(&g, "x0", &x0);
                run(&g, &[ops::rms_parts(&g, shape, &x0b, dim as u32, NormOut { gain: &gain_b, xg: &xg2, parts: &parts2 })]);
                let xg2_want: Vec<f32> = x0.iter().zip(&gain).map(|(v, g)| v * g).collect();
                assert_eq!(bits(&g.read_f32(&xg2, dim)), bits(&xg2_want), "{}", what("rms_parts xg"));
                assert_close(&what("rms_parts parts"), &read_parts(&g, &parts2, n_parts), &squares(&x0, shape.rows_per_thread as usize), ss);
                // The fused kernels reading them apply rmsnorm(y, gain).
                let xn = ref_ew::rmsnorm(&y_got, &gain, dim, eps);
                let norm = Some(NormIn { parts: &parts, dim: dim as u32, eps });
                let rows = [24, 8, 8];
                let (w, froms, deqs) = stack(&g, &mut rng, enc, 1, &rows, dim);
                let ys: Vec<wgpu::Buffer> = rows.iter().map(|&r| poisoned(&g, "y", r)).collect();
                run(&g, &[ops::matvec_qkv(&g, shape, enc, &w, froms[0], rows.map(|r| r as u32), dim as u32, &xg, [&ys[0], &ys[1], &ys[2]], None, norm)]);
                for i in 0..3 {
                    let want = reference::matvec(&deqs[i], &xn, rows[i], dim, None);
                    assert_close(&what(&format!("matvec_qkv part {i} folded")), &read_guarded_f32(&g, &ys[i], rows[i]), &want, F32_DOT);
                }
                let r = 40;
                let (w, froms, deqs) = stack(&g, &mut rng, enc, 1, &[r, r], dim);
                let yb = poisoned(&g, "y", r);
                run(&g, &[ops::matvec_glu(&g, shape, enc, &w, [froms[0], froms[1]], r as u32, dim as u32, &xg, &yb, false, norm)]);
                let want = ref_ew::swiglu(&reference::matvec(&deqs[0], &xn, r, dim, None), &reference::matvec(&deqs[1], &xn, r, dim, None));
                assert_close(&what("matvec_glu folded"), &read_guarded_f32(&g, &yb, r), &want, F32_DOT);
            }
        }
    }
}
