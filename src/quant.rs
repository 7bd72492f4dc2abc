//! GGUF weight types: block layouts and CPU dequantization (the reference
//! every weight-reading kernel is checked against).

/// A weight storage type, with GGUF's ggml type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum WType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl WType {
    pub const ALL: &'static [WType] = &[
        WType::F32,
        WType::F16,
        WType::BF16,
        WType::Q8_0,
        WType::Q4_0,
        WType::Q4_1,
        WType::Q5_0,
        WType::Q5_1,
        WType::Q2_K,
        WType::Q3_K,
        WType::Q4_K,
        WType::Q5_K,
        WType::Q6_K,
    ];

    /// ggml's type id as stored in GGUF tensor infos.
    pub fn ggml_id(self) -> u32 {
        match self {
            WType::F32 => 0,
            WType::F16 => 1,
            WType::Q4_0 => 2,
            WType::Q4_1 => 3,
            WType::Q5_0 => 6,
            WType::Q5_1 => 7,
            WType::Q8_0 => 8,
            WType::Q2_K => 10,
            WType::Q3_K => 11,
            WType::Q4_K => 12,
            WType::Q5_K => 13,
            WType::Q6_K => 14,
            WType::BF16 => 30,
        }
    }

    pub fn from_ggml(id: u32) -> Option<WType> {
        WType::ALL.iter().copied().find(|w| w.ggml_id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            WType::F32 => "F32",
            WType::F16 => "F16",
            WType::BF16 => "BF16",
            WType::Q8_0 => "Q8_0",
            WType::Q4_0 => "Q4_0",
            WType::Q4_1 => "Q4_1",
            WType::Q5_0 => "Q5_0",
            WType::Q5_1 => "Q5_1",
            WType::Q2_K => "Q2_K",
            WType::Q3_K => "Q3_K",
            WType::Q4_K => "Q4_K",
            WType::Q5_K => "Q5_K",
            WType::Q6_K => "Q6_K",
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            WType::F32 | WType::F16 | WType::BF16 => 1,
            WType::Q8_0 | WType::Q4_0 | WType::Q4_1 | WType::Q5_0 | WType::Q5_1 => 32,
            WType::Q2_K | WType::Q3_K | WType::Q4_K | WType::Q5_K | WType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            WType::F32 => 4,
            WType::F16 | WType::BF16 => 2,
            WType::Q8_0 => 34,
            WType::Q4_0 => 18,
            WType::Q4_1 => 20,
            WType::Q5_0 => 22,
            WType::Q5_1 => 24,
            WType::Q2_K => 84,
            WType::Q3_K => 110,
            WType::Q4_K => 144,
            WType::Q5_K => 176,
            WType::Q6_K => 210,
        }
    }

    /// Bytes of one row of `cols` elements (`cols` must be a multiple of the block size).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_elems() * self.block_bytes()
    }

    /// The split layout's parts of a block, where this type has one: each
    /// part's (byte offset in the block, length), in the order the split row
    /// holds them (the packed quants first, then high bits and scales). See
    /// [`Layout`].
    pub fn split_parts(self) -> Option<&'static [(usize, usize)]> {
        match self {
            WType::Q4_0 => Some(&[(2, 16), (0, 2)]),
            WType::Q4_1 => Some(&[(4, 16), (0, 4)]),
            WType::Q5_0 => Some(&[(6, 16), (2, 4), (0, 2)]),
            WType::Q8_0 => Some(&[(2, 32), (0, 2)]),
            WType::Q4_K => Some(&[(16, 128), (0, 16)]),
            WType::Q6_K => Some(&[(0, 128), (128, 64), (192, 16), (208, 2)]),
            _ => None,
        }
    }

    /// Bytes of one row of `cols` elements as a buffer of `layout` holds it.
    pub fn row_bytes_in(self, cols: usize, layout: Layout) -> usize {
        match (layout, self.split_parts()) {
            (Layout::Split, Some(_)) => self.row_bytes(cols).next_multiple_of(16),
            _ => self.row_bytes(cols),
        }
    }

    /// `rows` rows of `cols` elements (GGUF bytes, `data`) in `layout`: in
    /// the split layout a row holds, for each part in turn, that part of
    /// every block (part `i` of block `b` at `nb * (len_0 + ... + len_{i-1})
    /// + b * len_i`), then zeros to a multiple of 16 bytes.
    pub fn arrange(self, data: &[u8], cols: usize, layout: Layout) -> Vec<u8> {
        let (Layout::Split, Some(parts)) = (layout, self.split_parts()) else {
            return data.to_vec();
        };
        let (row, nb, bb) = (self.row_bytes(cols), cols / self.block_elems(), self.block_bytes());
        let out_row = self.row_bytes_in(cols, layout);
        let mut out = vec![0u8; data.len() / row.max(1) * out_row];
        for (src, dst) in data.chunks_exact(row).zip(out.chunks_exact_mut(out_row)) {
            let mut region = 0;
            for &(at, len) in parts {
                for (b, block) in src.chunks_exact(bb).enumerate() {
                    dst[region + b * len..region + (b + 1) * len].copy_from_slice(&block[at..at + len]);
                }
                region += nb * len;
            }
        }
        out
    }

    /// The WGSL fragment that reads this type in `layout`.
    pub fn fragment_in(self, layout: Layout) -> &'static str {
        match (layout, self) {
            (Layout::Split, WType::Q4_1) => include_str!("../shaders/quant/q4_1_split.wgsl"),
            (Layout::Split, WType::Q8_0) => include_str!("../shaders/quant/q8_0_split.wgsl"),
            (Layout::Split, WType::Q4_0) => include_str!("../shaders/quant/q4_0_split.wgsl"),
            (Layout::Split, WType::Q5_0) => include_str!("../shaders/quant/q5_0_split.wgsl"),
            (Layout::Split, WType::Q4_K) => include_str!("../shaders/quant/q4_k_split.wgsl"),
            (Layout::Split, WType::Q6_K) => include_str!("../shaders/quant/q6_k_split.wgsl"),
            _ => self.shader_fragment(),
        }
    }

    /// The WGSL fragment that decodes this type (see `shaders/quant/common.wgsl`).
    pub fn shader_fragment(self) -> &'static str {
        match self {
            WType::F32 => include_str!("../shaders/quant/f32.wgsl"),
            WType::F16 => include_str!("../shaders/quant/f16.wgsl"),
            WType::BF16 => include_str!("../shaders/quant/bf16.wgsl"),
            WType::Q8_0 => include_str!("../shaders/quant/q8_0.wgsl"),
            WType::Q4_0 => include_str!("../shaders/quant/q4_0.wgsl"),
            WType::Q4_1 => include_str!("../shaders/quant/q4_1.wgsl"),
            WType::Q5_0 => include_str!("../shaders/quant/q5_0.wgsl"),
            WType::Q5_1 => include_str!("../shaders/quant/q5_1.wgsl"),
            WType::Q2_K => include_str!("../shaders/quant/q2_k.wgsl"),
            WType::Q3_K => include_str!("../shaders/quant/q3_k.wgsl"),
            WType::Q4_K => include_str!("../shaders/quant/q4_k.wgsl"),
            WType::Q5_K => include_str!("../shaders/quant/q5_k.wgsl"),
            WType::Q6_K => include_str!("../shaders/quant/q6_k.wgsl"),
        }
    }
}

