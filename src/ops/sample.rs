//! Launch builders for the decode step's only readbacks: greedy argmax (one
//! id) and the top-K candidates with the logsumexp of all logits (so the
//! host sampler computes exact probabilities from K + 4 words). Repetition
//! penalties, temperature, top-p and min-p stay on the host, applied to the
//! candidates.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Dispatch, Kernel, Spec, grid_1d};
use bytemuck::{Pod, Zeroable};

/// Workgroup size of both kernels (topk's fast path needs WG >= K).
pub const WG: u32 = 256;
/// Logits per first-stage workgroup of `argmax`. Up to this many logits run
/// as one workgroup in one dispatch (the real model's 49152 do): on lavapipe
/// splitting 49152 into 2..12 blocks plus a merge was never faster (its
/// workgroups share 2 cores), and on a GPU one workgroup reads 192 KiB in
/// microseconds. Larger vocabularies get blocks of this size and a merge.
pub const ARGMAX_BLOCK: u32 = 65536;
/// Logits per first-stage workgroup of `topk`; same reasoning as `ARGMAX_BLOCK`.
pub const TOPK_BLOCK: u32 = 65536;
/// Candidates the engine reads back for sampling.
pub const TOPK_K: u32 = 64;
/// Every K a top-k spec is built for: the engine's and the tests'.
pub const TOPK_KS: [u32; 4] = [1, 8, 40, TOPK_K];

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    block: u32,
    _p: [u32; 2],
}

fn argmax_spec(merge: bool) -> Spec {
    Spec::new(Kernel::Argmax).with("WG", WG).with("ARGMAX_MERGE", merge as u32)
}

fn topk_spec(k: u32, merge: bool) -> Spec {
    Spec::new(Kernel::TopK).with("WG", WG).with("K", k).with("TOPK_MERGE", merge as u32)
}

/// Words of `argmax`'s output: [id u32, max logit f32].
pub const ARGMAX_WORDS: usize = 2;

/// The index of the largest of `n` f32 logits (ties: smallest index) into
/// `out[0]` (and its value into `out[1]`). Run the dispatches in order.
pub fn argmax(gpu: &Gpu, logits: &wgpu::Buffer, out: &wgpu::Buffer, n: u32) -> Vec<Dispatch> {
    argmax_blocks(gpu, logits, out, n, ARGMAX_BLOCK)
}

/// `argmax` with `block` logits per first-stage workgroup: one dispatch
/// when `n <= block`, else per-block records and a merge.
pub fn argmax_blocks(gpu: &Gpu, logits: &wgpu::Buffer, out: &wgpu::Buffer, n: u32, block: u32) -> Vec<Dispatch> {
    let block = block.max(1);
    let groups = n.div_ceil(block).max(1);
    let params = gpu.uniform("argmax.params", bytemuck::bytes_of(&Params { n, block, _p: [0; 2] }));
    if groups == 1 {
        return vec![gpu.dispatch(&argmax_spec(false), &[logits, out, &params], [1, 1, 1])];
    }
    let scratch = gpu.buffer("argmax.blocks", 4 * ARGMAX_WORDS as u64 * groups as u64);
    let merge = gpu.uniform("argmax.merge", bytemuck::bytes_of(&Params { n: groups, block: groups, _p: [0; 2] }));
    vec![
        gpu.dispatch(&argmax_spec(false), &[logits, &scratch, &params], grid_1d(groups)),
        gpu.dispatch(&argmax_spec(true), &[&scratch, out, &merge], [1, 1, 1]),
    ]
}

/// Words of `topk`'s output for `k` candidates.
pub fn topk_words(k: u32) -> usize {
    4 + 2 * k as usize
}

/// The K largest of `n` f32 logits, sorted (value descending, ties to the
/// smaller index), into `out` (`topk_words(k)` words):
///   [0] max logit f32, [1] sum of exp(logit - max) over all n f32,
///   [2] max + ln(sum) f32, [3] valid candidates min(k, n) u32,
///   then k pairs (index u32, logit f32); unused pairs are (u32::MAX, -inf).
/// NaN logits rank below -inf. `k` must be in 1..=WG. Run the dispatches in order.
pub fn topk(gpu: &Gpu, logits: &wgpu::Buffer, out: &wgpu::Buffer, n: u32, k: u32) -> Result<Vec<Dispatch>> {
    topk_blocks(gpu, logits, out, n, k, TOPK_BLOCK)
}

/// `topk` with `block` logits per first-stage workgroup: one dispatch when
/// `n <= block`, else one record per block and a merge of the records.
pub fn topk_blocks(gpu: &Gpu, logits: &wgpu::Buffer, out: &wgpu::Buffer, n: u32, k: u32, block: u32) -> Result<Vec<Dispatch>> {
    if k == 0 || k > WG {
        return Err(Error::msg(format!("top-k: k = {k} must be between 1 and {WG}")));
    }
    let block = block.max(1);
    let groups = n.div_ceil(block).max(1);
    let params = gpu.uniform("topk.params", bytemuck::bytes_of(&Params { n, block, _p: [0; 2] }));
    if groups == 1 {
        return Ok(vec![gpu.dispatch(&topk_spec(k, false), &[logits, out, &params], [1, 1, 1])]);
    }
    let scratch = gpu.buffer("topk.blocks", 4 * (topk_words(k) as u64) * groups as u64);
    let merge = gpu.uniform("topk.merge", bytemuck::bytes_of(&Params { n: groups, block: groups, _p: [0; 2] }));
    Ok(vec![
        gpu.dispatch(&topk_spec(k, false), &[logits, &scratch, &params], grid_1d(groups)),
        gpu.dispatch(&topk_spec(k, true), &[&scratch, out, &merge], [1, 1, 1]),
    ])
}

/// `topk`'s output, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    pub max: f32,
    /// Sum over all logits of exp(logit - max).
    pub sum_exp: f32,
    /// max + ln(sum_exp): log-probability of candidate i is logit_i - lse.
    pub lse: f32,
    /// (index, logit), best first.
    pub candidates: Vec<(u32, f32)>,
}

impl TopK {
    /// Decode `topk_words(k)` words read back from `topk`'s output.
    pub fn parse(words: &[u32], k: u32) -> Result<TopK> {
        if words.len() < topk_words(k) {
            return Err(Error::msg(format!("top-k: {} words read back, {} expected", words.len(), topk_words(k))));
        }
        let valid = (words[3] as usize).min(k as usize);
        let candidates = (0..valid).map(|r| (words[4 + 2 * r], f32::from_bits(words[5 + 2 * r]))).collect();
        Ok(TopK { max: f32::from_bits(words[0]), sum_exp: f32::from_bits(words[1]), lse: f32::from_bits(words[2]), candidates })
    }
}

/// Every specialisation this file creates (for the portability test).
pub fn specs() -> Vec<Spec> {
    let mut v = vec![argmax_spec(false), argmax_spec(true)];
    for k in TOPK_KS {
        v.push(topk_spec(k, false));
        v.push(topk_spec(k, true));
    }
    v
}
