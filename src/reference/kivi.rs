//! Reference for KIVI's storage (Liu et al., 2024): asymmetric `bits`-bit
//! quantization with a scale and a minimum per group, keys per channel over
//! groups of `group` tokens, values per token over groups of `gv` channels;
//! the newest tokens (past the last multiple of the residual) stay f16, and
//! so do the first ones (attention sinks, a whole number of key groups:
//! beyond KIVI, as KVQuant and IntactKV keep them).
//! Also the word format on the GPU (`shaders/kivi_format.wgsl`), written
//! here from its description so tests can read a cache buffer. Independent
//! of the kernels.

fn codes(x: &[f32], mn: f32, scale: f32, levels: u32) -> impl Iterator<Item = u32> + '_ {
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    x.iter().map(move |&v| (((v - mn) * inv + 0.5).floor().max(0.0) as u32).min(levels))
}

/// One group `x` quantized with `bits` (2 or 4): the codes (0 ..= 2^bits -
/// 1), and the scale and minimum as stored (f16, back in f32). The range
/// is KIVI's `[min x, max x]` narrowed at either end by 0 to 3 twelfths of
/// its width, whichever of those 16 gives the least squared error (the
/// first in order of the narrowing at the bottom, then at the top, on a
/// tie). The codes use the scale before its rounding, as KIVI's kernels do.
pub fn quantize_group(x: &[f32], bits: u32) -> (Vec<u32>, f32, f32) {
    let levels = (1u32 << bits) - 1;
    let lo = x.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (hi - lo) / 12.0;
    let (mut mn, mut scale, mut best) = (lo, (hi - lo) / levels as f32, f32::INFINITY);
    for a in 0..4 {
        for b in 0..4 {
            let m = lo + a as f32 * d;
            let s = (hi - b as f32 * d - m) / levels as f32;
            let e = codes(x, m, s, levels).zip(x).fold(0f32, |e, (c, &v)| {
                let y = c as f32 * s + m;
                e + (y - v) * (y - v)
            });
            if e < best {
                (mn, scale, best) = (m, s, e);
            }
        }
    }
    let h = |v: f32| half::f16::from_f32(v).to_f32();
    (codes(x, mn, scale, levels).collect(), h(scale), h(mn))
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

#[cfg(test)]
mod tests {
    use super::quantize_group;

    fn error(x: &[f32], codes: &[u32], scale: f32, mn: f32) -> f32 {
        x.iter().zip(codes).map(|(&v, &c)| (c as f32 * scale + mn - v).powi(2)).sum()
    }

    #[test]
    fn the_range_is_narrowed_where_that_lowers_the_error() {
        // [0, 1, 2, 12] at 2 bits: KIVI's range [0, 12] (scale 4) gives
        // 0, 0, 4, 12 (squared error 5); of the 16 narrowed ranges [1, 12]
        // (scale 11/3) gives 1, 1, 1, 12 (error 2), the least, by hand.
        let (codes, scale, mn) = quantize_group(&[0.0, 1.0, 2.0, 12.0], 2);
        assert_eq!(codes, [0, 0, 0, 3]);
        assert_eq!((scale, mn), (half::f16::from_f32(11.0 / 3.0).to_f32(), 1.0));
        // Evenly spread values keep the whole range: codes exact.
        let (codes, scale, mn) = quantize_group(&[-1.0, 0.0, 1.0, 2.0], 2);
        assert_eq!((codes, scale, mn), (vec![0, 1, 2, 3], 1.0, -1.0));
        // A constant group: scale 0, given back exactly.
        assert_eq!(quantize_group(&[0.3; 8], 4), (vec![0; 8], 0.0, half::f16::from_f32(0.3).to_f32()));
    }

    #[test]
    fn the_error_is_never_above_the_whole_ranges() {
        let mut s = 7u32;
        let mut next = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for bits in [2, 4] {
            for n in [32, 64] {
                let x: Vec<f32> = (0..n).map(|i| next() * if i % 11 == 0 { 8.0 } else { 1.0 }).collect();
                let (codes, scale, mn) = quantize_group(&x, bits);
                let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let whole = (hi - lo) / ((1 << bits) - 1) as f32;
                let kivi: Vec<u32> = x.iter().map(|&v| ((v - lo) / whole + 0.5).floor() as u32).collect();
                let h = |v: f32| half::f16::from_f32(v).to_f32();
                assert!(error(&x, &codes, scale, mn) <= error(&x, &kivi, h(whole), h(lo)) * 1.001, "bits {bits} n {n}");
            }
        }
    }
}
