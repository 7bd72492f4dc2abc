//! Weight-reading kernels (matvec, matmul, embed) for every GGUF weight type,
//! against the CPU dequantizer and f64 references; plus the dequantizer
//! itself against hand-computed blocks.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::Kernel;
use wgkv::ops::Step;
use wgkv::ops::linear::{self as ops, Enc, MATMUL_CPU, MATMUL_GPU, MATMUL_ROWS_CPU, MATVEC_CPU, MATVEC_GPU, MatmulShape, MatvecShape};
use wgkv::quant::{self, Layout, WType};
use wgkv::reference::linear as reference;

/// f32 dot products of up to 1536 terms (|w|, |x| <= 1) against the f64
/// reference: the f32 sum's rounding error grows with sqrt(terms) * 2^-24 *
/// sum|w x| (~1536 * 0.25 = 400 here), i.e. a few 1e-5 typical and 1e-4 rare;
/// 3e-4 absolute leaves margin without hiding a wrong weight (>= 1e-2).
const F32_DOT: Tol = Tol { name: "f32-dot", abs: 3e-4, rel: 1e-4 };
/// Dequantized values: `q * d + m` (Q4_1, Q5_1 and the K-quants with mins)
/// may be contracted into one fma on the GPU, which rounds once instead of
/// twice: at most one ulp.
const FMA_ULP: Tol = Tol { name: "fma-ulp", abs: 1e-7, rel: 2.4e-7 };

fn dequant_tol(w: WType) -> Tol {
    if matches!(w, WType::Q4_1 | WType::Q5_1 | WType::Q2_K | WType::Q4_K | WType::Q5_K) { FMA_ULP } else { EXACT }
}

/// Random `[rows, cols]` weights in [-1, 1] encoded as `w`, and their exact dequantization.
fn weights(rng: &mut Rng, w: WType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let bytes = quant::quantize(w, &rng.vec(rows * cols, -1.0, 1.0));
    let deq = quant::dequantize(w, &bytes, rows * cols).unwrap();
    (bytes, deq)
}

fn step(g: &Gpu, n_tokens: u32) -> wgpu::Buffer {
    g.uniform("step", bytemuck::bytes_of(&Step { pos: 0, n_tokens, kv_len: n_tokens, _pad: 0 }))
}

/// `rows` rows of `cols` values laid out at the kernels' input stride,
/// padded with NaN, which must not leak into any result.
/// A matvec's input `x` (`cols` floats), padded: in a storage buffer, or
/// (`uniform`) in an activations buffer of at least `X_UNIFORM_BYTES`, NaN
/// past the row, which CPU adapters' matvec binds as a uniform.
fn matvec_x(g: &Gpu, x: &[f32], cols: usize, uniform: bool) -> wgpu::Buffer {
    let mut v = padded(x, cols);
    if !uniform {
        return upload_f32(g, "x", &v);
    }
    v.resize(v.len().max(ops::X_UNIFORM_BYTES as usize / 4), f32::NAN);
    let b = g.activations("x", 4 * v.len() as u64);
    g.write(&b, 0, bytemuck::cast_slice(&v));
    b
}

fn padded(x: &[f32], cols: usize) -> Vec<f32> {
    let stride = ops::x_stride(cols as u32) as usize;
    let mut out = vec![f32::NAN; x.len() / cols * stride];
    for (o, r) in out.chunks_exact_mut(stride).zip(x.chunks_exact(cols)) {
        o[..cols].copy_from_slice(r);
    }
    out
}

/// An output buffer pre-filled with `init` (then guard words), for ACCUM runs.
fn guarded_with(g: &Gpu, init: &[f32]) -> wgpu::Buffer {
    let mut words: Vec<u32> = init.iter().map(|v| v.to_bits()).collect();
    words.extend(std::iter::repeat_n(GUARD, GUARD_WORDS));
    g.upload("y", bytemuck::cast_slice(&words))
}

/// Row lengths each type can have in the tests: the model's 576 and 1536,
/// and, for float types, lengths that are not whole 32-weight chunks.
fn col_choices(w: WType) -> &'static [usize] {
    match w {
        WType::F32 | WType::F16 | WType::BF16 => &[33, 100, 576],
        WType::Q8_0 | WType::Q4_0 | WType::Q4_1 | WType::Q5_0 | WType::Q5_1 => &[32, 576, 1536],
        WType::Q2_K | WType::Q3_K | WType::Q4_K | WType::Q5_K | WType::Q6_K => &[256, 768, 1536],
    }
}

// ---------------------------------------------------------------- CPU dequantizer

/// One block's bytes and (weight index, hand-computed value) pairs.
type KnownBlock = (WType, Vec<u8>, Vec<(usize, f32)>);

