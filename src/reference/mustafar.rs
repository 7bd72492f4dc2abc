//! References for Mustafar's storage (arXiv 2505.22913): per-token
//! magnitude pruning of keys and values, the bitmap tile format of one
//! 64-token block, and its expansion back to dense rows. The GPU kernels
//! (`ops::mustafar`) place tiles anywhere in their pool; what must match is
//! each tile's bitmap and non-zeros, which this module defines.

/// Tokens per block, and elements per tile. This module keeps its own `T`,
/// `keep_count` and `v_tiles`, independent of production's in `ops::mustafar`
/// (tests/layering.rs checks that they agree).
pub const T: usize = 64;

/// Elements kept of a `d`-element vector at sparsity `s` (0 <= s < 1):
/// `d - floor(s * d)`, at least 1. The paper's code keeps one more (its
/// threshold is the k-th smallest magnitude, kept inclusively); wgkv keeps
/// exactly this many, so `s = 0.7` at `d = 64` keeps 20 of 64.
pub fn keep_count(d: usize, s: f64) -> usize {
    (d - (s * d as f64).floor() as usize).max(1)
}

/// Which elements of `x` survive: the `keep` largest magnitudes, ties to the
/// lower index, and of those only the non-zero ones (a zero costs a slot and
/// adds nothing). "Non-zero" is judged on the stored f16 value.
pub fn prune_mask(x: &[f32], keep: usize) -> Vec<bool> {
    (0..x.len())
        .map(|j| {
            let a = x[j].abs();
            let rank = (0..x.len()).filter(|&i| x[i].abs() > a || (x[i].abs() == a && i < j)).count();
            rank < keep && half::f16::from_f32(x[j]).to_f32() != 0.0
        })
        .collect()
}

/// `x` pruned: survivors as f16 values (back in f32), the rest 0.
pub fn prune(x: &[f32], keep: usize) -> Vec<f32> {
    prune_mask(x, keep).iter().zip(x).map(|(&m, &v)| if m { half::f16::from_f32(v).to_f32() } else { 0.0 }).collect()
}

/// One tile: a 64-bit bitmap (element `j` is bit `j % 32` of word `j / 32`,
/// LSB first; the paper's code is MSB first) and the non-zeros in element order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub bits: [u32; 2],
    pub nz: Vec<f32>,
}

impl Tile {
    fn from_elements(vals: impl Iterator<Item = (bool, f32)>) -> Tile {
        let mut t = Tile { bits: [0; 2], nz: Vec::new() };
        for (j, (keep, v)) in vals.enumerate() {
            if keep {
                t.bits[j / 32] |= 1 << (j % 32);
                t.nz.push(half::f16::from_f32(v).to_f32());
            }
        }
        t
    }

    /// Element `j` (0 when its bit is clear).
    pub fn get(&self, j: usize) -> f32 {
        let (w, b) = (j / 32, j % 32);
        if self.bits[w] >> b & 1 == 0 {
            return 0.0;
        }
        let below = self.bits[0..w].iter().map(|x| x.count_ones()).sum::<u32>() + (self.bits[w] & ((1u32 << b) - 1)).count_ones();
        self.nz[below as usize]
    }

    /// 16-byte units the tile's non-zeros take in the pool (8 f16 each).
    pub fn units(&self) -> usize {
        self.nz.len().div_ceil(8)
    }
}

/// One compressed block of 64 tokens of one KV head.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Key tiles, one per channel: element `t` is token `t`'s key channel.
    pub k: Vec<Tile>,
    /// Value tiles, `ceil(d / 64)` per token (token-major): element `j` of
    /// tile `(t, i)` is channel `64 i + j` of token `t`'s value.
    pub v: Vec<Tile>,
}

/// Value tiles per token.
pub fn v_tiles(d: usize) -> usize {
    d.div_ceil(T)
}

/// Prune and compress 64 tokens: `k`, `v` are `[64][d]` dense rows.
pub fn compress_block(k: &[f32], v: &[f32], d: usize, keep_k: usize, keep_v: usize) -> Block {
    assert_eq!(k.len(), T * d);
    let km: Vec<Vec<bool>> = k.chunks(d).map(|r| prune_mask(r, keep_k)).collect();
    let vm: Vec<Vec<bool>> = v.chunks(d).map(|r| prune_mask(r, keep_v)).collect();
    let k_tiles = (0..d).map(|c| Tile::from_elements((0..T).map(|t| (km[t][c], k[t * d + c])))).collect();
    let mut v_t = Vec::new();
    for t in 0..T {
        for i in 0..v_tiles(d) {
            v_t.push(Tile::from_elements((i * T..((i + 1) * T).min(d)).map(|c| (vm[t][c], v[t * d + c]))));
        }
    }
    Block { k: k_tiles, v: v_t }
}

/// The dense `[64][d]` keys and values a block holds (pruned entries 0).
pub fn expand_block(b: &Block, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut k = vec![0.0; T * d];
    let mut v = vec![0.0; T * d];
    for t in 0..T {
        for c in 0..d {
            k[t * d + c] = b.k[c].get(t);
            v[t * d + c] = b.v[t * v_tiles(d) + c / T].get(c % T);
        }
    }
    (k, v)
}

/// Pool bytes of a block's non-zeros (16-byte units) plus its bitmaps and
/// offsets (12 bytes per tile): what it keeps resident.
pub fn block_bytes(b: &Block) -> usize {
    let tiles = b.k.len() + b.v.len();
    b.k.iter().chain(&b.v).map(|t| t.units() * 16).sum::<usize>() + tiles * 12
}

/// `kv_place`: the dense window `src` (`[heads][src_seq][d]`, first `w` slots
/// valid) copied to slots `c0 .. c0 + w` of `dst` (`[heads][dst_seq][d]`);
/// slots at or past `dst_seq` are dropped, the rest of `dst` is left alone.
#[allow(clippy::too_many_arguments)]
pub fn place_window(src: &[f32], src_seq: usize, dst: &mut [f32], dst_seq: usize, heads: usize, d: usize, c0: usize, w: usize) {
    for h in 0..heads {
        for i in 0..w.min(src_seq) {
            if c0 + i < dst_seq {
                let (s, o) = ((h * src_seq + i) * d, (h * dst_seq + c0 + i) * d);
                dst[o..o + d].copy_from_slice(&src[s..s + d]);
            }
        }
    }
}
