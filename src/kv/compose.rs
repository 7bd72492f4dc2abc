//! Which `--kv` parts combine, in one place: each part's options checked
//! against the others (a budget that leaves room for Mustafar's window,
//! Quest's pages under Mustafar, the combinations this build refuses), and
//! quantized storage (`q8`, `q4`): the dense slots' rows in blocks, under
//! any eviction part (its cuts move rows whatever their format) and Quest
//! (its page boxes taken from the dequantized keys, the ones attention
//! reads, so the bound holds for the scores it ranks); `kivi` under any
//! eviction part (a cut requantizes the kept tokens' groups) or Quest
//! (boxes from the f16 keys, before the pack quantizes them); and
//! the [`Layout`] a spec resolves to before anything is allocated: slots,
//! capacity, shapes, each part's options. `KvCache::new` allocates from it
//! and `KvCache::bytes_for` counts from it.

use super::spec::{Kind, KvSpec};
use super::storage::{Geometry, StorageOptions};
use super::{KvCache, MustafarOptions, QuestOptions, ScoredOptions, Streaming, StreamingOptions};
use crate::config::ModelConfig;
use crate::ops::attention::AttnShape;
use crate::ops::mustafar::T as BLOCK;
use crate::{Error, Result};

/// A cache's parts and shapes before anything is allocated (`KvCache::layout`).
pub(super) struct Layout {
    pub(super) streaming: Option<Streaming>,
    pub(super) scored: Option<ScoredOptions>,
    pub(super) storage: StorageOptions,
    /// Quest's options, the shape it selects over, and whether it keeps its
    /// own page metadata (with a rebuild after compaction) or reads Mustafar's.
    pub(super) quest: Option<(QuestOptions, AttnShape, bool)>,
    pub(super) capacity: usize,
    /// The dense slots' attention shape, and the whole context's (prefill).
    pub(super) attn: AttnShape,
    pub(super) context: AttnShape,
    pub(super) sinks: usize,
    /// Whether the cache keeps a gather list (eviction, Mustafar's window).
    pub(super) keep: bool,
    pub(super) elem_bytes: usize,
    pub(super) f16: bool,
    pub(super) kv_dim: usize,
    pub(super) n_layers: usize,
}

impl Layout {
    /// The shapes the storage is made for.
    pub(super) fn geometry(&self) -> Geometry {
        Geometry {
            slots: self.attn,
            context: self.context,
            n_layers: self.n_layers,
            sinks: self.sinks,
            gather: self.keep,
            cuts: self.scored.is_some(),
            page_meta: self.quest.is_some(),
            f16: self.f16,
        }
    }
}

/// Whether `spec`'s storage is Mustafar's.
fn is_mustafar(spec: &KvSpec) -> bool {
    spec.part(Kind::Storage).is_some_and(|p| p.name == "mustafar")
}

/// A `kivi` storage part's options (`KvCache::kivi_of`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kivi {
    /// 2 or 4.
    pub bits: u32,
    /// Key group (tokens per channel group), a multiple of 32.
    pub group: u32,
    /// The newest tokens past the last multiple of this stay f16.
    pub residual: u32,
    /// The first tokens that stay f16 (attention sinks), a multiple of `group`.
    pub sinks: u32,
}

impl KvCache {
    /// The eviction policy of `spec` for a context of `ctx` tokens, if any;
    /// refuses the parts and combinations this build lacks.
    pub fn streaming_of(spec: &KvSpec, ctx: usize) -> Result<Option<Streaming>> {
        match spec.part(Kind::Eviction).filter(|p| p.name == "streaming") {
            Some(_) if spec.part(Kind::Selection).is_some() && is_mustafar(spec) => {
                Err(Error::msg(format!("--kv {spec}: streaming with quest and mustafar together is not available in this build yet")))
            }
            Some(p) => Ok(Some(Streaming::new(StreamingOptions::from_part(p)?, ctx)?)),
            None => Ok(None),
        }
    }

    /// The scored eviction part of `spec` (every eviction part but
    /// `streaming`), if any; refuses it beside storage or selection parts.
    pub fn scored_of(spec: &KvSpec) -> Result<Option<ScoredOptions>> {
        let Some(p) = spec.part(Kind::Eviction).filter(|p| p.name != "streaming") else {
            return Ok(None);
        };
        if let Some(o) = spec.parts.iter().find(|o| o.name == "mustafar") {
            return Err(Error::msg(format!("--kv {spec}: {} with {} is not available in this build yet", p.name, o.name)));
        }
        let o = ScoredOptions::from_part(p)?;
        if o.evicts_in_decode() && spec.part(Kind::Selection).is_some() {
            // Its decode scores need the attention every slot got; Quest's
            // sparse attention gives none to the pages it skipped.
            return Err(Error::msg(format!(
                "--kv {spec}: {} with quest is not available in this build yet (its decode scores need dense attention; snapkv, pyramidkv, dynamickv and knorm combine with quest)",
                p.name
            )));
        }
        Ok(Some(o))
    }