/// Hand-built blocks with values computed by hand from ggml's formulas.
fn known_blocks() -> Vec<KnownBlock> {
    let mut v: Vec<KnownBlock> = vec![
        (WType::F32, 1.5f32.to_le_bytes().to_vec(), vec![(0, 1.5)]),
        (WType::F16, vec![0x00, 0xC0], vec![(0, -2.0)]),
        (WType::F16, vec![0x01, 0x00], vec![(0, 2f32.powi(-24))]), // smallest subnormal
        (WType::F16, vec![0x00, 0x7C], vec![(0, f32::INFINITY)]),
        (WType::BF16, vec![0xC0, 0x3F], vec![(0, 1.5)]),
        (WType::BF16, vec![0x00, 0xC1], vec![(0, -8.0)]),
    ];

    // Q8_0: d = 0.5 (f16 0x3800); q = 4, -128, 127.
    let mut b = vec![0u8; 34];
    b[..2].copy_from_slice(&[0x00, 0x38]);
    b[2] = 4;
    b[3] = 0x80;
    b[33] = 127;
    v.push((WType::Q8_0, b, vec![(0, 2.0), (1, -64.0), (2, 0.0), (31, 63.5)]));

    // Q4_0: d = 2.0 (0x4000); byte 0 = 0x1F: w0 = (15-8)*2, w16 = (1-8)*2;
    // byte 15 = 0x80: w15 = (0-8)*2, w31 = (8-8)*2.
    let mut b = vec![0u8; 18];
    b[..2].copy_from_slice(&[0x00, 0x40]);
    b[2] = 0x1F;
    b[17] = 0x80;
    v.push((WType::Q4_0, b, vec![(0, 14.0), (16, -14.0), (15, -16.0), (31, 0.0), (1, -16.0)]));

    // Q4_1: d = 0.5, m = -1.0 (0xBC00); byte 0 = 0x3A: w0 = 10*0.5-1, w16 = 3*0.5-1.
    let mut b = vec![0u8; 20];
    b[..4].copy_from_slice(&[0x00, 0x38, 0x00, 0xBC]);
    b[4] = 0x3A;
    v.push((WType::Q4_1, b, vec![(0, 4.0), (16, 0.5), (1, -1.0)]));

    // Q4_K: d = 1.0, dmin = 0.5. Sub-block 0: scale 3, min 2 (low 6 bits of
    // s[0], s[4]). Sub-block 5: scale 37 = 0b10_0101 (low 4 bits in s[9] low
    // nibble, top 2 in s[1] bits 6-7), min 19 = 0b01_0011 (low 4 in s[9] high
    // nibble, top 2 in s[5] bits 6-7). Sub-block 1 gets scale 0, min 0.
    // qs[0] = 7 -> w0 = 3*7 - 0.5*2; sub-block 5 is pair 2's high nibbles:
    // qs[64 + 1] = 0xA0 -> w161 = 37*10 - 0.5*19, w160 = -9.5.
    let mut b = vec![0u8; 144];
    b[..4].copy_from_slice(&[0x00, 0x3C, 0x00, 0x38]);
    let s = &mut b[4..16];
    s[0] = 3;
    s[4] = 2;
    s[9] = 0x35;
    s[1] = 0x80;
    s[5] = 0x40;
    b[16] = 0x07;
    b[16 + 65] = 0xA0;
    v.push((WType::Q4_K, b, vec![(0, 20.0), (1, -1.0), (40, 0.0), (160, -9.5), (161, 360.5)]));

    // Q6_K: d = 0.5 (at byte 208), scales[0] = 2, scales[5] = -3, scales[15] = 127.
    // w0: ql[0] = 5, qh[0] bits 0-1 = 2 -> q = 37 - 32 = 5 -> 0.5*2*5.
    // w81 (n 0, j 2, l 17): ql[17] high nibble 12, qh[17] bits 4-5 = 3 -> q = 60 - 32 -> 0.5*-3*28.
    // w255 (n 1, j 3, l 31): ql[127] high nibble 15, qh[63] bits 6-7 = 3 -> 31 -> 0.5*127*31.
    let mut b = vec![0u8; 210];
    b[208..].copy_from_slice(&[0x00, 0x38]);
    b[192] = 2;
    b[197] = (-3i8) as u8;
    b[207] = 127;
    b[0] = 0x05;
    b[128] = 0x02;
    b[17] = 0xC0;
    b[128 + 17] = 0x30;
    b[127] = 0xF0;
    b[128 + 63] = 0xC0;
    v.push((WType::Q6_K, b, vec![(0, 5.0), (81, -42.0), (255, 1968.5), (17, 0.0), (1, -32.0)]));

    // Q5_0: d = 0.5, qh = bits 0, 17 and 31 (bytes 2..6), nibbles from byte 6.
    // w0: nibble 10 | 16 -> (26-16)*0.5; w16: 3 -> (3-16)*0.5; w1: 15 -> -0.5;
    // w17: 0 | 16 -> 0; w15: 0 -> -8; w31: 15 | 16 -> 7.5; w2: 0 -> -8.
    let mut b = vec![0u8; 22];
    b[..6].copy_from_slice(&[0x00, 0x38, 0x01, 0x00, 0x02, 0x80]);
    b[6] = 0x3A;
    b[7] = 0x0F;
    b[21] = 0xF0;
    v.push((WType::Q5_0, b, vec![(0, 5.0), (16, -6.5), (1, -0.5), (17, 0.0), (15, -8.0), (31, 7.5), (2, -8.0)]));

    // Q5_1: d = 0.25 (0x3400), m = -2.0 (0xC000), qh = bits 3 and 20 (bytes
    // 4..8), nibbles from byte 8. w3: 12 | 16 -> 28*0.25-2; w19: 5 -> -0.75;
    // w4: 7 -> -0.25; w20: 0 | 16 -> 2.0; w0: 0 -> -2.0.
    let mut b = vec![0u8; 24];
    b[..8].copy_from_slice(&[0x00, 0x34, 0x00, 0xC0, 0x08, 0x00, 0x10, 0x00]);
    b[8 + 3] = 0x5C;
    b[8 + 4] = 0x07;
    v.push((WType::Q5_1, b, vec![(3, 5.0), (19, -0.75), (4, -0.25), (20, 2.0), (0, -2.0)]));

    // Q2_K: d = 0.5 (byte 80), dmin = 0.25 (byte 82); scale bytes 0..16 (low
    // nibble scale, high min), quants from byte 16. qs[0] = 0b10_01_10_11
    // gives q = 3, 2, 1, 2 to w0, w32, w64, w96 (groups 0, 2, 4, 6).
    // w0: 0.5*3*3 - 0.25*2; w32: 0.5*1*2 - 0.25*15; w64: group 4 all zero;
    // w96: 0.5*15*2; w1: q 0 -> -0.25*2; w16: group 1 (scale 0, min 5);
    // w255 (qs[63] bits 6-7 = 3, group 15 = 0xFF): 0.5*15*3 - 0.25*15.
    let mut b = vec![0u8; 84];
    b[80..].copy_from_slice(&[0x00, 0x38, 0x00, 0x34]);
    b[0] = 0x23;
    b[1] = 0x50;
    b[2] = 0xF1;
    b[6] = 0x0F;
    b[15] = 0xFF;
    b[16] = 0x9B;
    b[16 + 63] = 0xC0;
    v.push((WType::Q2_K, b, vec![(0, 4.0), (32, -2.75), (64, 0.0), (96, 15.0), (1, -0.5), (16, -1.25), (255, 18.75)]));

    // Q3_K: hmask bytes 0..32, quants from byte 32, scales s = bytes 96..108,
    // d = 2.0 (byte 108). Scale i = (low nibble of s[i] (i < 8) or high
    // nibble of s[i-8]) | ((s[8 + i%4] >> 2(i/4)) & 3) << 4, minus 32:
    // group 0 = 1 | 2<<4 = 33 -> 1; group 8 = 8 | 2<<4 = 40 -> 8; group 9 =
    // 15 | 3<<4 = 63 -> 31; group 15 = 5 | 2<<4 = 37 -> 5; group 6 (all zero
    // bits) -> -32. q = ((qs >> 2j) & 3) - 4, + 4 when hmask bit 4n+j is set.
    // w0: low 2, hmask[0] bit 0 -> q 2 -> 2*1*2; w1: q -4 -> -8;
    // w128 (n 1): low 1, hmask[0] bit 4 -> 1 -> 2*8*1; w144 (n 1, l 16,
    // group 9): low 3, no high bit -> -1 -> -62; w96 (j 3): low 3 -> -1 ->
    // 2*-32*-1; w100: q -4 -> 256; w255: low 3, hmask[31] bit 7 -> 3 -> 2*5*3.
    let mut b = vec![0u8; 110];
    b[0] = 0x11;
    b[31] = 0x80;
    b[32] = 0xC2;
    b[64] = 0x01;
    b[80] = 0x03;
    b[95] = 0xC0;
    for (k, v) in [(0, 0x81), (1, 0xF0), (7, 0x50), (8, 0x22), (9, 0x30), (11, 0x80)] {
        b[96 + k] = v;
    }
    b[108..].copy_from_slice(&[0x00, 0x40]);
    v.push((WType::Q3_K, b, vec![(0, 4.0), (1, -8.0), (128, 16.0), (144, -62.0), (96, 64.0), (100, 256.0), (255, 30.0)]));

    // Q5_K: d = 1.0, dmin = 0.5, 6-bit (scale, min) pairs packed as Q4_K's
    // (bytes 4..16): sub-block 0 (3, 2), 5 (37, 19), 7: scale 1 | 3<<4 = 49
    // (s[11] low nibble, s[3] bits 6-7), min 2 (s[11] high nibble).
    // qh bytes 16..48 (bit j of byte l for weight 32j + l), nibbles from 48.
    // w0: 7 | 16 -> 3*23 - 1; w1: -1; w160: -9.5; w161 (pair 2 high
    // nibble 10, qh[1] bit 5) -> 37*26 - 9.5; w40: sub-block 1 is zero;
    // w255: 15 | 16 -> 49*31 - 0.5*2.
    let mut b = vec![0u8; 176];
    b[..4].copy_from_slice(&[0x00, 0x3C, 0x00, 0x38]);
    for (k, v) in [(0, 3), (4, 2), (9, 0x35), (1, 0x80), (5, 0x40), (11, 0x21), (3, 0xC0)] {
        b[4 + k] = v;
    }
    b[16] = 0x01;
    b[17] = 0x20;
    b[47] = 0x80;
    b[48] = 0x07;
    b[48 + 65] = 0xA0;
    b[175] = 0xF0;
    v.push((WType::Q5_K, b, vec![(0, 68.0), (1, -1.0), (160, -9.5), (161, 952.5), (40, 0.0), (255, 1518.0)]));
    v
}