/// How a weight matrix lies in its GPU buffer. `Gguf`: the file's blocks
/// as they are. `Split` (types with [`WType::split_parts`]): each row holds
/// its blocks' packed quants first, then their scales (and offsets, high
/// bits), padded to 16 bytes, so that a kernel reads a block's quants with
/// aligned `vec4<u32>` loads. On CPU adapters (lavapipe) every storage load
/// is a loop over the SIMD lanes, so one vec4 load in place of four or more
/// word loads is the decode matvec's largest saving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    Gguf,
    Split,
}

impl Layout {
    /// The layout `w` gets when `split` is asked: split where the type has one.
    pub fn for_type(w: WType, split: bool) -> Layout {
        if split && w.split_parts().is_some() { Layout::Split } else { Layout::Gguf }
    }
}

use crate::error::{Error, Result};
use half::{bf16, f16};

/// Checks that a `rows x cols` matrix of type `w` can be read by the GPU
/// kernels: non-empty, rows made of whole blocks, and every byte offset
/// (u32 in the shaders) in range. Loaders call this; the launch builders
/// in `ops::linear` assert it.
pub fn check_shape(w: WType, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(Error::msg(format!("{} matrix {rows}x{cols} is empty", w.name())));
    }
    if !cols.is_multiple_of(w.block_elems()) {
        return Err(Error::msg(format!("{} matrix {rows}x{cols}: row length {cols} is not a multiple of the {}-weight block", w.name(), w.block_elems())));
    }
    // The shaders address bytes with u32; keep one extra word of headroom for funnel reads.
    let bytes = (rows as u128) * (w.row_bytes(cols) as u128);
    if bytes + 8 > u32::MAX as u128 {
        return Err(Error::msg(format!("{} matrix {rows}x{cols} is {bytes} bytes, over the 4 GiB addressable by one binding", w.name())));
    }
    Ok(())
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Dequantizes one whole block (`w.block_elems()` weights) from `b` into `out`,
/// with ggml's formulas and f32 operation order.
fn dequant_block(w: WType, b: &[u8], out: &mut [f32]) {
    match w {
        WType::F32 => out[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        WType::F16 => out[0] = f16_at(b, 0),
        WType::BF16 => out[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        WType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                out[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
        WType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                out[j] = ((b[2 + j] & 15) as i32 - 8) as f32 * d;
                out[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        WType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                out[j] = (b[4 + j] & 15) as f32 * d + m;
                out[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
        WType::Q5_0 => {
            // f16 d, u32 qh of fifth bits (bit k: weight k), 16 nibble bytes; (q - 16) * d.
            let (d, qh) = (f16_at(b, 0), u32_at(b, 2));
            for j in 0..16 {
                let lo = (b[6 + j] & 15) as u32 | ((qh >> j) & 1) << 4;
                let hi = (b[6 + j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                out[j] = (lo as i32 - 16) as f32 * d;
                out[j + 16] = (hi as i32 - 16) as f32 * d;
            }
        }
        WType::Q5_1 => {
            // f16 d, f16 m, u32 qh of fifth bits, 16 nibble bytes; q * d + m.
            let (d, m, qh) = (f16_at(b, 0), f16_at(b, 2), u32_at(b, 4));
            for j in 0..16 {
                let lo = (b[8 + j] & 15) as u32 | ((qh >> j) & 1) << 4;
                let hi = (b[8 + j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                out[j] = lo as f32 * d + m;
                out[j + 16] = hi as f32 * d + m;
            }
        }
        WType::Q2_K => {
            // 16 (scale | min << 4) bytes, one per 16 weights, 64 bytes of 2-bit quants, f16 d, f16 dmin.
            let (sc, qs) = (&b[0..16], &b[16..80]);
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            for (e, o) in out.iter_mut().enumerate() {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                let q = (qs[32 * n + l] >> (2 * j)) & 3;
                let s = sc[e / 16];
                let (dl, ml) = (d * (s & 15) as f32, dmin * (s >> 4) as f32);
                *o = dl * q as f32 - ml;
            }
        }
        WType::Q3_K => {
            // 32 bytes of high bits, 64 bytes of low 2-bit pairs, 12 bytes of 6-bit scales, f16 d.
            let (hm, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
            let d = f16_at(b, 108);
            for (e, o) in out.iter_mut().enumerate() {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                let low = ((qs[32 * n + l] >> (2 * j)) & 3) as i32;
                let high = (hm[l] >> (4 * n + j)) & 1;
                let q = if high == 1 { low } else { low - 4 };
                let dl = d * (q3k_scale(sc, e / 16) - 32) as f32;
                *o = dl * q as f32;
            }
        }
        WType::Q5_K => {
            // f16 d, f16 dmin, Q4_K's 12 scale bytes, 32 bytes of fifth bits, 128 nibble bytes.
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (s, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
            for j in 0..8 {
                let (sc, mn) = q4k_scale_min(s, j);
                let (d1, m1) = (d * sc as f32, dmin * mn as f32);
                let ql = &qs[32 * (j / 2)..][..32];
                let shift = 4 * (j % 2);
                for l in 0..32 {
                    let q = ((ql[l] >> shift) & 15) | ((qh[l] >> j) & 1) << 4;
                    out[32 * j + l] = d1 * q as f32 - m1;
                }
            }
        }
        WType::Q4_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let s = &b[4..16];
            for j in 0..8 {
                let (sc, mn) = q4k_scale_min(s, j);
                let (d1, m1) = (d * sc as f32, dmin * mn as f32);
                let qs = &b[16 + 32 * (j / 2)..][..32];
                let shift = 4 * (j % 2);
                for l in 0..32 {
                    out[32 * j + l] = d1 * ((qs[l] >> shift) & 15) as f32 - m1;
                }
            }
        }
        WType::Q6_K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            for e in 0..256 {
                let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                let lo = (ql[64 * n + 32 * (j % 2) + l] >> (4 * (j / 2))) & 15;
                let hi = (qh[32 * n + l] >> (2 * j)) & 3;
                let q = (lo | hi << 4) as i32 - 32;
                out[e] = d * (sc[e / 16] as i8) as f32 * q as f32;
            }
        }
    }
}

/// Q3_K's 6-bit scale (0..63, stored with an offset of 32) of 16-weight
/// group `i` from the 12 packed bytes `s`: the low nibble of byte `i` (`i <
/// 8`) or the high nibble of byte `i - 8`, and two high bits from byte
/// `8 + i % 4` at bit `2 * (i / 4)`.
fn q3k_scale(s: &[u8], i: usize) -> i32 {
    let low = if i < 8 { s[i] & 15 } else { s[i - 8] >> 4 };
    let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    (low | high << 4) as i32
}

/// Q4_K's and Q5_K's 6-bit (scale, min) of sub-block `j` from the 12 packed bytes `s`.
fn q4k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 { (s[j] & 63, s[j + 4] & 63) } else { ((s[j + 4] & 15) | (s[j - 4] >> 6) << 4, (s[j + 4] >> 4) | (s[j] >> 6) << 4) }
}

/// The index of the first block of `bytes` (whole blocks of type `w`) whose
/// weights are not all finite, if any. A quantized block's weights are finite
/// exactly when its f16 scales are (the quants are small integers), so only
/// the scales are read; float tensors are checked element by element.
pub fn first_non_finite_block(w: WType, bytes: &[u8]) -> Option<usize> {
    let bad16 = |b: &[u8], i: usize| b[i + 1] & 0x7c == 0x7c; // f16 exponent all ones: Inf or NaN
    let scales: &[usize] = match w {
        WType::F32 => {
            return bytes.chunks_exact(4).position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
        }
        WType::BF16 => return bytes.chunks_exact(2).position(|b| b[1] & 0x7f == 0x7f && b[0] & 0x80 != 0),
        WType::F16 | WType::Q8_0 | WType::Q4_0 | WType::Q5_0 => &[0],
        WType::Q4_1 | WType::Q5_1 | WType::Q4_K | WType::Q5_K => &[0, 2],
        WType::Q2_K => &[80, 82],
        WType::Q3_K => &[108],
        WType::Q6_K => &[208],
    };
    bytes.chunks_exact(w.block_bytes()).position(|b| scales.iter().any(|&i| bad16(b, i)))
}

/// The first `n` weights stored in `bytes` as type `w`, exactly as ggml
/// dequantizes them. `n` must be whole blocks and `bytes` must hold them.
pub fn dequantize(w: WType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let (be, bb) = (w.block_elems(), w.block_bytes());
    if !n.is_multiple_of(be) {
        return Err(Error::msg(format!("{}: {n} weights are not whole {be}-weight blocks", w.name())));
    }
    let need = n / be * bb;
    if bytes.len() < need {
        return Err(Error::msg(format!("{}: {n} weights need {need} bytes, have {}", w.name(), bytes.len())));
    }
    let mut out = vec![0f32; n];
    for (blk, o) in bytes[..need].chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        dequant_block(w, blk, o);
    }
    Ok(out)
}

/// Row `row` (of `cols` weights) of a row-major matrix stored in `bytes`.
pub fn dequant_row(w: WType, bytes: &[u8], cols: usize, row: usize) -> Result<Vec<f32>> {
    if !cols.is_multiple_of(w.block_elems()) {
        return Err(Error::msg(format!("{}: row length {cols} is not whole blocks", w.name())));
    }
    let rb = w.row_bytes(cols);
    let start = row.checked_mul(rb).filter(|s| s + rb <= bytes.len());
    match start {
        Some(s) => dequantize(w, &bytes[s..s + rb], cols),
        None => Err(Error::msg(format!("{}: row {row} of {cols} weights is past the end of {} bytes", w.name(), bytes.len()))),
    }
}

/// Encodes `values` as type `w` (test data and tiny test models): simple
/// round-to-nearest quantizers that produce valid blocks, not ggml's
/// error-minimising ones. `values.len()` must be a multiple of the block size.
pub fn quantize(w: WType, values: &[f32]) -> Vec<u8> {
    let be = w.block_elems();
    assert!(values.len().is_multiple_of(be), "quantize {}: {} values are not whole blocks", w.name(), values.len());
    let mut out = Vec::with_capacity(values.len() / be * w.block_bytes());
    for x in values.chunks_exact(be) {
        match w {
            WType::F32 => out.extend_from_slice(&x[0].to_le_bytes()),
            WType::F16 => out.extend_from_slice(&f16::from_f32(x[0]).to_le_bytes()),
            WType::BF16 => out.extend_from_slice(&bf16::from_f32(x[0]).to_le_bytes()),
            WType::Q8_0 => quantize_q8_0(x, &mut out),
            WType::Q4_0 => quantize_q4_0(x, &mut out),
            WType::Q4_1 => quantize_q4_1(x, &mut out),
            WType::Q5_0 => quantize_q5_0(x, &mut out),
            WType::Q5_1 => quantize_q5_1(x, &mut out),
            WType::Q2_K => quantize_q2_k(x, &mut out),
            WType::Q3_K => quantize_q3_k(x, &mut out),
            WType::Q4_K => quantize_q4_k(x, &mut out),
            WType::Q5_K => quantize_q5_k(x, &mut out),
            WType::Q6_K => quantize_q6_k(x, &mut out),
        }
    }
    out
}

fn inv(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = f16::from_f32(amax / 127.0);
    let id = inv(d.to_f32());
    out.extend_from_slice(&d.to_le_bytes());
    out.extend(x.iter().map(|v| (v * id).round().clamp(-128.0, 127.0) as i8 as u8));
}

fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    // The value of largest magnitude maps to nibble 0 (i.e. -8 * d).
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = f16::from_f32(max / -8.0);
    let id = inv(d.to_f32());
    let q = |v: f32| ((v * id + 8.5).floor()).clamp(0.0, 15.0) as u8;
    out.extend_from_slice(&d.to_le_bytes());
    out.extend((0..16).map(|j| q(x[j]) | q(x[j + 16]) << 4));
}

fn quantize_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().fold(f32::INFINITY, |a, &v| a.min(v));
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let d = f16::from_f32((max - min) / 15.0);
    let m = f16::from_f32(min);
    let id = inv(d.to_f32());
    let q = |v: f32| ((v - m.to_f32()) * id).round().clamp(0.0, 15.0) as u8;
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&m.to_le_bytes());
    out.extend((0..16).map(|j| q(x[j]) | q(x[j + 16]) << 4));
}

/// The 32-weight blocks of Q5_0 and Q5_1: the low nibbles of weights 0..15
/// and the high nibbles of 16..31 in 16 bytes, and their fifth bits in a
/// 32-bit word (bit j for weight j). Returns (qh, qs).
fn pack_q5(q: &[u8]) -> (u32, [u8; 16]) {
    let qh = q.iter().enumerate().fold(0u32, |h, (j, &v)| h | ((v as u32 >> 4) & 1) << j);
    (qh, std::array::from_fn(|j| (q[j] & 15) | (q[j + 16] & 15) << 4))
}

fn quantize_q5_0(x: &[f32], out: &mut Vec<u8>) {
    // As Q4_0: the value of largest magnitude maps to q = 0 (i.e. -16 * d).
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = f16::from_f32(max / -16.0);
    let id = inv(d.to_f32());
    let q: Vec<u8> = x.iter().map(|&v| (v * id + 16.5).floor().clamp(0.0, 31.0) as u8).collect();
    let (qh, qs) = pack_q5(&q);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

fn quantize_q5_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().fold(f32::INFINITY, |a, &v| a.min(v));
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let d = f16::from_f32((max - min) / 31.0);
    let m = f16::from_f32(min);
    let id = inv(d.to_f32());
    let q: Vec<u8> = x.iter().map(|&v| ((v - m.to_f32()) * id).round().clamp(0.0, 31.0) as u8).collect();
    let (qh, qs) = pack_q5(&q);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&m.to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// Per-group (scale, min) of a super-block with unsigned quants `0..=qmax`:
/// scale = range / qmax and min = -min(0, lowest) per group of `x.len() /
/// N` weights, then both quantized to `bits`-bit integers against the
/// super-block's f16 d and dmin. Returns (d, dmin, the integer scales, the
/// integer mins); min rounds up so that a group's lowest value stays representable.
fn scales_mins<const N: usize>(x: &[f32], qmax: f32, bits: u32) -> (f16, f16, [u8; N], [u8; N]) {
    let mut scale = [0f32; N];
    let mut mins = [0f32; N];
    for (j, g) in x.chunks_exact(x.len() / N).enumerate() {
        let lo = g.iter().fold(0f32, |a, &v| a.min(v));
        let hi = g.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        scale[j] = (hi - lo) / qmax;
        mins[j] = -lo;
    }
    let top = ((1u32 << bits) - 1) as f32;
    let d = f16::from_f32(scale.iter().fold(0f32, |a, &v| a.max(v)) / top);
    let dmin = f16::from_f32(mins.iter().fold(0f32, |a, &v| a.max(v)) / top);
    let sc = scale.map(|v| (v * inv(d.to_f32())).round().clamp(0.0, top) as u8);
    let mn = mins.map(|v| (v * inv(dmin.to_f32())).ceil().clamp(0.0, top) as u8);
    (d, dmin, sc, mn)
}

/// Q4_K's and Q5_K's 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks
/// (the inverse of `q4k_scale_min`).
fn pack_k4_scales(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | (sc[j + 4] >> 4) << 6;
        s[j + 4] = mn[j] | (mn[j + 4] >> 4) << 6;
        s[j + 8] = (sc[j + 4] & 15) | (mn[j + 4] & 15) << 4;
    }
    s
}

fn quantize_q2_k(x: &[f32], out: &mut Vec<u8>) {
    // Per 16-weight group: q in 0..3, 4-bit scale and min packed in one byte.
    let (d, dmin, sc, mn) = scales_mins::<16>(x, 3.0, 4);
    let mut qs = [0u8; 64];
    for e in 0..256 {
        let (d1, m1) = (d.to_f32() * sc[e / 16] as f32, dmin.to_f32() * mn[e / 16] as f32);
        let q = ((x[e] + m1) * inv(d1)).round().clamp(0.0, 3.0) as u8;
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        qs[32 * n + l] |= q << (2 * j);
    }
    out.extend((0..16).map(|i| sc[i] | mn[i] << 4));
    out.extend_from_slice(&qs);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
}

fn quantize_q3_k(x: &[f32], out: &mut Vec<u8>) {
    // Per 16-weight group: a signed scale that maps the value of largest
    // magnitude to q = -4 (q in -4..3), quantized to 6 bits (-32..31)
    // against the super-block's d, which maps the largest-magnitude scale to -32.
    let extreme = |g: &[f32]| g.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let scale: Vec<f32> = x.chunks_exact(16).map(|g| extreme(g) / -4.0).collect();
    let d = f16::from_f32(extreme(&scale) / -32.0);
    let sc: Vec<i32> = scale.iter().map(|v| (v * inv(d.to_f32())).round().clamp(-32.0, 31.0) as i32).collect();
    let mut s = [0u8; 12];
    for (i, &v) in sc.iter().enumerate() {
        let l = (v + 32) as u8;
        if i < 8 {
            s[i] |= l & 15;
        } else {
            s[i - 8] |= (l & 15) << 4;
        }
        s[8 + i % 4] |= (l >> 4) << (2 * (i / 4));
    }
    let (mut hmask, mut qs) = ([0u8; 32], [0u8; 64]);
    for e in 0..256 {
        let ds = d.to_f32() * sc[e / 16] as f32;
        let q = ((x[e] * inv(ds)).round().clamp(-4.0, 3.0) as i32 + 4) as u8;
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        qs[32 * n + l] |= (q & 3) << (2 * j);
        hmask[l] |= (q >> 2) << (4 * n + j);
    }
    out.extend_from_slice(&hmask);
    out.extend_from_slice(&qs);
    out.extend_from_slice(&s);
    out.extend_from_slice(&d.to_le_bytes());
}

fn quantize_q4_k(x: &[f32], out: &mut Vec<u8>) {
    // Per 32-weight sub-block: q in 0..15, 6-bit scale and min.
    let (d, dmin, sc, mn) = scales_mins::<8>(x, 15.0, 6);
    let mut qs = [0u8; 128];
    for j in 0..8 {
        let (d1, m1) = (d.to_f32() * sc[j] as f32, dmin.to_f32() * mn[j] as f32);
        for l in 0..32 {
            let q = ((x[32 * j + l] + m1) * inv(d1)).round().clamp(0.0, 15.0) as u8;
            qs[32 * (j / 2) + l] |= q << (4 * (j % 2));
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&pack_k4_scales(&sc, &mn));
    out.extend_from_slice(&qs);
}

fn quantize_q5_k(x: &[f32], out: &mut Vec<u8>) {
    // As Q4_K with q in 0..31, whose fifth bits go to qh (bit j of byte l
    // for weight 32j + l).
    let (d, dmin, sc, mn) = scales_mins::<8>(x, 31.0, 6);
    let (mut qh, mut qs) = ([0u8; 32], [0u8; 128]);
    for j in 0..8 {
        let (d1, m1) = (d.to_f32() * sc[j] as f32, dmin.to_f32() * mn[j] as f32);
        for l in 0..32 {
            let q = ((x[32 * j + l] + m1) * inv(d1)).round().clamp(0.0, 31.0) as u8;
            qs[32 * (j / 2) + l] |= (q & 15) << (4 * (j % 2));
            qh[l] |= (q >> 4) << j;
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&pack_k4_scales(&sc, &mn));
    out.extend_from_slice(&qh);
    out.extend_from_slice(&qs);
}

fn quantize_q6_k(x: &[f32], out: &mut Vec<u8>) {
    // Per 16-weight group: scale = max|v| / 31 (q in -32..31), quantized to a
    // signed byte against the super-block's d.
    let mut scale = [0f32; 16];
    for (i, g) in x.chunks_exact(16).enumerate() {
        scale[i] = g.iter().fold(0f32, |a, v| a.max(v.abs())) / 31.0;
    }
    let d = f16::from_f32(scale.iter().fold(0f32, |a, &v| a.max(v)) / 127.0);
    let df = d.to_f32();
    let sc: Vec<i8> = scale.iter().map(|s| (s * inv(df)).round().clamp(-128.0, 127.0) as i8).collect();
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for e in 0..256 {
        let ds = df * sc[e / 16] as f32;
        let q = ((x[e] * inv(ds)).round().clamp(-32.0, 31.0) as i32 + 32) as u8;
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        ql[64 * n + 32 * (j % 2) + l] |= (q & 15) << (4 * (j / 2));
        qh[32 * n + l] |= (q >> 4) << (2 * j);
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d.to_le_bytes());
}