    /// The storage part of `spec`, if any, checked against the eviction
    /// part's budget: the sinks, the dense window, a block waiting to be
    /// compressed and at least one token must fit in it.
    pub fn mustafar_of(spec: &KvSpec, ctx: usize) -> Result<Option<MustafarOptions>> {
        let Some(m) = spec.part(Kind::Storage).filter(|p| p.name == "mustafar").map(MustafarOptions::from_part).transpose()? else {
            return Ok(None);
        };
        if let Some(s) = KvCache::streaming_of(spec, ctx)? {
            let least = s.sinks + m.window + BLOCK;
            if s.budget < least {
                return Err(Error::msg(format!(
                    "--kv {spec}: a budget of {} tokens leaves no room for mustafar's {} sinks + window of {} + a {}-token block (raise budget= to at least {least}, or lower window=)",
                    s.budget, s.sinks, m.window, BLOCK
                )));
            }
        }
        Ok(Some(m))
    }

    /// Bits per element of `spec`'s quantized storage (`q8`, `q4`), else 0
    /// (dense `kv_t`, or Mustafar's), and whether its rows are rotated
    /// (`rot=1`, the default, as llama.cpp's quantized caches; `rot=0` off).
    pub fn quant_of(spec: &KvSpec) -> Result<(u32, bool)> {
        let Some(p) = spec.part(Kind::Storage).filter(|p| matches!(p.name.as_str(), "q8" | "q4")) else {
            return Ok((0, false));
        };
        let rot = match p.get("rot") {
            None | Some("1") => true,
            Some("0") => false,
            Some(v) => return Err(Error::msg(format!("--kv part '{}': rot '{v}' is not 0 or 1", p.name))),
        };
        Ok((if p.name == "q8" { 8 } else { 4 }, rot))
    }