#[test]
fn dequantize_matches_hand_computed_blocks() {
    for (w, bytes, want) in known_blocks() {
        let got = quant::dequantize(w, &bytes, w.block_elems()).unwrap();
        for (i, v) in want {
            assert_eq!(got[i], v, "{} weight {i}", w.name());
        }
    }
}

#[test]
fn dequantize_checks_sizes_and_row_access() {
    let w = WType::Q8_0;
    assert!(quant::dequantize(w, &[0; 34], 16).is_err(), "partial block accepted");
    assert!(quant::dequantize(w, &[0; 33], 32).is_err(), "short buffer accepted");
    assert!(quant::check_shape(WType::Q4_K, 4, 576).is_err());
    assert!(quant::check_shape(WType::Q4_1, 0, 576).is_err());
    assert!(quant::check_shape(WType::F16, 3, 33).is_ok());
    let mut rng = Rng::new(3);
    let (bytes, deq) = weights(&mut rng, w, 5, 64);
    assert_eq!(quant::dequant_row(w, &bytes, 64, 3).unwrap(), deq[3 * 64..4 * 64]);
    assert!(quant::dequant_row(w, &bytes, 64, 5).is_err());
}

#[test]
fn non_finite_scales_are_found() {
    // The loader refuses weights that are not finite by looking at each
    // block's f16 scales only: an Inf or NaN in any scale field of any
    // quantized type is found in the block that holds it, and finite ones are not.
    let mut rng = Rng::new(23);
    for &w in WType::ALL.iter().filter(|w| w.block_elems() > 1) {
        let bytes = quant::quantize(w, &rng.vec(4 * w.block_elems(), -1.0, 1.0));
        assert_eq!(quant::first_non_finite_block(w, &bytes), None, "{}", w.name());
        for &at in scale_fields(w) {
            for bad in [0x7C00u16, 0xFE00] {
                let mut b = bytes.clone();
                let at = 2 * w.block_bytes() + at;
                b[at..at + 2].copy_from_slice(&bad.to_le_bytes());
                assert_eq!(quant::first_non_finite_block(w, &b), Some(2), "{} scale at byte {at} = {bad:#x}", w.name());
            }
        }
    }
}

#[test]
fn quantizers_round_trip_within_their_step() {
    // Each quantizer must reproduce its input to within about one quantization step.
    let bound = |w: WType| match w {
        WType::F32 => 0.0,
        WType::F16 => 1e-3,
        WType::BF16 => 8e-3,
        WType::Q8_0 => 1.0 / 127.0,
        WType::Q6_K | WType::Q5_0 | WType::Q5_1 => 2.0 / 31.0,
        WType::Q5_K => 2.0 / 31.0 + 0.02,
        WType::Q4_0 | WType::Q4_1 | WType::Q4_K => 2.0 / 15.0 + 0.02,
        WType::Q3_K => 2.0 / 7.0 + 0.02,
        WType::Q2_K => 2.0 / 3.0,
    };
    let mut rng = Rng::new(4);
    for &w in WType::ALL {
        let x = rng.vec(1024, -1.0, 1.0);
        let bytes = quant::quantize(w, &x);
        assert_eq!(bytes.len(), w.row_bytes(1024));
        let y = quant::dequantize(w, &bytes, 1024).unwrap();
        let worst = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= bound(w), "{}: round-trip error {worst} > {}", w.name(), bound(w));
    }
}

// ---------------------------------------------------------------- embed

#[test]
fn embed_decodes_hand_computed_blocks_exactly() {
    for g in contexts() {
        for (w, bytes, want) in known_blocks() {
            let dim = w.block_elems().max(32);
            // A block type with one element per block: repeat it to fill a 32-wide row.
            let row: Vec<u8> = if w.block_elems() == 1 { bytes.repeat(dim) } else { bytes.clone() };
            let table = g.upload("table", &row);
            let ids = g.upload("ids", bytemuck::cast_slice(&[0u32]));
            let out = poisoned(&g, "out", dim);
            let st = step(&g, 1);
            let d = ops::embed(&g, w, &table, &ids, &out, &st, 1, dim as u32, 1);
            assert_eq!(d.kernel, Kernel::Embed);
            g.run(&[&d]);
            let got = read_guarded_f32(&g, &out, dim);
            for (i, v) in want {
                let i = if w.block_elems() == 1 { 0 } else { i };
                assert_eq!(got[i], v, "{} weight {i} on {}", w.name(), label(&g));
            }
        }
    }
}

