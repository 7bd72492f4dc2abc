//! The model on the GPU: weights uploaded in their GGUF blocks, activations
//! allocated once, and the forward pass recorded once per phase as a list
//! of dispatches whose bind groups never change.

use crate::arch::{Block, Role};
use crate::config::{ModelConfig, RopeStyle};
use crate::gpu::Gpu;
use crate::kernels::Dispatch;
use crate::kv::{KvCache, KvSpec, LayerIo};
use crate::memory;
use crate::ops::elementwise::{self as ew, Rope, RopeLayout};
use crate::ops::linear::{self, Enc, MatvecShape, NormIn, NormOut, Rows};
use crate::ops::tuning::Tuning;
use crate::ops::{Step, sample};
use crate::profile::{self, Item, Profile};
use crate::quant::{Layout, WType};
use crate::weights::Weights;
use crate::{Error, Result};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod batch;
pub use crate::kv::MAX_CHUNK;
pub use batch::MAX_BATCH;
/// Candidates the GPU returns for sampling.
pub const TOPK: usize = 64;
// `memory::Need` counts the top-k readout for the kernels' largest K.
const _: () = assert!(TOPK == sample::TOPK_K as usize);

/// A weight matrix on the GPU: its GGUF blocks (in the file's layout or
/// split, as the adapter's tuning asks: `quant::Layout`), type and shape,
/// in row blocks that each fit the adapter's storage binding limit (one
/// block unless the matrix is larger than the limit), and the bias its
/// output adds where the recipe has one (`[rows]` f32).
pub struct Matrix {
    pub blocks: Vec<(wgpu::Buffer, Rows)>,
    pub wtype: WType,
    pub layout: Layout,
    pub rows: u32,
    pub cols: u32,
    pub bias: Option<wgpu::Buffer>,
}

impl Matrix {
    /// Upload `t` (`[rows, cols]`) in `layout` where its type has it,
    /// split into row blocks of at most `limit` bytes.
    fn upload(gpu: &Gpu, name: &str, t: &crate::weights::Tensor, limit: u64, split: bool, pending: &Cell<u64>) -> Result<Matrix> {
        let (cols, rows) = (t.dims[0] as u32, t.dims.get(1).copied().unwrap_or(1) as u32);
        let layout = Layout::for_type(t.wtype, split);
        let rb = t.wtype.row_bytes_in(cols as usize, layout) as u64;
        let file_rb = t.wtype.row_bytes(cols as usize) as u64;
        let per = (limit / rb.max(1)).min(rows as u64) as u32;
        if per == 0 {
            return Err(Error::msg(format!("tensor {name}: one row is {rb} bytes, above this adapter's storage binding limit of {limit} bytes")));
        }
        let blocks = Rows::split(rows, per)
            .into_iter()
            .map(|r| {
                let bytes = &t.data[(r.first as u64 * file_rb) as usize..((r.first + r.count) as u64 * file_rb) as usize];
                (gpu.upload_staged(name, &t.wtype.arrange(bytes, cols as usize, layout), pending), r)
            })
            .collect();
        Ok(Matrix { blocks, wtype: t.wtype, layout, rows, cols, bias: None })
    }

    /// `ts` (`names`, each `[rows_i, cols]`) stacked in one buffer where they
    /// share a type and a width and fit one binding of `limit` bytes: one
    /// matrix per tensor, each reading its own rows of the buffer
    /// ([`Rows::stacked`]), so that a decode step computes them in one
    /// dispatch (`linear::matvec_qkv`, `linear::matvec_glu`; see
    /// [`Matrix::stacked`]). Otherwise each is uploaded alone.
    fn upload_stack(gpu: &Gpu, names: &[String], ts: &[&crate::weights::Tensor], limit: u64, split: bool, pending: &Cell<u64>) -> Result<Vec<Matrix>> {
        let first = ts[0];
        let cols = first.dims[0] as usize;
        let layout = Layout::for_type(first.wtype, split);
        let rb = first.wtype.row_bytes_in(cols, layout) as u64;
        let rows = |t: &crate::weights::Tensor| t.dims.get(1).copied().unwrap_or(1) as u32;
        let same = ts.iter().all(|t| t.wtype == first.wtype && t.dims[0] as usize == cols && t.dims.len() <= 2);
        let total: u64 = ts.iter().map(|t| rows(t) as u64).sum();
        if ts.len() < 2 || !same || total * rb > limit {
            return names.iter().zip(ts).map(|(name, t)| Matrix::upload(gpu, name, t, limit, split, pending)).collect();
        }
        let bytes: Vec<u8> = ts.iter().flat_map(|t| t.wtype.arrange(&t.data, cols, layout)).collect();
        let buffer = gpu.upload_staged(&names.join("+"), &bytes, pending);
        let mut from = 0;
        Ok(ts
            .iter()
            .map(|t| {
                let m = Matrix {
                    blocks: vec![(buffer.clone(), Rows::stacked(rows(t), from))],
                    wtype: t.wtype,
                    layout,
                    rows: rows(t),
                    cols: cols as u32,
                    bias: None,
                };
                from += rows(t);
                m
            })
            .collect())
    }

