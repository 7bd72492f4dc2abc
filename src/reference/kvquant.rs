//! References for the quantized KV storage (`q8`, `q4`): per-row blocks of
//! 32 elements with an f16 scale, as llama.cpp's q8_0 / q4_0 caches define
//! them (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), and the row's
//! word format on the GPU (`shaders/kv_format.wgsl`), written here from its
//! description so tests can read a cache buffer. Independent of the kernels.

/// Elements per block.
pub const BLOCK: usize = 32;

/// One block of `x` (32 elements) quantized with `bits` (8 or 4): the scale
/// as stored (f16, back in f32) and the quants (q8: -127..=127; q4: the
/// nibbles 0..=15, value `(n - 8) * d`).
pub fn quantize_block(x: &[f32], bits: u32) -> (f32, Vec<i32>) {
    assert_eq!(x.len(), BLOCK);
    let (d, q): (f32, Vec<i32>) = if bits == 8 {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // roundf: half away from zero.
        (d, x.iter().map(|&v| ((v * id).abs() + 0.5).floor().copysign(v * id) as i32).collect())
    } else {
        // The element of largest magnitude, the first of equals.
        let mut m = 0.0f32;
        for &v in x {
            if v.abs() > m.abs() {
                m = v;
            }
        }
        let d = m / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        (d, x.iter().map(|&v| ((v * id + 8.5) as i32).clamp(0, 15)).collect())
    };
    (half::f16::from_f32(d).to_f32(), q)
}

/// The value quant `q` stands for under scale `d`.
pub fn dequant(q: i32, d: f32, bits: u32) -> f32 {
    if bits == 8 { q as f32 * d } else { (q - 8) as f32 * d }
}

/// `x` (a multiple of 32 long) quantized and dequantized: what a quantized
/// cache gives back for a stored row.
pub fn roundtrip(x: &[f32], bits: u32) -> Vec<f32> {
    x.chunks(BLOCK)
        .flat_map(|b| {
            let (d, q) = quantize_block(b, bits);
            q.into_iter().map(move |q| dequant(q, d, bits))
        })
        .collect()
}

/// u32 words of one stored row of `head_dim` elements: the quants, then
/// one word per two blocks' scales.
pub fn row_words(head_dim: usize, bits: u32) -> usize {
    head_dim * bits as usize / 32 + head_dim.div_ceil(64)
}

/// Decode one stored row (`row_words` words): element `e` is byte `e % 4`
/// of word `e / 4` (q8, signed) or nibble `e % 8` of word `e / 8` (q4);
/// block `b`'s scale is the f16 in half `b % 2` (low first) of the word
/// after the quants' `b / 2`.
pub fn decode_row(words: &[u32], head_dim: usize, bits: u32) -> Vec<f32> {
    let qw = head_dim * bits as usize / 32;
    (0..head_dim)
        .map(|e| {
            let b = e / BLOCK;
            let d = half::f16::from_bits((words[qw + b / 2] >> (16 * (b % 2))) as u16).to_f32();
            let q = if bits == 8 { (words[e / 4] >> (8 * (e % 4))) as u8 as i8 as i32 } else { ((words[e / 8] >> (4 * (e % 8))) & 15) as i32 };
            dequant(q, d, bits)
        })
        .collect()
}

/// The orthonormal Walsh-Hadamard transform of `x` (a power-of-two length,
/// 32 or 64 here) in natural order, in place: `H x / sqrt(n)`, `H[i][j] =
/// (-1)^popcount(i & j)`, its own inverse. Scaled by the f32 nearest
/// `1 / sqrt(n)` after the butterflies, as `shaders/kv_hadamard.wgsl`.
pub fn fwht(x: &mut [f32]) {
    let n = x.len();
    let mut h = 1;
    while h < n {
        for i in 0..n {
            if i & h == 0 {
                let (a, b) = (x[i], x[i + h]);
                x[i] = a + b;
                x[i + h] = a - b;
            }
        }
        h *= 2;
    }
    let s = (1.0 / (n as f64).sqrt()) as f32;
    x.iter_mut().for_each(|v| *v *= s);
}

/// `x` rotated group by group (`group` elements each; 0: unchanged).
pub fn rotate(x: &[f32], group: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    if group > 0 {
        y.chunks_mut(group).for_each(fwht);
    }
    y
}