#[test]
fn embed_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(5);
        for &w in WType::ALL {
            for &dim in col_choices(w) {
                let vocab = 37;
                let (bytes, deq) = weights(&mut rng, w, vocab, dim);
                let table = g.upload("table", &bytes);
                // 7 ids, one out of range; the step asks for only the first 6 of 8 slots.
                let ids: Vec<u32> = vec![0, 36, 5, 5, 1000, 17, 2, 3];
                let idb = g.upload("ids", bytemuck::cast_slice(&ids));
                let n = 6;
                let out = poisoned(&g, "out", ids.len() * dim);
                let st = step(&g, n as u32);
                let d = ops::embed(&g, w, &table, &idb, &out, &st, vocab as u32, dim as u32, ids.len() as u32);
                assert_eq!(d.kernel, Kernel::Embed);
                g.run(&[&d]);
                let got = read_guarded_f32(&g, &out, ids.len() * dim);
                let want = reference::embed(&deq, &ids[..n], dim);
                let what = format!("embed {} {vocab}x{dim} on {}", w.name(), label(&g));
                assert_close(&what, &got[..n * dim], &want, dequant_tol(w));
                assert!(got[n * dim..].iter().all(|v| v.to_bits() == GUARD), "{what}: wrote past step.n_tokens");
            }
        }
    }
}

#[test]
fn embed_real_vocab_q8_0() {
    // The model's token_embd: Q8_0, 49152 rows of 576, including the last row.
    let (vocab, dim) = (49152, 576);
    let mut rng = Rng::new(6);
    let (bytes, deq) = weights(&mut rng, WType::Q8_0, vocab, dim);
    let ids: Vec<u32> = vec![1, 49151, 0, 30000, 2, 49152];
    for g in contexts() {
        let table = g.upload("table", &bytes);
        let idb = g.upload("ids", bytemuck::cast_slice(&ids));
        let out = poisoned(&g, "out", ids.len() * dim);
        let st = step(&g, ids.len() as u32);
        let d = ops::embed(&g, WType::Q8_0, &table, &idb, &out, &st, vocab as u32, dim as u32, ids.len() as u32);
        assert_eq!(d.kernel, Kernel::Embed);
        g.run(&[&d]);
        let got = read_guarded_f32(&g, &out, ids.len() * dim);
        assert_close(&format!("embed Q8_0 {vocab}x{dim} on {}", label(&g)), &got, &reference::embed(&deq, &ids, dim), EXACT);
    }
}

// ---------------------------------------------------------------- matvec

fn check_matvec(g: &Gpu, shape: MatvecShape, w: WType, rows: usize, cols: usize, accum: bool, rng: &mut Rng) {
    check_matvec_split(g, shape, w.into(), rows, cols, rows, accum, rng)
}

/// The matrix's rows uploaded as blocks of `per` rows (one buffer and one
/// dispatch each, as the model splits a weight above the binding limit).
/// Each block is arranged in `layout` as the model uploads it.
fn row_blocks(g: &Gpu, w: Enc, bytes: &[u8], rows: usize, cols: usize, per: usize) -> Vec<(wgpu::Buffer, ops::Rows)> {
    let rb = w.wtype.row_bytes(cols);
    ops::Rows::split(rows as u32, per as u32)
        .into_iter()
        .map(|r| (g.upload("w", &w.wtype.arrange(&bytes[r.first as usize * rb..(r.first + r.count) as usize * rb], cols, w.layout)), r))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check_matvec_split(g: &Gpu, shape: MatvecShape, w: Enc, rows: usize, cols: usize, per: usize, accum: bool, rng: &mut Rng) {
    let (bytes, deq) = weights(rng, w.wtype, rows, cols);
    let x = rng.vec(cols, -1.0, 1.0);
    let init = rng.vec(rows, -1.0, 1.0);
    let blocks = row_blocks(g, w, &bytes, rows, cols, per);
    // Even row counts read x as a uniform where the shape does, odd ones from storage.
    let xb = matvec_x(g, &x, cols, rows.is_multiple_of(2));
    let yb = if accum { guarded_with(g, &init) } else { poisoned(g, "y", rows) };
    let ds: Vec<_> = blocks.iter().map(|(wb, r)| ops::matvec_with(g, shape, w, wb, &xb, &yb, *r, cols as u32, accum)).collect();
    assert!(ds.iter().all(|d| d.kernel == Kernel::Matvec));
    g.run(&ds.iter().collect::<Vec<_>>());
    let got = read_guarded_f32(g, &yb, rows);
    let want = reference::matvec(&deq, &x, rows, cols, accum.then_some(&init[..]));
    let what = format!("matvec {} {:?} {rows}x{cols} in blocks of {per} accum={accum} {shape:?} on {}", w.wtype.name(), w.layout, label(g));
    assert_close(&what, &got, &want, F32_DOT);
}

#[test]
fn matvec_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(7);
        for &w in WType::ALL {
            for shape in [MATVEC_CPU, MATVEC_GPU] {
                // Awkward row counts (1, 7, 100, 193) over every row length of the type.
                for &cols in col_choices(w) {
                    for &rows in &[1, 7, 100, 193] {
                        check_matvec(&g, shape, w, rows, cols, rows == 7, &mut rng);
                    }
                }
                // The model's projections (K-quants need whole 256-blocks: 576 x 1536 only).
                let model: &[(usize, usize)] = match w.block_elems() {
                    256 => &[(576, 1536)],
                    _ => &[(576, 576), (192, 576), (1536, 576), (576, 1536)],
                };
                for &(rows, cols) in model {
                    check_matvec(&g, shape, w, rows, cols, false, &mut rng);
                    check_matvec(&g, shape, w, rows, cols, true, &mut rng);
                }
            }
        }
    }
}

/// Byte offsets of the f16 scales in one block of each quantized type, from
/// ggml's block layouts (d first, then dmin or m where the type has one).
fn scale_fields(w: WType) -> &'static [usize] {
    match w {
        WType::Q8_0 | WType::Q4_0 | WType::Q5_0 => &[0],
        WType::Q4_1 | WType::Q5_1 | WType::Q4_K | WType::Q5_K => &[0, 2],
        WType::Q2_K => &[80, 82],
        WType::Q3_K => &[108],
        WType::Q6_K => &[208],
        WType::F32 | WType::F16 | WType::BF16 => &[],
    }
}

/// f16 scales at the edges of the format: the largest finite, the smallest
/// subnormal, the largest subnormal, the smallest normal, zeros and
/// negatives (a file's dmin or Q3_K's d may be negative), and plain values.
const EXTREME_SCALES: [u16; 10] = [0x7BFF, 0xFBFF, 0x0001, 0x03FF, 0x0400, 0x0000, 0x8000, 0x3C00, 0xBE00, 0x2E66];