    /// Where `ms` are consecutive row ranges of one buffer (`upload_stack`),
    /// in order: the buffer and the first row of each.
    fn stacked<'m>(ms: &[&'m Matrix]) -> Option<(&'m wgpu::Buffer, Vec<u32>)> {
        let (buffer, _) = ms[0].blocks.first()?;
        let mut froms = Vec::with_capacity(ms.len());
        for m in ms {
            match m.blocks.as_slice() {
                [(b, r)] if b == buffer && m.enc() == ms[0].enc() && m.cols == ms[0].cols => froms.push(r.from),
                _ => return None,
            }
        }
        let consecutive = ms.windows(2).zip(froms.windows(2)).all(|(m, f)| f[1] == f[0] + m[0].rows);
        consecutive.then_some((buffer, froms))
    }

    /// The type and layout the kernels read.
    fn enc(&self) -> Enc {
        Enc { wtype: self.wtype, layout: self.layout }
    }

    fn with_bias(self, bias: Option<wgpu::Buffer>) -> Matrix {
        Matrix { bias, ..self }
    }
}

struct Layer {
    attn_norm: wgpu::Buffer,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    /// Per-head RMSNorm weights of Q and K (`[head_dim]` each), where the recipe has QK-norm.
    qk_norm: Option<[wgpu::Buffer; 2]>,
    wo: Matrix,
    ffn_norm: wgpu::Buffer,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
    /// Norms of the attention and FFN outputs before their residual adds
    /// (`[dim]` each), in the sandwich block.
    post_norms: Option<[wgpu::Buffer; 2]>,
}

impl Layer {
    /// Q, K and V as the decode step's one `matvec_qkv` reads them, where
    /// the loader stacked them: the buffer, Q's first row, the biases (all
    /// three or none).
    fn qkv_stack(&self) -> Option<(&wgpu::Buffer, u32, Option<[&wgpu::Buffer; 3]>)> {
        let bias = match (&self.wq.bias, &self.wk.bias, &self.wv.bias) {
            (Some(q), Some(k), Some(v)) => Some([q, k, v]),
            (None, None, None) => None,
            _ => return None,
        };
        let (buffer, from) = Matrix::stacked(&[&self.wq, &self.wk, &self.wv])?;
        Some((buffer, from[0], bias))
    }

    /// Gate and up as `matvec_glu` reads them: the buffer and each one's first row.
    fn glu_stack(&self) -> Option<(&wgpu::Buffer, [u32; 2])> {
        let (buffer, from) = Matrix::stacked(&[&self.gate, &self.up])?;
        Some((buffer, [from[0], from[1]]))
    }
}

/// Activations for up to `tokens` tokens; each field's shape in comments.
struct Acts {
    ids: wgpu::Buffer,  // [tokens] u32
    x: wgpu::Buffer,    // [tokens, dim] residual stream
    xn: wgpu::Buffer,   // [tokens, dim] normed
    q: wgpu::Buffer,    // [tokens, n_heads * head_dim]
    k: wgpu::Buffer,    // [tokens, kv_dim]
    v: wgpu::Buffer,    // [tokens, kv_dim]
    att: wgpu::Buffer,  // [tokens, n_heads * head_dim] attention output
    gate: wgpu::Buffer, // [tokens, hidden]
    up: wgpu::Buffer,   // [tokens, hidden]
    hb: wgpu::Buffer,   // [tokens, hidden] silu(gate) * up
    nss: wgpu::Buffer,  // the folded norm's partial sums of squares (decode)
}

impl Acts {
    /// The folded norm with `gain`'s input as a residual matvec leaves it: in xn and nss.
    fn norm_out<'b>(&'b self, gain: &'b wgpu::Buffer) -> NormOut<'b> {
        NormOut { gain, xg: &self.xn, parts: &self.nss }
    }
}

/// What a forward call reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readout {
    /// The greedy next token id (4 bytes).
    Argmax,
    /// The top candidates with their logits and the log-sum-exp of all logits.
    TopK,
    /// Every logit of the last token (evaluation only).
    Logits,
}

#[derive(Clone, Debug)]
pub enum Output {
    Argmax(u32),
    TopK { cands: Vec<(u32, f32)>, lse: f32 },
    Logits(Vec<f32>),
}

/// A recorded forward pass for a fixed number of token slots: the body
/// (embedding through final norm) and the head (LM head on the last token,
/// argmax and top-k).
struct Plan {
    body: Vec<Dispatch>,
    /// A batched decode step's plan ([`Model::forward_batch`]): where in
    /// `body` each layer's attention goes (recorded per sequence); empty otherwise.
    cuts: Vec<usize>,
    head: Vec<Dispatch>,
    argmax: Vec<Dispatch>,
    topk: Vec<Dispatch>,
}