    /// `spec`'s KIVI storage, if any, checked. Defaults: 2 bits, groups of
    /// 32, a residual of one group (KIVI's paper uses groups of 32 and
    /// residuals of 32 to 128) and one group of sinks, which together keep
    /// a 4096-token cache of a 64-dim head within 20% of f16's bytes.
    pub fn kivi_of(spec: &KvSpec) -> Result<Option<Kivi>> {
        let Some(p) = spec.part(Kind::Storage).filter(|p| p.name == "kivi") else {
            return Ok(None);
        };
        // A whole number up to 2^20, at least `min` (0 or 1).
        let num = |key: &str, default: u32, min: u32| -> Result<u32> {
            let what = if min > 0 { "a positive whole number" } else { "a whole number" };
            match p.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= min && n <= 1 << 20)
                    .ok_or_else(|| Error::msg(format!("--kv part 'kivi': {key} '{v}' is not {what}"))),
            }
        };
        let (bits, group) = (num("bits", 2, 1)?, num("group", 32, 1)?);
        let (residual, sinks) = (num("residual", group, 1)?, num("sinks", group, 0)?);
        if !matches!(bits, 2 | 4) {
            return Err(Error::msg(format!("--kv part 'kivi': bits '{bits}' is not 2 or 4")));
        }
        if !group.is_multiple_of(32) {
            return Err(Error::msg(format!("--kv part 'kivi': group {group} is not a multiple of 32")));
        }
        if !residual.is_multiple_of(group) {
            return Err(Error::msg(format!(
                "--kv part 'kivi': residual {residual} is not a multiple of group {group} (whole key groups are quantized at once)"
            )));
        }
        if !sinks.is_multiple_of(group) {
            return Err(Error::msg(format!("--kv part 'kivi': sinks {sinks} is not a multiple of group {group} (whole key groups stay f16)")));
        }
        if let (Some(e), Some(q)) = (spec.part(Kind::Eviction), spec.part(Kind::Selection)) {
            return Err(Error::msg(format!(
                "--kv {spec}: kivi with both {} and {} is not available in this build yet (after a cut, quest's boxes would be retaken from requantized keys); either one combines with kivi",
                e.name, q.name
            )));
        }
        if let Some(q) = spec.part(Kind::Selection).map(QuestOptions::from_part).transpose()? {
            // Quest's boxes are taken as a call writes a page; the page must
            // not straddle the boundary, so they come from the f16 keys.
            if !residual.is_multiple_of(q.page) {
                return Err(Error::msg(format!(
                    "--kv {spec}: kivi's residual {residual} is not a multiple of quest's page {} (pages must not straddle its quantization boundary)",
                    q.page
                )));
            }
        }
        Ok(Some(Kivi { bits, group, residual, sinks }))
    }

    /// Most tokens cached at once for `spec` over `ctx` tokens: an eviction
    /// budget, else the context.
    pub(super) fn capacity_of(spec: &KvSpec, ctx: usize) -> Result<usize> {
        Ok(KvCache::streaming_of(spec, ctx)?.map_or(ctx, |s| s.budget))
    }

    /// Dense slots per layer the cache allocates for `spec` over `ctx` tokens.
    pub fn slots(spec: &KvSpec, ctx: usize) -> Result<usize> {
        let cap = KvCache::capacity_of(spec, ctx)?;
        if let Some(m) = KvCache::mustafar_of(spec, ctx)? {
            let sinks = KvCache::streaming_of(spec, ctx)?.map_or(0, |s| s.sinks);
            return Ok(m.window_slots(cap, sinks));
        }
        Ok(cap)
    }

    /// What a cache for `spec` over `ctx` tokens is made of: the parts,
    /// their options and shapes. `new` allocates from it and `bytes_for`
    /// counts from it, so the two agree.
    pub(super) fn layout(spec: &KvSpec, cfg: &ModelConfig, ctx: usize, f16: bool) -> Result<Layout> {
        let streaming = KvCache::streaming_of(spec, ctx)?;
        let scored = KvCache::scored_of(spec)?;
        let max_seq = KvCache::slots(spec, ctx)?;
        let elem_bytes = if f16 { 2 } else { 4 };
        let kv_dim = cfg.n_kv_heads * cfg.head_dim;
        let (kvq, rot) = KvCache::quant_of(spec)?;
        let kvrot = if rot { crate::ops::attention::rotation_group(cfg.head_dim as u32) } else { 0 };
        let k = KvCache::kivi_of(spec)?.unwrap_or_default();
        let (kivi, kivi_group, kivi_res, kivi_sink) = (k.bits, k.group, k.residual, k.sinks);
        let attn = AttnShape { kvq, kvrot, kivi, kivi_group, kivi_res, kivi_sink, ..super::attn_shape(cfg, max_seq) };
        let capacity = KvCache::capacity_of(spec, ctx)?;
        let mustafar = KvCache::mustafar_of(spec, ctx)?;
        // Prefill attends the whole context: under Mustafar a dense scratch of it.
        let context = AttnShape { max_seq: capacity as u32, ..attn };
        // Under Mustafar, Quest selects among its compressed 64-token blocks.
        let quest = match spec.part(Kind::Selection) {
            Some(p) if mustafar.is_some() => {
                let mut o = QuestOptions::from_part(p)?;
                if p.get("page").is_some_and(|v| v != "64") {
                    return Err(Error::msg(format!("--kv {spec}: under mustafar, quest's pages are its 64-token blocks (drop page= or set page=64)")));
                }
                if !o.shared {
                    return Err(Error::msg(format!("--kv {spec}: under mustafar, quest selects blocks per KV head (group=shared)")));
                }
                o.page = BLOCK as u32;
                Some((o, context, false))
            }
            Some(p) => Some((QuestOptions::from_part(p)?, attn, true)),
            None => None,
        };
        if (attn.kvq > 0 || attn.kivi > 0) && !attn.head_dim.is_multiple_of(32) {
            return Err(Error::msg(format!(
                "--kv {spec}: {}-bit KV blocks hold 32 elements; this model's head_dim {} is not a multiple of 32",
                attn.kvq.max(attn.kivi),
                attn.head_dim
            )));
        }
        let sinks = streaming.map_or(0, |s| s.sinks);
        let keep = streaming.is_some() || mustafar.is_some();
        let storage = mustafar.map_or(StorageOptions::Dense, StorageOptions::Mustafar);
        // The policy holds the global layers; the windowed ones keep their own slots (`window.rs`).
        let n_layers = (0..cfg.n_layers).filter(|&l| cfg.layer_window(l).is_none()).count();
        if n_layers == 0 && !spec.is_full() {
            return Err(Error::msg(format!(
                "--kv {spec}: every layer of {} attends a sliding window, whose cache is the window already; --kv policies act on global layers (use --kv full)",
                cfg.family.title()
            )));
        }
        Ok(Layout { streaming, scored, storage, quest, capacity, attn, context, sinks, keep, elem_bytes, f16, kv_dim, n_layers })
    }
}