/// `rows x cols` weights of type `w` made of random bytes (every quant and
/// packed-scale bit pattern) with each block's f16 scales taken from
/// `EXTREME_SCALES`, varying between blocks and fields; and their CPU dequantization.
fn extreme_weights(rng: &mut Rng, w: WType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = rng.bytes(rows * w.row_bytes(cols));
    for (k, block) in bytes.chunks_exact_mut(w.block_bytes()).enumerate() {
        for (f, &at) in scale_fields(w).iter().enumerate() {
            let h = EXTREME_SCALES[(3 * k + 7 * f) % EXTREME_SCALES.len()];
            block[at..at + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    let deq = quant::dequantize(w, &bytes, rows * cols).unwrap();
    assert!(deq.iter().all(|v| v.is_finite()), "{}: extreme weights are not finite", w.name());
    (bytes, deq)
}

/// Each `got[i]` within `rel * mag[i]` of `want[i]`, where `mag[i]` is the
/// sum of the magnitudes of the products behind output i: the f32
/// rounding of a dot product scales with it, not with the (possibly
/// cancelled) result.
fn assert_within_magnitude(what: &str, got: &[f32], want: &[f32], mag: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let lim = rel * m + f32::MIN_POSITIVE;
        assert!((g - w).abs() <= lim, "{what}: [{i}] got {g} want {w} (err {:e}, allowed {lim:e})", (g - w).abs());
    }
}

/// Dot products over extreme weights (magnitudes up to 65504 * 63 * 31):
/// an f32 sum of n terms errs by at most (n - 1) * 2^-24 of the sum of the
/// terms' magnitudes, 3e-5 for 512 (lavapipe and llvmpipe stay near 1e-7),
/// while one wrong quant in a block of the row's largest scale moves it by
/// more than 1e-4 of that sum.
const EXTREME_DOT: f32 = 3e-5;

#[test]
fn extreme_scales_match_the_cpu_dequantizer() {
    // Random blocks of every quantized type with scales at the edges of f16,
    // through embed (exact decode), matvec (the dot32 shortcuts) and matmul.
    for g in contexts() {
        let mut rng = Rng::new(22);
        for &w in WType::ALL.iter().filter(|w| w.block_elems() > 1) {
            let (rows, cols) = (13, 2 * w.block_elems());
            let (bytes, deq) = extreme_weights(&mut rng, w, rows, cols);
            let wb = g.upload("w", &bytes);
            let what = |op: &str| format!("{op} {} {rows}x{cols} extreme scales on {}", w.name(), label(&g));

            let ids: Vec<u32> = (0..rows as u32).rev().collect();
            let idb = g.upload("ids", bytemuck::cast_slice(&ids));
            let out = poisoned(&g, "out", rows * cols);
            let st = step(&g, rows as u32);
            g.run(&[&ops::embed(&g, w, &wb, &idb, &out, &st, rows as u32, cols as u32, rows as u32)]);
            assert_close(&what("embed"), &read_guarded_f32(&g, &out, rows * cols), &reference::embed(&deq, &ids, cols), dequant_tol(w));

            let tokens = 3;
            let x = rng.vec(tokens * cols, -1.0, 1.0);
            let xb = upload_f32(&g, "x", &padded(&x, cols));
            let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
            let (wabs, xabs) = (abs(&deq), abs(&x));
            for shape in [MATVEC_CPU, MATVEC_GPU] {
                let y = poisoned(&g, "y", rows);
                g.run(&[&ops::matvec_with(&g, shape, w, &wb, &xb, &y, ops::Rows::all(rows as u32), cols as u32, false)]);
                let want = reference::matvec(&deq, &x[..cols], rows, cols, None);
                let mag = reference::matvec(&wabs, &xabs[..cols], rows, cols, None);
                assert_within_magnitude(&format!("{} {shape:?}", what("matvec")), &read_guarded_f32(&g, &y, rows), &want, &mag, EXTREME_DOT);
            }
            let y = poisoned(&g, "y", tokens * rows);
            let st = step(&g, tokens as u32);
            g.run(&[&ops::matmul(&g, w, &wb, &xb, &y, &st, rows as u32, cols as u32, tokens as u32, false)]);
            let want = reference::matmul(&deq, &x, rows, cols, tokens, None);
            let mag = reference::matmul(&wabs, &xabs, rows, cols, tokens, None);
            assert_within_magnitude(&what("matmul"), &read_guarded_f32(&g, &y, tokens * rows), &want, &mag, EXTREME_DOT);
        }
    }
}

#[test]
fn matvec_lm_head_q8_0() {
    // The tied output projection: 49152 rows of Q8_0 576.
    for g in contexts() {
        let mut rng = Rng::new(8);
        for shape in [MATVEC_CPU, MATVEC_GPU] {
            check_matvec(&g, shape, WType::Q8_0, 49152, 576, false, &mut rng);
        }
    }
}

// ---------------------------------------------------------------- matmul

/// `tokens` valid tokens (the Step) in buffers sized for `cap` tokens.
#[allow(clippy::too_many_arguments)]
fn check_matmul(g: &Gpu, shape: MatmulShape, w: WType, rows: usize, cols: usize, tokens: usize, cap: usize, accum: bool, rng: &mut Rng) {
    check_matmul_split(g, shape, w.into(), [rows, cols, rows], tokens, cap, accum, rng)
}

/// `check_matmul` with the weight in blocks of `per` rows (`[rows, cols, per]`).
#[allow(clippy::too_many_arguments)]
fn check_matmul_split(g: &Gpu, shape: MatmulShape, w: Enc, dims: [usize; 3], tokens: usize, cap: usize, accum: bool, rng: &mut Rng) {
    check_matmul_in(g, shape, w, dims, tokens, cap, accum, false, rng);
}

/// `check_matmul_split` with the input in a storage buffer or (`uniform`)
/// an activations buffer, which `matmul_rows` binds as a uniform where the
/// call's inputs fit one. Returns the outputs.
#[allow(clippy::too_many_arguments)]
fn check_matmul_in(
    g: &Gpu,
    shape: MatmulShape,
    w: Enc,
    [rows, cols, per]: [usize; 3],
    tokens: usize,
    cap: usize,
    accum: bool,
    uniform: bool,
    rng: &mut Rng,
) -> Vec<f32> {
    let (bytes, deq) = weights(rng, w.wtype, rows, cols);
    let x = rng.vec(cap * cols, -1.0, 1.0);
    let init = rng.vec(cap * rows, -1.0, 1.0);
    let blocks = row_blocks(g, w, &bytes, rows, cols, per);
    let xb = matvec_x(g, &x, cols, uniform);
    let yb = if accum { guarded_with(g, &init) } else { poisoned(g, "y", cap * rows) };
    let st = step(g, tokens as u32);
    let ds: Vec<_> = blocks.iter().map(|(wb, r)| ops::matmul_with(g, shape, w, wb, &xb, &yb, &st, *r, cols as u32, cap as u32, accum)).collect();
    assert!(ds.iter().all(|d| d.kernel == shape.kernel && matches!(d.kernel, Kernel::Matmul | Kernel::MatmulLanes | Kernel::MatmulRows | Kernel::MatmulWords)));
    g.run(&ds.iter().collect::<Vec<_>>());
    let got = read_guarded_f32(g, &yb, cap * rows);
    let want = reference::matmul(&deq, &x, rows, cols, tokens, accum.then_some(&init[..]));
    let what =
        format!("matmul {} {:?} {rows}x{cols} in blocks of {per} tokens {tokens}/{cap} accum={accum} {shape:?} on {}", w.wtype.name(), w.layout, label(g));
    assert_close(&what, &got[..tokens * rows], &want, F32_DOT);
    // Tokens past step.n_tokens are untouched.
    let rest = &got[tokens * rows..];
    let untouched = if accum { rest.iter().zip(&init[tokens * rows..]).all(|(a, b)| a == b) } else { rest.iter().all(|v| v.to_bits() == GUARD) };
    assert!(untouched, "{what}: wrote tokens past step.n_tokens");
    got
}

#[test]
fn matmul_rows_matches_reference() {
    // The kernel of short calls (CPU adapters' choice up to FEW_TOKENS
    // tokens): rows past its 128-row tiles and below one, tokens below, at
    // and past its 8-token workgroups, fewer tokens than the buffers hold,
    // inputs in storage and as a uniform, row blocks; every type in the
    // layout CPU adapters upload it in on the first adapter, two types on
    // the others (each pipeline takes lavapipe seconds to build). Same
    // inputs through matmul_lanes give the same sums.
    for (i, g) in contexts().into_iter().enumerate() {
        for &wt in WType::ALL.iter().filter(|&&w| i == 0 || w == WType::Q4_1 || w == WType::F16) {
            let cols = col_choices(wt);
            let last = *cols.last().unwrap();
            let layout = if wt.split_parts().is_some() { Layout::Split } else { Layout::Gguf };
            let w = Enc { wtype: wt, layout };
            for (dims, tokens, cap, accum, uniform) in [
                ([100, cols[0], 100], 7, 8, false, true),
                ([193, cols[1], 64], 9, 16, true, false),
                ([129, last, 129], 1, 1, false, true),
                ([7, cols[0], 7], 16, 16, true, true),
            ] {
                let rows_sums = check_matmul_in(&g, MATMUL_ROWS_CPU, w, dims, tokens, cap, accum, uniform, &mut Rng::new(29));
                let lanes_sums = check_matmul_in(&g, MATMUL_CPU, w, dims, tokens, cap, accum, uniform, &mut Rng::new(29));
                let same = rows_sums.iter().zip(&lanes_sums).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "matmul_rows and matmul_lanes differ: {} {layout:?} {dims:?} tokens {tokens}/{cap} on {}", wt.name(), label(&g));
            }
        }
    }
}

#[test]
fn matmul_words_matches_reference() {
    // The batched decode step's kernel (Q4_1 and Q8_0, split layout): the
    // shapes `words_shape` picks (16 rows per invocation up to 8 tokens, 8
    // beyond), and one of 4 tokens per workgroup over 9 (three workgroups
    // of tokens); rows past and below its tiles, fewer tokens than the
    // buffers hold, inputs in storage and as a uniform, row blocks.
    for g in contexts() {
        for wtype in ops::WORDS_TYPES {
            let w = Enc { wtype, layout: Layout::Split };
            let cols = col_choices(wtype);
            let last = *cols.last().unwrap();
            let words = |n: u32| ops::words_shape(&g, w, n);
            assert!(words(1).is_none() && words(17).is_none() && ops::words_shape(&g, Enc { wtype, layout: Layout::Gguf }, 8).is_none());
            if !g.caps.cpu {
                assert!(words(8).is_none(), "matmul_words is for CPU adapters");
                continue;
            }
            let four = MatmulShape { kernel: Kernel::MatmulWords, tile_rows: 64, tile_tokens: 4, tokens_per_thread: 4 };
            for (shape, dims, tokens, cap, accum, uniform) in [
                (words(8).unwrap(), [100, cols[0], 100], 7, 8, false, true),
                (words(8).unwrap(), [193, cols[1], 64], 8, 8, true, false),
                (words(2).unwrap(), [129, last, 129], 2, 2, false, true),
                (words(16).unwrap(), [7, cols[0], 7], 16, 16, true, true),
                (words(13).unwrap(), [300, last, 150], 12, 13, false, false),
                (four, [77, cols[1], 77], 9, 9, true, true),
            ] {
                check_matmul_in(&g, shape, w, dims, tokens, cap, accum, uniform, &mut Rng::new(31));
            }
        }
        assert!(ops::words_shape(&g, Enc { wtype: WType::Q4_K, layout: Layout::Split }, 8).is_none(), "other types take matmul_rows");
    }
}

#[test]
fn matmul_matches_reference() {
    for g in contexts() {
        let mut rng = Rng::new(9);
        let shape = MatmulShape::for_gpu(&g);
        for &w in WType::ALL {
            let cols = col_choices(w);
            // Awkward rows and token counts; a run with fewer tokens than the buffers hold.
            check_matmul(&g, shape, w, 100, cols[0], 7, 7, false, &mut rng);
            check_matmul(&g, shape, w, 193, cols[1], 33, 40, true, &mut rng);
            check_matmul(&g, shape, w, 7, cols[2], 1, 1, false, &mut rng);
            check_matmul(&g, shape, w, 192, cols[1], 65, 65, true, &mut rng);
        }
    }
}

#[test]
fn split_weights_match_the_whole() {
    // A weight above the storage binding limit is uploaded as row blocks, one
    // dispatch each, writing one output: blocks of awkward sizes (1, 7, 64,
    // 100 of 193 rows) give the unsplit reference.
    for g in contexts() {
        let mut rng = Rng::new(19);
        for &w in &[WType::Q8_0, WType::Q4_1, WType::Q4_K, WType::F16] {
            let cols = *col_choices(w).last().unwrap();
            for per in [1, 7, 64, 100] {
                check_matvec_split(&g, MatvecShape::for_gpu(&g), w.into(), 193, cols, per, per == 7, &mut rng);
                check_matmul_split(&g, MatmulShape::for_gpu(&g), w.into(), [193, cols, per], 33, 40, per == 64, &mut rng);
            }
        }
    }
}

#[test]
fn split_layout_matches_the_reference() {
    // Types with a split layout (quants apart from scales, rows padded to 16
    // bytes), as CPU adapters upload them: every kernel that reads weights,
    // both matvec shapes, awkward row counts, every row length of the type
    // (odd block counts leave padding), row blocks, and the model's shapes.
    for g in contexts() {
        let mut rng = Rng::new(23);
        for &wt in WType::ALL.iter().filter(|w| w.split_parts().is_some()) {
            let w = Enc { wtype: wt, layout: Layout::Split };
            for shape in [MATVEC_CPU, MATVEC_GPU] {
                for &cols in col_choices(wt) {
                    for &rows in &[1, 7, 100] {
                        check_matvec_split(&g, shape, w, rows, cols, rows, rows == 7, &mut rng);
                    }
                }
                // A model shape (K-quants need whole 256-blocks), and row blocks.
                let (mr, mc) = if wt.block_elems() == 256 { (576, 1536) } else { (1536, 576) };
                check_matvec_split(&g, shape, w, mr, mc, mr, true, &mut rng);
                check_matvec_split(&g, shape, w, 193, mc, 64, false, &mut rng);
            }
            let cols = col_choices(wt);
            check_matmul_split(&g, MatmulShape::for_gpu(&g), w, [100, cols[0], 100], 7, 7, false, &mut rng);
            check_matmul_split(&g, MatmulShape::for_gpu(&g), w, [193, cols[1], 64], 33, 40, true, &mut rng);
            check_matmul_split(&g, MatmulShape::for_gpu(&g), w, [576, *cols.last().unwrap(), 576], 65, 65, false, &mut rng);
            // Embedding rows from the split table, in row blocks, an id past the table.
            check_embed_blocks(&g, w, cols[0], &[0, 36, 9, 10, 1000, 19], &mut rng);
        }
    }
}

#[test]
fn split_layout_puts_each_part_in_place() {
    // Two rows of three Q4_1 blocks with distinct bytes: each row holds the
    // blocks' 16 quant bytes, then their 4 scale bytes, then zeros to 16 bytes.
    let (bb, cols) = (WType::Q4_1.block_bytes(), 96);
    let data: Vec<u8> = (0..2 * 3 * bb).map(|i| i as u8).collect();
    let out = WType::Q4_1.arrange(&data, cols, Layout::Split);
    assert_eq!(WType::Q4_1.row_bytes_in(cols, Layout::Split), 64);
    assert_eq!(out.len(), 128);
    for row in 0..2 {
        let (src, dst) = (&data[row * 60..], &out[row * 64..]);
        for b in 0..3 {
            assert_eq!(&dst[16 * b..16 * b + 16], &src[bb * b + 4..bb * b + 20], "row {row} block {b} quants");
            assert_eq!(&dst[48 + 4 * b..52 + 4 * b], &src[bb * b..bb * b + 4], "row {row} block {b} scales");
        }
        assert_eq!(&dst[60..64], &[0; 4], "row {row} padding");
    }
    // Q8_0: 32 quant bytes, then a 2-byte scale per block.
    let data: Vec<u8> = (0..34).map(|i| i as u8).collect();
    let out = WType::Q8_0.arrange(&data, 32, Layout::Split);
    assert_eq!((&out[..32], &out[32..34], out.len()), (&data[2..], &data[..2], 48));
    // Q5_0, two blocks of 22 bytes: nibbles (16 each), then qh words (4), then scales (2), then padding.
    let data: Vec<u8> = (0..44).map(|i| i as u8).collect();
    let out = WType::Q5_0.arrange(&data, 64, Layout::Split);
    assert_eq!(out.len(), 48);
    assert_eq!((&out[..16], &out[16..32]), (&data[6..22], &data[28..44]));
    assert_eq!((&out[32..36], &out[36..40]), (&data[2..6], &data[24..28]));
    assert_eq!((&out[40..42], &out[42..44], &out[44..]), (&data[..2], &data[22..24], &[0u8; 4][..]));
    // Types without a split layout, and the file's layout, are kept as they are.
    assert_eq!(WType::Q2_K.arrange(&data, 32, Layout::Split), data);
    assert_eq!(WType::Q8_0.arrange(&data, 32, Layout::Gguf), data);
}

/// A 37-row table of `dim` columns in blocks of 10 rows (arranged in `w`'s
/// layout), one embed dispatch per block, looking up `ids`: each block
/// writes its own ids, the first block zeros for an id past the table, and
/// the result equals the reference.
fn check_embed_blocks(g: &Gpu, w: Enc, dim: usize, ids: &[u32], rng: &mut Rng) {
    let vocab = 37;
    let (bytes, deq) = weights(rng, w.wtype, vocab, dim);
    let idb = g.upload("ids", bytemuck::cast_slice(ids));
    let out = poisoned(g, "out", ids.len() * dim);
    let st = step(g, ids.len() as u32);
    let blocks = row_blocks(g, w, &bytes, vocab, dim, 10);
    let ds: Vec<_> = blocks.iter().map(|(t, r)| ops::embed_rows(g, w, t, &idb, &out, &st, *r, dim as u32, ids.len() as u32)).collect();
    g.run(&ds.iter().collect::<Vec<_>>());
    let got = read_guarded_f32(g, &out, ids.len() * dim);
    let what = format!("embed {} {:?} {vocab}x{dim} in blocks of 10 on {}", w.wtype.name(), w.layout, label(g));
    assert_close(&what, &got, &reference::embed(&deq, ids, dim), dequant_tol(w.wtype));
}

#[test]
fn embed_from_row_blocks() {
    // The table in blocks of 10 of 37 rows: every token is written once.
    for g in contexts() {
        let mut rng = Rng::new(20);
        for &w in &[WType::Q8_0, WType::Q4_1, WType::F32] {
            check_embed_blocks(&g, w.into(), col_choices(w)[0], &[0, 36, 9, 10, 1000, 19, 20, 29, 30], &mut rng);
        }
    }
}

#[test]
fn matmul_other_tile() {
    // The tile of the other adapter class (8x8 register tiles on GPUs) on the
    // first context only: it shares the decoding with the default tile and
    // costs seconds of compile per pipeline on lavapipe. F16 with 33 columns
    // covers partial chunks, Q4_1 the model's type.
    if let Some(g) = contexts().into_iter().next() {
        let mut rng = Rng::new(11);
        let shape = if g.caps.cpu { MATMUL_GPU } else { MATMUL_CPU };
        check_matmul(&g, shape, WType::F16, 100, 33, 7, 9, false, &mut rng);
        check_matmul(&g, shape, WType::Q4_1, 193, 576, 130, 130, true, &mut rng);
        check_matmul(&g, shape, WType::Q4_1, 7, 576, 1, 1, false, &mut rng);
    }
}

#[test]
fn matmul_model_shapes() {
    // The model's own types at its projection shapes, with a full 512-token prefill and 513.
    for g in contexts() {
        let mut rng = Rng::new(10);
        let shape = MatmulShape::for_gpu(&g);
        for &(rows, cols) in &[(576, 576), (192, 576), (1536, 576), (576, 1536)] {
            check_matmul(&g, shape, WType::Q4_1, rows, cols, 33, 33, rows == 576, &mut rng);
        }
        check_matmul(&g, shape, WType::Q4_1, 1536, 576, 512, 512, false, &mut rng);
        check_matmul(&g, shape, WType::Q4_1, 576, 1536, 513, 513, true, &mut rng);
        check_matmul(&g, shape, WType::Q8_0, 576, 576, 513, 520, false, &mut rng);
    }
}

/// `y` holds `cap` tokens of `rows` outputs; the dispatch was built for
/// `cap` tokens and re-recorded with the grid `groups` for the first `n`.
/// Returns the tokens' outputs, after checking the guard words.
fn run_grid(g: &Gpu, d: &wgkv::kernels::Dispatch, groups: [u32; 3], y: &wgpu::Buffer, words: usize) -> Vec<f32> {
    let mut enc = g.encoder();
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        d.record_groups(&mut pass, groups);
    }
    g.submit(enc);
    read_guarded_f32(g, y, words)
}