pub struct Model {
    pub cfg: ModelConfig,
    pub gpu: Arc<Gpu>,
    pub kv: KvCache,
    pub weight_bytes: u64,
    pub weight_type: String,
    embed: Matrix,
    output: Option<Matrix>,
    output_norm: wgpu::Buffer,
    layers: Vec<Layer>,
    /// Llama 3 RoPE frequency divisors (`[head_dim / 2]`), folded into RoPE's frequency table.
    rope_factors: Option<Vec<f32>>,
    step: wgpu::Buffer,
    last: wgpu::Buffer,    // [dim] the last token's normed state
    logits: wgpu::Buffer,  // [vocab]
    best: wgpu::Buffer,    // argmax: [id, max logit]
    topk: wgpu::Buffer,    // top-k: see ops::sample::topk
    staging: wgpu::Buffer, // MAP_READ, the largest readout (all logits)
    acts: Acts,            // sized for MAX_CHUNK tokens, shared by every plan
    plans: HashMap<usize, Plan>,
    plans_generation: u64,           // the KV cache's generation the plans were recorded for
    batch: Option<batch::BatchBufs>, // a batched decode step's, made at its first use
    /// Checked between prefill chunks: when set, `forward` stops with
    /// `Error::Interrupted`, leaving a partly filled cache to `reset`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called after each chunk of a multi-chunk call with (tokens done,
    /// tokens in the call), once the chunk has run: a progress bar.
    pub on_prefill: Option<Box<dyn FnMut(usize, usize) + Send>>,
}

/// A KV cache with the forward plans recorded for it: what `Model::swap_cache`
/// exchanges, so that one model serves several conversations, each keeping
/// its own cache on the GPU (`wgkv serve`).
pub struct CacheSlot {
    kv: KvCache,
    plans: HashMap<usize, Plan>,
    plans_generation: u64,
    /// Its side of a batched decode step, made at its first.
    batch: Option<Box<batch::SeqIo>>,
}

impl CacheSlot {
    pub fn kv(&self) -> &KvCache {
        &self.kv
    }
    pub fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }
}

impl Model {
    /// Upload `w` and allocate a KV cache of `ctx` tokens under `spec`,
    /// after checking that they fit the device's memory where it is known;
    /// GPU errors while allocating (out of memory, validation) are returned.
    pub fn load(gpu: Arc<Gpu>, w: &Weights, ctx: usize, spec: KvSpec) -> Result<Model> {
        if ctx == 0 || ctx > w.cfg.max_seq {
            return Err(Error::msg(format!("--ctx {ctx} is outside 1..={} (the model's context length)", w.cfg.max_seq)));
        }
        let need_at = |c: usize| Model::need(&gpu, w, &spec, c);
        memory::check(need_at, memory::available(&gpu, gpu.stated_memory), ctx)?;
        let g = gpu.clone();
        memory::scoped(&g, "loading the model", || Model::upload(gpu, w, ctx, spec))
    }

    /// The figure `load` checks against the device's memory for `w` at
    /// `ctx` tokens under `spec`.
    pub fn need(gpu: &Gpu, w: &Weights, spec: &KvSpec, ctx: usize) -> Result<memory::Need> {
        memory::Need::new(&w.cfg, w.gpu_bytes(Tuning::for_caps(&gpu.caps).split_weights), spec, ctx, &gpu.caps)
    }

