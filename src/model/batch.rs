//! A batched decode step: one token of each of several sequences, each with
//! its own KV cache and position, through one forward (`wgkv serve`'s
//! concurrent requests). The weight kernels run once for all of them (the
//! matmuls a prefill of that many tokens runs, which load and unpack each
//! weight once for every token), RoPE reads each token's position from a
//! table. Each layer's attention serves the sequences whose caches are plain
//! dense ones there (`KvCache::plain_decode`: `full`, `streaming`) in one
//! set of dispatches for all of them (`ops::attention_batch`), recorded
//! once per set of such caches; every other sequence's attention runs on
//! its own cache, recorded once per cache: the rows of the batch's q, k and
//! v are copied into the sequence's own buffers and its output back, so
//! every KV policy's attention runs exactly as in a one-token step. The
//! batched sequences take the batch's first rows.

use super::{Model, Plan};
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
use crate::kv::{KvCache, LayerIo};
use crate::ops::Step;
use crate::ops::attention::AttnShape;
use crate::ops::attention_batch::{self as ab, BatchScratch, SeqEntry};
use crate::ops::elementwise as ew;
use crate::ops::linear;
use crate::ops::tuning::Tuning;
use crate::profile::{self, Item, Profile};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most sequences one batched step carries: the calls the CPU adapters'
/// few-token matmul (`linear::FEW_TOKENS`) takes in one pass over the weights.
pub const MAX_BATCH: usize = linear::FEW_TOKENS as usize;