/// The grids for fewer tokens than the buffers hold (`matmul_groups`,
/// `embed_groups`, for re-recording a dispatch): on every context, the grid
/// for `n` of `cap` tokens writes every output of the `n` tokens exactly
/// once (an ACCUM run adds each product once to its initial value) and
/// nothing past them, and it has no idle workgroups: one fewer along any
/// axis leaves some of the `n` tokens' outputs unwritten.
#[test]
fn reduced_grids_write_each_valid_output_once() {
    for g in contexts() {
        let mut rng = Rng::new(21);
        // Matmul: 100 rows (not a whole tile), token counts around a
        // workgroup's share of tokens.
        let shape = MatmulShape::for_gpu(&g);
        let (w, rows, cols) = (WType::Q4_1, 100usize, 64usize);
        let per = shape.tokens_per_group() as usize;
        let cap = 2 * per + 3;
        let (bytes, deq) = weights(&mut rng, w, rows, cols);
        let wb = g.upload("w", &bytes);
        let x = rng.vec(cap * cols, -1.0, 1.0);
        let xb = upload_f32(&g, "x", &padded(&x, cols));
        let init = rng.vec(cap * rows, -1.0, 1.0);
        for n in [1, per - 1, per, per + 1, cap] {
            let st = step(&g, n as u32);
            let groups = ops::matmul_groups(&g, rows as u32, n as u32);
            let what = format!("matmul grid {groups:?} for {n} of {cap} tokens, {rows} rows, on {}", label(&g));
            for accum in [false, true] {
                let y = if accum { guarded_with(&g, &init) } else { poisoned(&g, "y", cap * rows) };
                let d = ops::matmul(&g, w, &wb, &xb, &y, &st, rows as u32, cols as u32, cap as u32, accum);
                let got = run_grid(&g, &d, groups, &y, cap * rows);
                let want = reference::matmul(&deq, &x, rows, cols, n, accum.then_some(&init[..]));
                assert_close(&format!("{what} accum={accum}"), &got[..n * rows], &want, F32_DOT);
                let rest = &got[n * rows..];
                let untouched = if accum { rest.iter().zip(&init[n * rows..]).all(|(a, b)| a == b) } else { rest.iter().all(|v| v.to_bits() == GUARD) };
                assert!(untouched, "{what} accum={accum}: wrote past the valid tokens");
            }
            for axis in 0..3 {
                let mut less = groups;
                if less[axis] == 0 {
                    continue;
                }
                less[axis] -= 1;
                let y = poisoned(&g, "y", cap * rows);
                let d = ops::matmul(&g, w, &wb, &xb, &y, &st, rows as u32, cols as u32, cap as u32, false);
                let got = run_grid(&g, &d, less, &y, cap * rows);
                assert!(got[..n * rows].iter().any(|v| v.to_bits() == GUARD), "{what}: {less:?} writes them all: {groups:?} has idle workgroups");
            }
        }

        // Embed: the model's 576-wide rows (18 chunks of 32) for up to 9 tokens.
        let (vocab, dim, cap) = (37usize, 576usize, 9usize);
        let (bytes, deq) = weights(&mut rng, WType::Q8_0, vocab, dim);
        let table = g.upload("table", &bytes);
        let ids: Vec<u32> = (0..cap as u32).map(|i| (i * 7 + 3) % vocab as u32).collect();
        let idb = g.upload("ids", bytemuck::cast_slice(&ids));
        for n in 1..=cap {
            let st = step(&g, n as u32);
            let groups = ops::embed_groups(dim as u32, n as u32);
            let what = format!("embed grid {groups:?} for {n} of {cap} tokens of {dim} on {}", label(&g));
            let out = poisoned(&g, "out", cap * dim);
            let d = ops::embed(&g, WType::Q8_0, &table, &idb, &out, &st, vocab as u32, dim as u32, cap as u32);
            let got = run_grid(&g, &d, groups, &out, cap * dim);
            assert_close(&what, &got[..n * dim], &reference::embed(&deq, &ids[..n], dim), EXACT);
            assert!(got[n * dim..].iter().all(|v| v.to_bits() == GUARD), "{what}: wrote past the valid tokens");
            for axis in 0..3 {
                let mut less = groups;
                if less[axis] == 0 {
                    continue;
                }
                less[axis] -= 1;
                let out = poisoned(&g, "out", cap * dim);
                let d = ops::embed(&g, WType::Q8_0, &table, &idb, &out, &st, vocab as u32, dim as u32, cap as u32);
                let got = run_grid(&g, &d, less, &out, cap * dim);
                assert!(got[..n * dim].iter().any(|v| v.to_bits() == GUARD), "{what}: {less:?} writes them all: {groups:?} has idle workgroups");
            }
        }
    }
}

#[test]
fn matmul_long_rows() {
    // A 7B-class FFN row (14336 columns, 448 chunks of 32): llvmpipe ends an
    // invocation's loops after 65535 iterations in all, and matmul_lanes walks
    // every chunk of a row in one invocation (found fine up to 65536 columns).
    if let Some(g) = contexts().into_iter().next() {
        let mut rng = Rng::new(12);
        check_matmul(&g, MatmulShape::for_gpu(&g), WType::Q4_1, 33, 14336, 9, 9, false, &mut rng);
    }
}