    fn upload(gpu: Arc<Gpu>, w: &Weights, ctx: usize, spec: KvSpec) -> Result<Model> {
        let cfg = w.cfg.clone();
        // Bytes of weight writes queued since the last submit (`Gpu::upload_staged`).
        let pending = std::cell::Cell::new(0);
        let mut weight_bytes = 0u64;
        let mut types = std::collections::BTreeMap::<&str, usize>::new();
        let split = Tuning::for_caps(&gpu.caps).split_weights;
        // Matrices a decode step computes together (Q/K/V, gate/up) are
        // stacked in one buffer where they can be (`Matrix::upload_stack`).
        let mut stack = |names: &[String]| -> Result<Vec<Matrix>> {
            let ts = names.iter().map(|n| w.get(n)).collect::<Result<Vec<_>>>()?;
            for (name, t) in names.iter().zip(&ts) {
                check_finite(name, t)?;
                weight_bytes += t.data.len() as u64;
                *types.entry(t.wtype.name()).or_default() += 1;
            }
            Matrix::upload_stack(&gpu, names, &ts, gpu.caps.max_storage_binding.min(gpu.caps.max_buffer), split, &pending)
        };
        let arch = cfg.family;
        let name = |role: Role, l: Option<usize>| arch.tensor_name(role, l);
        let vector = |name: &str| upload_vector(&gpu, w, name, &pending);
        // A layer's vector the recipe may leave out (a bias, a QK-norm weight): uploaded where the table has it.
        let optional = |role: Role, l: usize| arch.spec(role).filter(|t| cfg.has(t.presence)).map(|t| vector(&t.name(Some(l)))).transpose();
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let n = |role: Role| name(role, Some(i));
            let qk_norm = match (optional(Role::QNorm, i)?, optional(Role::KNorm, i)?) {
                (Some(q), Some(k)) => Some([q, k]),
                _ => None,
            };
            let post_norms = match (optional(Role::PostAttnNorm, i)?, optional(Role::PostFfnNorm, i)?) {
                (Some(a), Some(f)) => Some([a, f]),
                _ => None,
            };
            let [wq, wk, wv]: [Matrix; 3] = stack(&[n(Role::Wq), n(Role::Wk), n(Role::Wv)])?.try_into().map_err(|_| Error::msg("internal: three matrices"))?;
            let [gate, up]: [Matrix; 2] = stack(&[n(Role::Gate), n(Role::Up)])?.try_into().map_err(|_| Error::msg("internal: two matrices"))?;
            layers.push(Layer {
                attn_norm: vector(&n(Role::AttnNorm))?,
                wq: wq.with_bias(optional(Role::Bq, i)?),
                wk: wk.with_bias(optional(Role::Bk, i)?),
                wv: wv.with_bias(optional(Role::Bv, i)?),
                qk_norm,
                wo: one(stack(&[n(Role::Wo)])?),
                ffn_norm: vector(&n(Role::FfnNorm))?,
                gate,
                up,
                down: one(stack(&[n(Role::Down)])?),
                post_norms,
            });
        }
        let embed = one(stack(&[name(Role::Embed, None)])?);
        let output = if cfg.tied_embeddings { None } else { Some(one(stack(&[name(Role::Output, None)])?)) };
        let weight_type = types.iter().map(|(k, v)| format!("{k}×{v}")).collect::<Vec<_>>().join(" ");
        let output_norm = vector(&name(Role::OutputNorm, None))?;
        let rope_factors = w.rope_factors()?;
        let kv = checked_cache(&gpu, &cfg, ctx, spec)?;
        let step = gpu.uniform("step", bytemuck::bytes_of(&Step::default()));
        let [last, logits, best, topk, readback] = memory::readouts(&cfg, sample::topk_words(TOPK as u32));
        let last = gpu.activations(last.0, last.1);
        let [logits, best, topk] = [logits, best, topk].map(|(label, bytes)| gpu.buffer(label, bytes));
        let acts = alloc_acts(&gpu, &cfg, MAX_CHUNK);
        let staging = gpu.staging(readback.1);
        let mut m = Model {
            cfg,
            gpu,
            kv,
            weight_bytes,
            weight_type,
            embed,
            output,
            output_norm,
            layers,
            rope_factors,
            step,
            last,
            logits,
            best,
            topk,
            staging,
            acts,
            plans: HashMap::new(),
            plans_generation: 0,
            batch: None,
            cancel: None,
            on_prefill: None,
        };
        // Record the decode plan now so the first token pays no pipeline builds.
        m.ensure_plan(1)?;
        // Return the last staging copies of the queued writes.
        m.gpu.flush();
        Ok(m)
    }

    /// An empty cache of `ctx` tokens under `spec` for this model, after the
    /// checks `load` makes of its attention shapes against the adapter.
    pub fn new_cache(&self, spec: KvSpec, ctx: usize) -> Result<CacheSlot> {
        if ctx == 0 || ctx > self.cfg.max_seq {
            return Err(Error::msg(format!("a context of {ctx} tokens is outside 1..={} (the model's context length)", self.cfg.max_seq)));
        }
        let kv = memory::scoped(&self.gpu, "allocating a KV cache", || checked_cache(&self.gpu, &self.cfg, ctx, spec))?;
        Ok(CacheSlot { kv, plans: HashMap::new(), plans_generation: 0, batch: None })
    }

    /// Exchange the model's cache (and the plans recorded for it) with `slot`'s.
    pub fn swap_cache(&mut self, slot: &mut CacheSlot) {
        std::mem::swap(&mut self.kv, &mut slot.kv);
        std::mem::swap(&mut self.plans, &mut slot.plans);
        std::mem::swap(&mut self.plans_generation, &mut slot.plans_generation);
    }

    /// Weight row blocks on the GPU: one per matrix (matrices stacked in
    /// one buffer count one each), more where a matrix above the storage
    /// binding limit is split into row blocks.
    pub fn weight_blocks(&self) -> usize {
        let mats = self.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]);
        mats.chain(std::iter::once(&self.embed)).chain(&self.output).map(|m| m.blocks.len()).sum()
    }

    /// Position of the next token (tokens run since the last reset).
    pub fn pos(&self) -> usize {
        self.kv.pos
    }

    pub fn reset(&mut self) {
        self.kv.reset(&self.gpu);
    }

    /// Run `tokens` (appended after the cached ones) and read out the last
    /// token's prediction. Long inputs are prefilled in chunks.
    pub fn forward(&mut self, tokens: &[u32], out: Readout) -> Result<Output> {
        self.forward_shared(tokens, out, &mut [])
    }

    /// `forward` on an empty cache, once, for `forks` too: empty models on
    /// the same GPU whose caches have this one's prefill key (the same
    /// policy family and context, other budgets or allocations). Each fork
    /// copies the cache before its own eviction cut; the readout, taken
    /// before any cut, is theirs as well. Measurement runs many policies
    /// over one long prompt this way, paying for the prefill once.
    pub fn forward_shared(&mut self, tokens: &[u32], out: Readout, forks: &mut [Model]) -> Result<Output> {
        self.check_input(tokens)?;
        if !forks.is_empty() {
            let key = self.kv.prefill_key();
            let fits = |f: &Model| Arc::ptr_eq(&f.gpu, &self.gpu) && f.kv.pos == 0 && key.is_some() && f.kv.prefill_key() == key;
            if self.kv.pos != 0 || !forks.iter().all(fits) {
                return Err(Error::msg(format!(
                    "internal: a shared prefill needs empty caches of one family on one GPU (--kv {} with {})",
                    self.kv.spec,
                    forks.iter().map(|f| f.kv.spec.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let chunks = chunk_tokens(tokens, MAX_CHUNK.min(self.kv.max_call()), self.kv.min_last_chunk());
        let last_len = chunks.last().map_or(0, |c| c.len());
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 && self.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
                return Err(Error::Interrupted);
            }
            let last = i + 1 == chunks.len();
            let slots = plan_slots(chunk.len());
            self.kv.before_call(&self.gpu, chunk.len())?;
            self.ensure_plan(slots)?;
            let step = Step { pos: self.kv.pos as u32, n_tokens: chunk.len() as u32, kv_len: (self.kv.len + chunk.len()) as u32, _pad: 0 };
            let acts = &self.acts;
            self.gpu.write(&self.step, 0, bytemuck::bytes_of(&step));
            self.gpu.write(&acts.ids, 0, bytemuck::cast_slice(chunk));
            let plan = &self.plans[&slots];
            let mut enc = self.gpu.encoder();
            self.gpu.record(&mut enc, "forward", &plan.body);
            self.kv.advance(chunk.len());
            if !last {
                self.gpu.submit(enc);
                if let Some(report) = self.on_prefill.as_mut() {
                    self.gpu.wait();
                    let done: usize = chunks[..=i].iter().map(|c| c.len()).sum();
                    report(done, tokens.len());
                }
                continue;
            }
            // The last token's normed state feeds the LM head.
            let dim4 = 4 * self.cfg.dim as u64;
            self.gpu.copy(&mut enc, &acts.xn, (chunk.len() as u64 - 1) * dim4, &self.last, 0, dim4);
            let select: &[Dispatch] = match out {
                Readout::Argmax => &plan.argmax,
                Readout::TopK => &plan.topk,
                Readout::Logits => &[],
            };
            self.gpu.record(&mut enc, "head", plan.head.iter().chain(select));
            let output = match out {
                Readout::Argmax => {
                    let b = self.gpu.readback_into(enc, &self.best, 0, 4, &self.staging);
                    Output::Argmax(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                }
                Readout::TopK => {
                    let b = self.gpu.readback_into(enc, &self.topk, 0, 4 * sample::topk_words(TOPK as u32) as u64, &self.staging);
                    let t = sample::TopK::parse(&bytemuck::pod_collect_to_vec::<u8, u32>(&b), TOPK as u32)?;
                    Output::TopK { cands: t.candidates, lse: t.lse }
                }
                Readout::Logits => {
                    let b = self.gpu.readback_into(enc, &self.logits, 0, 4 * self.cfg.vocab_size as u64, &self.staging);
                    Output::Logits(bytemuck::pod_collect_to_vec(&b))
                }
            };
            if let (Some(report), true) = (self.on_prefill.as_mut(), chunks.len() > 1) {
                report(tokens.len(), tokens.len());
            }
            for f in forks.iter_mut() {
                f.kv.copy_prefill_from(&f.gpu, &self.kv);
                f.kv.after_call(&f.gpu, tokens.len(), last_len)?;
            }
            self.kv.after_call(&self.gpu, tokens.len(), last_len)?;
            return Ok(output);
        }
        unreachable!("chunks is non-empty")
    }

    /// Run one chunk (at most `MAX_CHUNK` tokens) like `forward` with an
    /// argmax readout, timing every kernel (see `profile`).
    pub fn profile(&mut self, tokens: &[u32]) -> Result<Profile> {
        self.check_input(tokens)?;
        if tokens.len() > MAX_CHUNK {
            return Err(Error::msg(format!("profile runs one chunk of at most {MAX_CHUNK} tokens")));
        }
        let n = tokens.len();
        if n > self.kv.max_call() {
            return Err(Error::msg(format!("profile runs one call of at most {} tokens under this --kv policy", self.kv.max_call())));
        }
        let slots = plan_slots(n);
        self.kv.before_call(&self.gpu, n)?;
        self.ensure_plan(slots)?;
        let step = Step { pos: self.kv.pos as u32, n_tokens: n as u32, kv_len: (self.kv.len + n) as u32, _pad: 0 };
        self.gpu.write(&self.step, 0, bytemuck::bytes_of(&step));
        self.gpu.write(&self.acts.ids, 0, bytemuck::cast_slice(tokens));
        let plan = &self.plans[&slots];
        let dim4 = 4 * self.cfg.dim as u64;
        let mut items: Vec<Item> = plan.body.iter().map(Item::Dispatch).collect();
        items.push(Item::Copy { src: &self.acts.xn, offset: (n as u64 - 1) * dim4, dst: &self.last, dst_offset: 0, bytes: dim4 });
        items.extend(plan.head.iter().chain(&plan.argmax).map(Item::Dispatch));
        let p = profile::run(&self.gpu, &items);
        self.kv.advance(n);
        self.kv.after_call(&self.gpu, n, n)?;
        Ok(p)
    }

    fn check_input(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::msg("nothing to run: empty token list"));
        }
        if self.kv.room().is_some_and(|room| tokens.len() > room) {
            return Err(Error::msg(format!(
                "context full: {} cached + {} new tokens exceed the {}-token context (raise --ctx or choose a --kv eviction policy such as streaming or h2o)",
                self.kv.len,
                tokens.len(),
                self.kv.capacity
            )));
        }
        self.check_ids(tokens)
    }

    fn check_ids(&self, tokens: &[u32]) -> Result<()> {
        match tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            Some(&bad) => Err(Error::msg(format!("token id {bad} is outside the vocabulary of {}", self.cfg.vocab_size))),
            None => Ok(()),
        }
    }

    fn ensure_plan(&mut self, slots: usize) -> Result<()> {
        if self.plans_generation != self.kv.generation() {
            self.plans.clear(); // a cache buffer they bind was replaced
            self.plans_generation = self.kv.generation();
        }
        if !self.plans.contains_key(&slots) {
            let plan = self.record_forward(slots, None)?;
            self.plans.insert(slots, plan);
        }
        Ok(())
    }

    /// The forward pass for `n` token slots, top to bottom: embedding (times
    /// the recipe's scale where it has one); per layer the recipe's block
    /// ([`Block`]); final norm. Both blocks share the attention (norm, q/k/v
    /// each plus its bias where the recipe has one, per-head QK-norm where it
    /// has that, RoPE with the layer's base, KV append, attention):
    /// - `PreNorm` (Llama, Qwen): the output projection added to the
    ///   residual; SwiGLU FFN (norm, gate/up, SwiGLU, down added to the residual).
    /// - `Sandwich` (Gemma 3): the output projection normed (`post_attention_norm`)
    ///   then added; GeGLU FFN whose down projection is normed (`post_ffw_norm`) then added.
    ///
    /// The head (LM head, softcapped where the recipe says, argmax, top-k)
    /// runs on the last token only. Kernels
    /// that depend on the position or the token count read the step uniform.
    ///
    /// With `positions` (a batched decode step: `n` tokens of as many
    /// sequences, each at its own position) RoPE reads each token's
    /// position there, the attention is left to the caller (`cuts` says
    /// where each layer's goes: each sequence attends its own cache) and
    /// the head is the caller's too.
    fn record_forward(&self, n: usize, positions: Option<&wgpu::Buffer>) -> Result<Plan> {
        let (g, c, a, step) = (&*self.gpu, &self.cfg, &self.acts, &self.step);
        let nt = n as u32;
        let (dim, hidden) = (c.dim as u32, c.hidden_dim as u32);
        let layout = match c.rope_style {
            RopeStyle::Interleaved => RopeLayout::Interleaved,
            RopeStyle::HalfSplit => RopeLayout::HalfSplit,
        };
        let hd = c.head_dim as u32;
        let factors = self.rope_factors.as_deref();
        let rope = |heads: usize, l: usize| Rope { n_heads: heads as u32, head_dim: hd, rot_dim: hd, base: c.layer_rope_theta(l) as f64, layout, factors };
        // y (+)= W x, then + bias where the matrix has one. Decode (one token)
        // uses matrix-vector kernels, prefill tiled matmuls (the adapter's
        // choice for a call of n slots: CPU adapters take short calls with
        // lanes across rows). A matrix split into row blocks is one dispatch per block.
        let (mv, mm) = (MatvecShape::for_gpu(g), Tuning::for_caps(&g.caps).matmul_for(nt));
        // A batched decode step takes `matmul_words` where the weights suit it.
        let lin = |m: &Matrix, x: &wgpu::Buffer, y: &wgpu::Buffer, accum: bool| -> Vec<Dispatch> {
            let mm = positions.and(linear::words_shape(g, m.enc(), nt)).unwrap_or(mm);
            let one = |(w, rows): &(wgpu::Buffer, Rows)| match n {
                1 => linear::matvec_with(g, mv, m.enc(), w, x, y, *rows, m.cols, accum),
                _ => linear::matmul_with(g, mm, m.enc(), w, x, y, step, *rows, m.cols, nt, accum),
            };
            let bias = m.bias.iter().map(|b| ew::add_bias(g, y, b, nt, m.rows));
            m.blocks.iter().map(one).chain(bias).collect()
        };
        // Decode folds the pre-norms of PreNorm blocks into the fused kernels
        // (a dispatch costs lavapipe more than a norm's work): the residual
        // matvec before a norm also leaves x * gain in xn and its sums of
        // squares in nss (`rms_parts` does for the first layer), and
        // matvec_qkv / matvec_glu apply the norm's scale to their sums.
        let fold = n == 1 && c.family.block() == Block::PreNorm && linear::can_fold_norm(mv, dim);
        let fold_attn = |w: &Layer| fold && w.qkv_stack().is_some();
        let fold_ffn = |w: &Layer| fold && w.glu_stack().is_some();
        let norm_in = NormIn { parts: &a.nss, dim, eps: c.norm_eps };
        // q, k, v (+ biases) from xn: in one dispatch when decoding
        // matrices the loader stacked (dispatches cost lavapipe more than
        // small matrices' work), else one matvec or matmul each.
        let qkv = |w: &Layer, norm: Option<NormIn>| -> Vec<Dispatch> {
            match (n, w.qkv_stack()) {
                (1, Some((buf, from, bias))) => {
                    let rows = [w.wq.rows, w.wk.rows, w.wv.rows];
                    vec![linear::matvec_qkv(g, mv, w.wq.enc(), buf, from, rows, w.wq.cols, &a.xn, [&a.q, &a.k, &a.v], bias, norm)]
                }
                _ => [(&w.wq, &a.q), (&w.wk, &a.k), (&w.wv, &a.v)].into_iter().flat_map(|(m, y)| lin(m, &a.xn, y, false)).collect(),
            }
        };
        // act(gate xn) * (up xn) into hb, likewise fused when decoding.
        let glu = |w: &Layer, gelu: bool, norm: Option<NormIn>| -> Vec<Dispatch> {
            match (n, w.glu_stack()) {
                (1, Some((buf, from))) => vec![linear::matvec_glu(g, mv, w.gate.enc(), buf, from, hidden, w.gate.cols, &a.xn, &a.hb, gelu, norm)],
                _ => {
                    let mut d = lin(&w.gate, &a.xn, &a.gate, false);
                    d.extend(lin(&w.up, &a.xn, &a.up, false));
                    d.push(if gelu { ew::geglu(g, &a.gate, &a.up, &a.hb, nt * hidden) } else { ew::swiglu(g, &a.gate, &a.up, &a.hb, nt * hidden) });
                    d
                }
            }
        };
        // x += m input; where the next norm (its gain given) is folded, also that norm's input.
        let residual = |m: &Matrix, input: &wgpu::Buffer, next: Option<&wgpu::Buffer>| -> Vec<Dispatch> {
            match (next, m.blocks.as_slice()) {
                (Some(gain), [(wb, rows)]) if m.bias.is_none() => {
                    vec![linear::matvec_norm_out(g, mv, m.enc(), wb, input, &a.x, *rows, m.cols, true, a.norm_out(gain))]
                }
                (Some(gain), _) => {
                    let mut d = lin(m, input, &a.x, true);
                    d.push(linear::rms_parts(g, mv, &a.x, dim, a.norm_out(gain)));
                    d
                }
                (None, _) => lin(m, input, &a.x, true),
            }
        };
        let io = LayerIo { q: &a.q, k: &a.k, v: &a.v, out: &a.att, step };
        // Layer `l`'s attention, from the residual `x` to `att`; `ready`:
        // the residual before it left its folded norm's input.
        let attention = |l: usize, w: &Layer, ready: bool| -> Result<Vec<Dispatch>> {
            let mut d = match (fold_attn(w), ready) {
                (false, _) => vec![ew::rmsnorm(g, &a.x, &w.attn_norm, &a.xn, nt, dim, c.norm_eps)],
                (true, false) => vec![linear::rms_parts(g, mv, &a.x, dim, a.norm_out(&w.attn_norm))],
                (true, true) => vec![],
            };
            d.extend(qkv(w, fold_attn(w).then_some(norm_in)));
            if let Some([qn, kn]) = &w.qk_norm {
                d.push(ew::head_norm(g, &a.q, qn, nt * c.n_heads as u32, hd, c.norm_eps));
                d.push(ew::head_norm(g, &a.k, kn, nt * c.n_kv_heads as u32, hd, c.norm_eps));
            }
            match positions {
                None => {
                    d.push(ew::rope_qk(g, &a.q, &a.k, c.n_kv_heads as u32, step, &rope(c.n_heads, l), nt)?);
                    d.extend(self.kv.record_layer(g, l, n, &io));
                }
                Some(at) => d.push(ew::rope_qk_at(g, [&a.q, &a.k], c.n_kv_heads as u32, step, at, &rope(c.n_heads, l), nt)?),
            }
            Ok(d)
        };
        let e = &self.embed;
        let mut d: Vec<Dispatch> = e.blocks.iter().map(|(w, r)| linear::embed_rows(g, e.enc(), w, &a.ids, &a.x, step, *r, dim, nt)).collect();
        if let Some(s) = c.embed_scale {
            d.push(ew::scale(g, &a.x, s, nt * dim));
        }
        let mut ready = false;
        let mut cuts = Vec::new();
        for (l, w) in self.layers.iter().enumerate() {
            d.extend(attention(l, w, ready)?);
            if positions.is_some() {
                cuts.push(d.len());
            }
            ready = false;
            match (c.family.block(), &w.post_norms) {
                (Block::PreNorm, _) => {
                    let ffn = fold_ffn(w);
                    d.extend(residual(&w.wo, &a.att, ffn.then_some(&w.ffn_norm)));
                    if !ffn {
                        d.push(ew::rmsnorm(g, &a.x, &w.ffn_norm, &a.xn, nt, dim, c.norm_eps));
                    }
                    d.extend(glu(w, false, ffn.then_some(norm_in)));
                    let next = self.layers.get(l + 1).filter(|next| fold_attn(next));
                    d.extend(residual(&w.down, &a.hb, next.map(|next| &next.attn_norm)));
                    ready = next.is_some();
                }
                (Block::Sandwich, Some([post_attn, post_ffn])) => {
                    // xn is free once q/k/v and gate/up are computed: each
                    // sublayer's output lands there, is normed in place, added.
                    d.extend(lin(&w.wo, &a.att, &a.xn, false));
                    d.push(ew::head_norm(g, &a.xn, post_attn, nt, dim, c.norm_eps));
                    d.push(ew::add(g, &a.x, &a.xn, nt * dim));
                    d.push(ew::rmsnorm(g, &a.x, &w.ffn_norm, &a.xn, nt, dim, c.norm_eps));
                    d.extend(glu(w, true, None));
                    d.extend(lin(&w.down, &a.hb, &a.xn, false));
                    d.push(ew::head_norm(g, &a.xn, post_ffn, nt, dim, c.norm_eps));
                    d.push(ew::add(g, &a.x, &a.xn, nt * dim));
                }
                (Block::Sandwich, None) => return Err(Error::msg("internal: a sandwich block without its post-norms")),
            }
        }
        d.push(ew::rmsnorm(g, &a.x, &self.output_norm, &a.xn, nt, dim, c.norm_eps));
        if positions.is_some() {
            return Ok(Plan { body: d, cuts, head: vec![], argmax: vec![], topk: vec![] });
        }
        let hw = self.output.as_ref().unwrap_or(&self.embed);
        let vocab = c.vocab_size as u32;
        Ok(Plan {
            body: d,
            cuts,
            head: hw
                .blocks
                .iter()
                .map(|(w, r)| linear::matvec_with(g, mv, hw.enc(), w, &self.last, &self.logits, *r, hw.cols, false))
                .chain(c.final_softcap.map(|cap| ew::softcap(g, &self.logits, cap, vocab)))
                .collect(),
            argmax: sample::argmax(g, &self.logits, &self.best, vocab),
            topk: sample::topk(g, &self.logits, &self.topk, vocab, TOPK as u32)?,
        })
    }
}

/// A KV cache of `ctx` tokens under `spec`, once the attention shapes it
/// needs pass the adapter's limits: its slots', and the prefill's over the
/// whole context (under Mustafar a dense scratch of it).
fn checked_cache(gpu: &Gpu, cfg: &ModelConfig, ctx: usize, spec: KvSpec) -> Result<KvCache> {
    let shape = crate::kv::attn_shape(cfg, KvCache::slots(&spec, ctx)?);
    shape.check(gpu)?;
    let kv = KvCache::new(gpu, cfg, ctx, spec)?;
    let dense = crate::kv::attn_shape(cfg, kv.capacity);
    if dense != shape {
        dense.check(gpu)?;
    }
    Ok(kv)
}

/// Activations for up to `n` tokens.
fn alloc_acts(gpu: &Gpu, c: &ModelConfig, n: usize) -> Acts {
    let [ids, x, xn, q, k, v, att, gate, up, hb, nss] = memory::acts(c, n).map(|(label, bytes)| gpu.activations(label, bytes));
    Acts { ids, x, xn, q, k, v, att, gate, up, hb, nss }
}

/// `tokens` in chunks of at most `size`, the last one carrying at least
/// `min_last` tokens where the input has them (an eviction policy's
/// observation window must sit in one chunk).
fn chunk_tokens(tokens: &[u32], size: usize, min_last: usize) -> Vec<&[u32]> {
    let mut chunks: Vec<&[u32]> = tokens.chunks(size).collect();
    let n = chunks.len();
    if n > 1 && chunks[n - 1].len() < min_last.min(size) {
        // Move the start of the last chunk back into the one before it.
        let end = tokens.len();
        let split = end - min_last.min(size);
        let prev_start = (n - 2) * size;
        chunks[n - 2] = &tokens[prev_start..split];
        chunks[n - 1] = &tokens[split..end];
    }
    chunks
}

/// Token slots of the plan that runs a chunk of `n` tokens: 1 (decode) or a
/// power of two >= 8, so a handful of plans serve every prompt length.
fn plan_slots(n: usize) -> usize {
    if n == 1 { 1 } else { n.next_power_of_two().clamp(8, MAX_CHUNK) }
}

/// A NaN or infinite weight would turn every output into NaN: refuse the file.
fn check_finite(name: &str, t: &crate::weights::Tensor) -> Result<()> {
    match crate::quant::first_non_finite_block(t.wtype, &t.data) {
        Some(i) => Err(Error::msg(format!("tensor {name} holds a NaN or infinite weight ({} block {i}): the model file is corrupt", t.wtype.name()))),
        None => Ok(()),
    }
}

/// The one matrix of a one-name `stack`.
fn one(mut ms: Vec<Matrix>) -> Matrix {
    ms.pop().expect("one matrix per name")
}

/// A vector (norm weight, bias) as f32 whatever its stored type.
fn upload_vector(gpu: &Gpu, w: &Weights, name: &str, pending: &Cell<u64>) -> Result<wgpu::Buffer> {
    let t = w.get(name)?;
    check_finite(name, t)?;
    let n = t.dims.iter().product::<u64>() as usize;
    let v = crate::quant::dequantize(t.wtype, &t.data, n)?;
    Ok(gpu.upload_staged(name, bytemuck::cast_slice(&v), pending))
}

#[cfg(test)]
mod tests {
    use super::chunk_tokens;

    #[test]
    fn the_last_chunk_carries_the_window() {
        let t: Vec<u32> = (0..1030).collect();
        let sizes = |c: Vec<&[u32]>| c.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(chunk_tokens(&t, 512, 8)), vec![512, 510, 8]);
        assert_eq!(sizes(chunk_tokens(&t, 512, 1)), vec![512, 512, 6]);
        assert_eq!(sizes(chunk_tokens(&t[..5], 512, 8)), vec![5]);
        assert_eq!(sizes(chunk_tokens(&t[..20], 16, 32)), vec![4, 16]);
        let c = chunk_tokens(&t, 512, 8);
        assert_eq!(c.concat(), t, "chunks cover the input in order");
    }
}
