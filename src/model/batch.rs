//! A batched decode step: one token of each of several sequences, each with
//! its own KV cache and position, through one forward (`wgkv serve`'s
//! concurrent requests). The weight kernels run once for all of them (the
//! matmuls a prefill of that many tokens runs, which load and unpack each
//! weight once for every token), RoPE reads each token's position from a
//! table, and each layer's attention runs per sequence on its own cache,
//! recorded once per cache: the rows of the batch's q, k and v are copied
//! into the sequence's own buffers and its output back, so every KV policy's
//! attention runs exactly as in a one-token step.

use super::{Model, Plan};
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
use crate::kv::{KvCache, LayerIo};
use crate::ops::Step;
use crate::ops::elementwise as ew;
use crate::ops::linear;
use crate::ops::tuning::Tuning;
use crate::{Error, Result};
use std::collections::HashMap;

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
}

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
}

/// Token slots of the plan that runs a batch of `b` sequences: a power of
/// two, so that four plans serve every batch (the step uniform carries `b`;
/// the kernels leave the slots past it alone or compute rows nobody reads).
fn batch_slots(b: usize) -> usize {
    b.next_power_of_two().max(2)
}

impl Model {
    /// One decode step for each of `seqs`, the caches of as many sequences
    /// (none of them the model's own), feeding `tokens[i]` to `seqs[i]`:
    /// returns each one's logits (`vocab_size` floats). Each cache gains
    /// its token as a one-token `forward` would add it; the logits equal
    /// that call's up to the order of the weight kernels' sums.
    pub fn forward_batch(&mut self, seqs: &mut [&mut super::CacheSlot], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
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
        let (g, c) = (&*self.gpu, &self.cfg);
        let (q_dim, kv_dim) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let mut positions = Vec::with_capacity(b);
        for s in seqs.iter_mut() {
            s.kv.before_call(g, 1)?;
            let io = s.batch.get_or_insert_with(|| Box::new(SeqIo::new(g, q_dim, kv_dim)));
            io.record(g, &s.kv, c.n_layers);
            let step = Step { pos: s.kv.pos as u32, n_tokens: 1, kv_len: (s.kv.len + 1) as u32, _pad: 0 };
            g.write(&io.step, 0, bytemuck::bytes_of(&step));
            positions.push(s.kv.pos as u32);
        }
        let bufs = self.batch.as_ref().expect("ensure_batch made them");
        let (plan, head) = &bufs.plans[&slots];
        g.write(&self.step, 0, bytemuck::bytes_of(&Step { pos: 0, n_tokens: b as u32, kv_len: b as u32, _pad: 0 }));
        g.write(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
        g.write(&bufs.positions, 0, bytemuck::cast_slice(&positions));
        let a = &self.acts;
        let mut enc = g.encoder();
        let mut from = 0;
        for (l, &cut) in plan.cuts.iter().enumerate() {
            g.record(&mut enc, "batch", &plan.body[from..cut]);
            from = cut;
            for (i, s) in seqs.iter().enumerate() {
                let io = s.batch.as_ref().expect("made above");
                for (src, dst, n) in [(&a.q, &io.q, q_dim), (&a.k, &io.k, kv_dim), (&a.v, &io.v, kv_dim)] {
                    g.copy(&mut enc, src, (i * n * 4) as u64, dst, 0, (n * 4) as u64);
                }
            }
            g.record(&mut enc, "batch.attention", seqs.iter().flat_map(|s| &s.batch.as_ref().expect("made above").layers[l]));
            for (i, s) in seqs.iter().enumerate() {
                let io = s.batch.as_ref().expect("made above");
                g.copy(&mut enc, &io.att, 0, &a.att, (i * q_dim * 4) as u64, (q_dim * 4) as u64);
            }
        }
        g.record(&mut enc, "batch", plan.body[from..].iter().chain(head));
        let vocab = c.vocab_size;
        let bytes = g.readback_into(enc, &bufs.logits, 0, (4 * b * vocab) as u64, &bufs.staging);
        let logits: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        for s in seqs.iter_mut() {
            s.kv.advance(1);
            s.kv.after_call(g, 1, 1)?;
        }
        Ok(logits.chunks(vocab).map(<[f32]>::to_vec).collect())
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
