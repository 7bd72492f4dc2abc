//! Reference for KIVI's storage (Liu et al., 2024): asymmetric `bits`-bit
//! quantization with a scale and a minimum per group, keys per channel over
//! groups of `group` tokens, values per token over groups of `gv` channels;
//! the newest tokens (past the last multiple of the residual) stay f16, and
//! so do the first ones (attention sinks, a whole number of key groups:
//! beyond KIVI, as KVQuant and IntactKV keep them).
//! Also the word format on the GPU (`shaders/kivi_format.wgsl`), written
//! here from its description so tests can read a cache buffer. Independent
//! of the kernels.

/// One group `x` quantized with `bits` (2 or 4): the codes (0 ..= 2^bits -
/// 1), and the scale and minimum as stored (f16, back in f32). The codes
/// use the scale before its rounding, as KIVI's kernels do.
pub fn quantize_group(x: &[f32], bits: u32) -> (Vec<u32>, f32, f32) {
    let levels = (1u32 << bits) - 1;
    let mn = x.iter().copied().fold(f32::INFINITY, f32::min);
    let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let scale = (mx - mn) / levels as f32;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let codes = x.iter().map(|&v| (((v - mn) * inv + 0.5).floor() as u32).min(levels)).collect();
    let h = |v: f32| half::f16::from_f32(v).to_f32();
    (codes, h(scale), h(mn))
}

/// The value a code stands for.
pub fn dequant(code: u32, scale: f32, mn: f32) -> f32 {
    code as f32 * scale + mn
}

/// `x` quantized as one group and given back.
pub fn roundtrip(x: &[f32], bits: u32) -> Vec<f32> {
    let (codes, s, m) = quantize_group(x, bits);
    codes.iter().map(|&c| dequant(c, s, m)).collect()
}

/// Quantize and give back, in place, the slots `from .. to` of one head's
/// rows (`rows[t * stride + off ..][..hd]` is slot t's row): keys per
/// channel over groups of `group` slots (`from` and `to` multiples of it),
/// or values per slot over groups of `gv` channels.
#[allow(clippy::too_many_arguments)]
pub fn settle(rows: &mut [f32], stride: usize, off: usize, hd: usize, from: usize, to: usize, bits: u32, keys: bool, group: usize) {
    if keys {
        for g0 in (from..to).step_by(group) {
            for c in 0..hd {
                let x: Vec<f32> = (g0..g0 + group).map(|t| rows[t * stride + off + c]).collect();
                for (i, y) in roundtrip(&x, bits).into_iter().enumerate() {
                    rows[(g0 + i) * stride + off + c] = y;
                }
            }
        }
    } else {
        for t in from..to {
            for c0 in (0..hd).step_by(group) {
                let at = t * stride + off + c0;
                let y = roundtrip(&rows[at..at + group], bits);
                rows[at..at + group].copy_from_slice(&y);
            }
        }
    }
}

/// A KIVI cache buffer's geometry (`AttnShape`'s KIVI fields).
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub heads: usize,
    pub hd: usize,
    /// Slots per head.
    pub seq: usize,
    pub bits: u32,
    pub group: usize,
    pub residual: usize,
    /// The first slots, kept f16.
    pub sinks: usize,
    /// Staging rows per head.
    pub stage: usize,
}

impl Format {
    fn gv(&self) -> usize {
        self.group.min(self.hd)
    }
    fn cw(&self) -> usize {
        self.hd * self.bits as usize / 32
    }
    fn nq(&self) -> usize {
        self.seq / self.residual * self.residual
    }
    fn half(w: u32, i: usize) -> f32 {
        half::f16::from_bits((w >> (16 * i)) as u16).to_f32()
    }
    fn code(&self, w: u32, c: usize) -> u32 {
        let b = self.bits as usize;
        (w >> (b * (c % (32 / b)))) & ((1 << b) - 1)
    }

    /// Staging row of slot `s` within its head's: the sinks' own rows, then
    /// a ring for the rest.
    fn stage_row(&self, s: usize) -> usize {
        if s < self.sinks { s } else { self.sinks + (s - self.sinks) % (self.stage - self.sinks) }
    }

    /// The values the kernels read from a K (`keys`) or V cache buffer's
    /// words, `[heads][seq][hd]`, for slots `0 .. len` (the rest 0), where
    /// slots below `boundary` and past the sinks are quantized and the rest
    /// staged.
    pub fn decode(&self, words: &[u32], keys: bool, len: usize, boundary: usize) -> Vec<f32> {
        let (hd, cw, gv) = (self.hd, self.cw(), self.gv());
        let kg = self.group * cw + hd;
        let vrow = cw + hd / gv;
        let packed = if keys { self.heads * (self.nq() / self.group) * kg } else { self.heads * self.nq() * vrow };
        let mut out = Vec::with_capacity(self.heads * self.seq * hd);
        for h in 0..self.heads {
            for s in 0..self.seq {
                if s >= len {
                    out.extend(std::iter::repeat_n(0.0, hd));
                    continue;
                }
                for c in 0..hd {
                    let v = if s >= boundary || s < self.sinks {
                        let w = words[packed + (h * self.stage + self.stage_row(s)) * hd / 2 + c / 2];
                        Format::half(w, c % 2)
                    } else if keys {
                        let base = (h * (self.nq() / self.group) + s / self.group) * kg;
                        let p = words[base + self.group * cw + c];
                        dequant(self.code(words[base + (s % self.group) * cw + c * self.bits as usize / 32], c), Format::half(p, 0), Format::half(p, 1))
                    } else {
                        let row = (h * self.nq() + s) * vrow;
                        let p = words[row + cw + c / gv];
                        dequant(self.code(words[row + c * self.bits as usize / 32], c), Format::half(p, 0), Format::half(p, 1))
                    };
                    out.push(v);
                }
            }
        }
        out
    }
}