/// A sequence's own side of a batched step: its token's q, k and v as the
/// batch's rows are copied in, its attention output, its step uniform, and
/// each layer's attention recorded against its cache (for the cache's
/// `generation`: a replaced cache buffer records them again).
pub(super) struct SeqIo {
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    att: wgpu::Buffer,
    step: wgpu::Buffer,
    layers: Vec<Vec<Dispatch>>,
    generation: u64,
    /// Tells this sequence's caches apart in a batched attention's record.
    id: u64,
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

impl SeqIo {
    fn new(g: &Gpu, q_dim: usize, kv_dim: usize) -> SeqIo {
        let f = |label: &str, n: usize| g.activations(label, 4 * n as u64);
        let step = g.uniform("batch.seq.step", bytemuck::bytes_of(&Step::default()));
        SeqIo {
            q: f("batch.seq.q", q_dim),
            k: f("batch.seq.k", kv_dim),
            v: f("batch.seq.v", kv_dim),
            att: f("batch.seq.att", q_dim),
            step,
            layers: vec![],
            generation: 0,
            id: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Record every layer's attention for `kv` unless it is recorded for `kv`'s generation.
    fn record(&mut self, g: &Gpu, kv: &KvCache, n_layers: usize) {
        if !self.layers.is_empty() && self.generation == kv.generation() {
            return;
        }
        let io = LayerIo { q: &self.q, k: &self.k, v: &self.v, out: &self.att, step: &self.step };
        self.layers = (0..n_layers).map(|l| kv.record_layer(g, l, 1, &io)).collect();
        self.generation = kv.generation();
    }
}

/// The batch's shared buffers: each token's position, every token's
/// logits and their staging, for up to `tokens` tokens; the plans (body
/// and head) recorded for each batch size.
pub(super) struct BatchBufs {
    tokens: usize,
    positions: wgpu::Buffer,
    logits: wgpu::Buffer,
    staging: wgpu::Buffer,
    plans: HashMap<usize, (Plan, Vec<Dispatch>)>,
    attn: Option<BatchAttn>,
}

/// The batched attention of the sequences whose caches are plain dense:
/// the per-sequence table, the merge's step (its `n_tokens`: the
/// sequences batched), the partials, and per layer the partial (with the
/// append) and merge dispatches recorded for the sequences in `key` (None:
/// a layer they attend one by one).
struct BatchAttn {
    seqs: wgpu::Buffer,
    step: wgpu::Buffer,
    part_o: wgpu::Buffer,
    part_ml: wgpu::Buffer,
    lse: wgpu::Buffer,
    n_split: u32,
    key: Vec<(u64, u32)>,
    layers: Vec<Option<[Dispatch; 2]>>,
}

impl BatchAttn {
    /// For up to `MAX_BATCH` sequences of `shape` with at most `n_split` chunks per KV head.
    fn new(g: &Gpu, shape: &AttnShape, n_split: u32) -> BatchAttn {
        let rows = MAX_BATCH as u32 * shape.n_heads;
        let (o, ml) = BatchScratch::bytes(shape, rows, n_split);
        BatchAttn {
            seqs: g.uniform("batch.attn.seqs", &vec![0; ab::seqs_bytes(MAX_BATCH) as usize]),
            step: g.uniform("batch.attn.step", bytemuck::bytes_of(&Step::default())),
            part_o: g.buffer("batch.attn.part_o", o),
            part_ml: g.buffer("batch.attn.part_ml", ml),
            lse: g.buffer("batch.attn.lse", 4 * rows as u64),
            n_split,
            key: vec![],
            layers: vec![],
        }
    }

    /// Record every layer's batched attention for `caches` (per layer, each
    /// sequence's K and V there, or None) unless recorded for `key`.
    fn record(&mut self, g: &Gpu, a: &super::Acts, shape: &AttnShape, key: Vec<(u64, u32)>, caches: &[Vec<Option<(&wgpu::Buffer, &wgpu::Buffer)>>]) {
        if self.key == key {
            return;
        }
        let scratch = BatchScratch { part_o: &self.part_o, part_ml: &self.part_ml, lse: &self.lse, n_split: self.n_split };
        let n_layers = caches.first().map_or(0, Vec::len);
        self.layers = (0..n_layers)
            .map(|l| {
                let kv: Option<Vec<_>> = caches.iter().map(|c| c[l]).collect();
                kv.map(|kv| ab::attn_decode_batch(g, shape, &a.q, &a.k, &a.v, &kv, &self.seqs, &scratch, &a.att, &self.step))
            })
            .collect();
        self.key = key;
    }
}

/// Token slots of the plan that runs a batch of `b` sequences: a power of
/// two, so that four plans serve every batch (the step uniform carries `b`;
/// the kernels leave the slots past it alone or compute rows nobody reads).
fn batch_slots(b: usize) -> usize {
    b.next_power_of_two().max(2)
}

/// What a batched step gives: each sequence's logits, or timed, its profile.
enum StepOut {
    Logits(Vec<Vec<f32>>),
    Profile(Profile),
}

/// The order of a batched step's rows (indices into `seqs`), and how many
/// of the first are attended together: those whose caches are plain dense
/// in the layers where any is (`KvCache::plain_decode`), of one shape but
/// for their slots, as many as one dispatch binds.
fn batch_order(g: &Gpu, seqs: &[&mut super::CacheSlot], n_layers: usize) -> (Vec<usize>, usize) {
    let layers =
        |i: usize| -> Vec<Option<AttnShape>> { (0..n_layers).map(|l| seqs[i].kv.plain_decode(l).map(|(_, _, s)| AttnShape { max_seq: 0, ..s })).collect() };
    let first = (0..seqs.len()).map(layers).find(|ls| ls.iter().any(Option::is_some));
    let mut together = Vec::new();
    let mut rest = Vec::new();
    for i in 0..seqs.len() {
        let fits = first.as_ref().is_some_and(|f| *f == layers(i)) && together.len() < ab::max_sequences(g);
        if fits { together.push(i) } else { rest.push(i) }
    }
    let n = together.len();
    together.extend(rest);
    (together, n)
}

impl Model {
    /// One decode step for each of `seqs`, the caches of as many sequences
    /// (none of them the model's own), feeding `tokens[i]` to `seqs[i]`:
    /// returns each one's logits (`vocab_size` floats). Each cache gains
    /// its token as a one-token `forward` would add it; the logits equal
    /// that call's up to the order of the weight kernels' sums.
    pub fn forward_batch(&mut self, seqs: &mut [&mut super::CacheSlot], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        match self.step_batch(seqs, tokens, false)? {
            StepOut::Logits(l) => Ok(l),
            StepOut::Profile(_) => unreachable!("an untimed step"),
        }
    }

    /// [`Model::forward_batch`] with each dispatch timed: the step's
    /// profile (its logits are not read). Each cache gains its token.
    pub fn profile_batch(&mut self, seqs: &mut [&mut super::CacheSlot], tokens: &[u32]) -> Result<Profile> {
        match self.step_batch(seqs, tokens, true)? {
            StepOut::Profile(p) => Ok(p),
            StepOut::Logits(_) => unreachable!("a timed step"),
        }
    }

    /// A batched step: its logits, or timed, its profile.
    fn step_batch(&mut self, seqs: &mut [&mut super::CacheSlot], tokens: &[u32], timed: bool) -> Result<StepOut> {
        let b = seqs.len();
        if b == 0 || b > MAX_BATCH || tokens.len() != b {
            return Err(Error::msg(format!("internal: a batched step of {} tokens for {b} sequences (at most {MAX_BATCH})", tokens.len())));
        }
        self.check_ids(tokens)?;
        if let Some(s) = seqs.iter().find(|s| s.kv.room() == Some(0)) {
            return Err(Error::msg(format!("context full: {} cached tokens fill the {}-token context", s.kv.len, s.kv.capacity)));
        }
        let slots = batch_slots(b);
        self.ensure_batch(slots)?;
        let gpu = std::sync::Arc::clone(&self.gpu);
        let (g, c) = (&*gpu, &self.cfg);
        let (q_dim, kv_dim, n_layers, vocab) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_layers, c.vocab_size);
        for s in seqs.iter_mut() {
            s.kv.before_call(g, 1)?;
            let io = s.batch.get_or_insert_with(|| Box::new(SeqIo::new(g, q_dim, kv_dim)));
            io.record(g, &s.kv, n_layers);
            let step = Step { pos: s.kv.pos as u32, n_tokens: 1, kv_len: (s.kv.len + 1) as u32, _pad: 0 };
            g.write(&io.step, 0, bytemuck::bytes_of(&step));
        }
        // The batch's rows: the sequences attended together first, in order.
        let (order, batched) = batch_order(g, seqs, n_layers);
        let rows = |i: usize| order.iter().position(|&o| o == i).expect("a permutation");
        let ids: Vec<u32> = order.iter().map(|&i| tokens[i]).collect();
        let positions: Vec<u32> = order.iter().map(|&i| seqs[i].kv.pos as u32).collect();
        if batched > 0 {
            self.record_batch_attention(seqs, &order[..batched]);
        }
        let bufs = self.batch.as_ref().expect("ensure_batch made them");
        let (plan, head) = &bufs.plans[&slots];
        g.write(&self.step, 0, bytemuck::bytes_of(&Step { pos: 0, n_tokens: b as u32, kv_len: b as u32, _pad: 0 }));
        g.write(&self.acts.ids, 0, bytemuck::cast_slice(&ids));
        g.write(&bufs.positions, 0, bytemuck::cast_slice(&positions));
        let a = &self.acts;
        let mut items: Vec<Item> = Vec::new();
        let mut from = 0;
        for (l, &cut) in plan.cuts.iter().enumerate() {
            items.extend(plan.body[from..cut].iter().map(Item::Dispatch));
            from = cut;
            let together = bufs.attn.as_ref().and_then(|at| at.layers.get(l)).and_then(Option::as_ref).filter(|_| batched > 0);
            let alone = if together.is_some() { &order[batched..] } else { &order[..] };
            items.extend(together.into_iter().flatten().map(Item::Dispatch));
            for (r, s) in alone.iter().map(|&i| (rows(i), &seqs[i])) {
                let io = s.batch.as_ref().expect("made above");
                for (src, dst, n) in [(&a.q, &io.q, q_dim), (&a.k, &io.k, kv_dim), (&a.v, &io.v, kv_dim)] {
                    items.push(Item::Copy { src, offset: (r * n * 4) as u64, dst, dst_offset: 0, bytes: (n * 4) as u64 });
                }
            }
            items.extend(alone.iter().flat_map(|&i| &seqs[i].batch.as_ref().expect("made above").layers[l]).map(Item::Dispatch));
            for (r, s) in alone.iter().map(|&i| (rows(i), &seqs[i])) {
                let io = s.batch.as_ref().expect("made above");
                items.push(Item::Copy { src: &io.att, offset: 0, dst: &a.att, dst_offset: (r * q_dim * 4) as u64, bytes: (q_dim * 4) as u64 });
            }
        }
        items.extend(plan.body[from..].iter().chain(head).map(Item::Dispatch));
        let out = match timed {
            true => StepOut::Profile(profile::run(g, &items)),
            false => {
                let mut enc = g.encoder();
                profile::record(g, &mut enc, "batch", &items);
                let bytes = g.readback_into(enc, &bufs.logits, 0, (4 * b * vocab) as u64, &bufs.staging);
                let logits: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
                StepOut::Logits((0..b).map(|i| logits[rows(i) * vocab..][..vocab].to_vec()).collect())
            }
        };
        drop(items);
        for s in seqs.iter_mut() {
            s.kv.advance(1);
            s.kv.after_call(g, 1, 1)?;
        }
        Ok(out)
    }

    /// Before a batched step: the table of the sequences `which` (of
    /// `seqs`) attended together, the merge's step, and their dispatches,
    /// recorded again when the set of caches (or the chunks) changed.
    fn record_batch_attention(&mut self, seqs: &[&mut super::CacheSlot], which: &[usize]) {
        let (g, n_layers) = (&*self.gpu, self.cfg.n_layers);
        let plain = |i: usize, l: usize| seqs[i].kv.plain_decode(l);
        // Each batched sequence's slots shape (of its first plain layer: every global layer's is the same).
        let shapes: Vec<AttnShape> = which.iter().map(|&i| (0..n_layers).find_map(|l| plain(i, l)).expect("a batched sequence has a plain layer").2).collect();
        let shape = shapes[0];
        let n_split = shapes.iter().map(|s| ab::n_split(&shape, s.max_seq)).max().unwrap_or(1);
        let bufs = self.batch.as_mut().expect("ensure_batch made them");
        if bufs.attn.as_ref().is_none_or(|at| at.n_split < n_split) {
            bufs.attn = Some(BatchAttn::new(g, &shape, n_split));
        }
        let at = bufs.attn.as_mut().expect("made above");
        let entries: Vec<SeqEntry> =
            which.iter().zip(&shapes).map(|(&i, s)| SeqEntry { kv_len: (seqs[i].kv.len + 1) as u32, max_seq: s.max_seq, _p: [0; 2] }).collect();
        g.write(&at.seqs, 0, bytemuck::cast_slice(&entries));
        let n = which.len() as u32;
        g.write(&at.step, 0, bytemuck::bytes_of(&Step { pos: 0, n_tokens: n, kv_len: n, _pad: 0 }));
        let key: Vec<(u64, u32)> = which.iter().map(|&i| (seqs[i].batch.as_ref().expect("made in forward_batch").id, at.n_split)).collect();
        let caches: Vec<Vec<_>> = which.iter().map(|&i| (0..n_layers).map(|l| plain(i, l).map(|(k, v, _)| (k, v))).collect()).collect();
        at.record(g, &self.acts, &shape, key, &caches);
    }

    /// Build the plans (and compile the kernels) of batched steps of up
    /// to `sequences` sequences now, so that no request waits for them.
    /// The largest first: its buffers serve the smaller plans, which
    /// growing them would record again.
    pub fn prepare_batch(&mut self, sequences: usize) -> Result<()> {
        let mut slots = batch_slots(sequences.clamp(2, MAX_BATCH));
        while slots >= 2 {
            self.ensure_batch(slots)?;
            slots /= 2;
        }
        Ok(())
    }

    /// The batch's buffers for at least `b` tokens, and its plan for `b` token slots.
    fn ensure_batch(&mut self, b: usize) -> Result<()> {
        if self.batch.as_ref().is_none_or(|bb| bb.tokens < b) {
            let (g, vocab) = (&self.gpu, self.cfg.vocab_size as u64);
            let tokens = b.max(self.batch.as_ref().map_or(0, |bb| bb.tokens));
            let logits = g.buffer("batch.logits", 4 * vocab * tokens as u64);
            self.batch = Some(BatchBufs {
                tokens,
                positions: g.buffer("batch.positions", 4 * tokens as u64),
                staging: g.staging(4 * vocab * tokens as u64),
                logits,
                plans: HashMap::new(),
                attn: None,
            });
        }
        if self.batch.as_ref().is_some_and(|bb| bb.plans.contains_key(&b)) {
            return Ok(());
        }
        let bufs = self.batch.as_ref().expect("made above");
        let plan = self.record_forward(b, Some(&bufs.positions))?;
        let head = self.record_batch_head(b, &bufs.logits);
        self.batch.as_mut().expect("made above").plans.insert(b, (plan, head));
        Ok(())
    }

    /// The LM head over all `b` tokens' normed states (softcapped where the recipe says) into `logits`.
    fn record_batch_head(&self, b: usize, logits: &wgpu::Buffer) -> Vec<Dispatch> {
        let (g, nt) = (&*self.gpu, b as u32);
        let hw = self.output.as_ref().unwrap_or(&self.embed);
        let mm = linear::words_shape(g, hw.enc(), nt).unwrap_or(Tuning::for_caps(&g.caps).matmul_for(nt));
        let head = hw.blocks.iter().map(|(w, rows)| linear::matmul_with(g, mm, hw.enc(), w, &self.acts.xn, logits, &self.step, *rows, hw.cols, nt, false));
        let cap = self.cfg.final_softcap.map(|cap| ew::softcap(g, logits, cap, nt * self.cfg.vocab_size as u32));
        head.chain(cap).collect()
    }
}
