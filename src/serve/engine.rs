//! The thread that owns the model: takes requests from a bounded queue,
//! gives each a KV cache (a cached conversation it extends, or a new one
//! within `--kv-memory`), runs up to `--parallel` of them a token at a time
//! in turn, streams their text back, and keeps their caches afterwards.

use super::api::ApiError;
use super::conversations::{Entry, Slot, Store};
use super::metrics::{ConversationInfo, Metrics};
use crate::generate::{StopText, choose, choose_from};
use crate::kv::KvSpec;
use crate::kv::snapshot::KvState;
use crate::model::{CacheSlot, MAX_BATCH, Model};
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// One request, checked and tokenized by its handler.
pub struct Job {
    pub ids: Vec<u32>,
    /// Most tokens to generate (the prompt plus these fit the context).
    pub max_new: usize,
    pub sampling: SamplerConfig,
    pub stop: Vec<String>,
    pub kv: KvSpec,
    /// Bytes a cache under `kv` takes (what `--kv-memory` counts).
    pub kv_bytes: u64,
    pub events: UnboundedSender<Event>,
}

/// What the engine sends back for a job: text as it comes, then one `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Done(Done),
    Error(ApiError),
}

#[derive(Clone, Copy, Debug)]
pub struct Done {
    /// OpenAI's `finish_reason`: `stop` or `length`.
    pub finish: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens found in a cached conversation.
    pub cached_tokens: usize,
}

/// A conversation's cache between requests: on the GPU, or parked in host
/// memory as its kept rows only (`KvCache::save`), which is what an
/// eviction policy's smaller cache is worth: a parked cache takes the bytes
/// of the tokens it keeps, not of the context its GPU cache is sized for.
pub enum Cache {
    Gpu(Box<CacheSlot>),
    Host {
        state: Box<KvState>,
        data: Vec<u8>,
        /// Whether the restored cache can be cut back (see `KvCache::can_truncate`).
        truncatable: bool,
        /// Tokens to keep once restored, where the store cut it.
        cut: Option<usize>,
    },
}

impl Slot for Cache {
    fn can_truncate(&self) -> bool {
        match self {
            Cache::Gpu(s) => s.kv().can_truncate(),
            Cache::Host { truncatable, .. } => *truncatable,
        }
    }
    fn truncate(&mut self, n: usize) {
        match self {
            Cache::Gpu(s) => {
                s.kv_mut().truncate(n);
            }
            Cache::Host { cut, .. } => *cut = Some(n),
        }
    }
}

/// A GPU cache no conversation holds, kept to be reused.
struct Free {
    kv: String,
    bytes: u64,
    slot: CacheSlot,
}

pub struct Engine {
    pub model: Model,
    pub tokenizer: Arc<Tokenizer>,
    pub ctx: usize,
    pub limit: u64,
    pub parallel: usize,
    pub metrics: Arc<Metrics>,
    store: Store<Cache>,
    free: Vec<Free>,
    eog: Vec<u32>,
    next_id: u64,
}

/// A request generating now.
struct Active {
    id: u64,
    kv: String,
    bytes: u64,
    slot: CacheSlot,
    /// Ids in the cache.
    fed: Vec<u32>,
    /// Ids to run next (the prompt's new part, then each sampled token).
    next: Vec<u32>,
    sampler: Sampler,
    dec: StreamDecoder,
    cut: StopText,
    produced: usize,
    max_new: usize,
    prompt_tokens: usize,
    cached: usize,
    events: UnboundedSender<Event>,
}

enum Admit {
    Started(Box<Active>),
    /// Its cache does not fit beside those in use: it waits for one to finish.
    Wait(Job),
    Refused,
}

enum Step {
    Running,
    Finished(&'static str),
    Cancelled,
    Failed,
}

impl Engine {
    /// The engine of `model`, whose loaded cache becomes the first free GPU cache.
    pub fn new(model: Model, tokenizer: Arc<Tokenizer>, ctx: usize, limit: u64, parallel: usize, metrics: Arc<Metrics>) -> crate::Result<Engine> {
        let eog = tokenizer.eog_ids();
        let mut e = Engine { model, tokenizer, ctx, limit, parallel, metrics, store: Store::default(), free: Vec::new(), eog, next_id: 1 };
        if parallel > 1 {
            e.model.prepare_batch(parallel)?;
        }
        // The model keeps a one-token placeholder; the cache it was loaded with is the first free one.
        let mut loaded = e.model.new_cache(KvSpec::full(), 1)?;
        e.model.swap_cache(&mut loaded);
        let (kv, bytes) = (loaded.kv().spec.to_string(), e.bytes_of(&loaded.kv().spec));
        if bytes <= limit {
            e.free.push(Free { kv, bytes, slot: loaded });
        }
        Ok(e)
    }

    fn bytes_of(&self, spec: &KvSpec) -> u64 {
        super::cache_bytes(&self.model.cfg, &self.model.gpu.caps, spec, self.ctx).unwrap_or(u64::MAX)
    }

    /// Serve jobs until every sender is gone.
    pub fn run(mut self, jobs: Receiver<Job>) {
        let mut active: Vec<Box<Active>> = Vec::new();
        let mut waiting: Option<Job> = None;
        loop {
            while active.len() < self.parallel {
                let job = match waiting.take() {
                    Some(j) => j,
                    None if active.is_empty() => match jobs.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    },
                    None => match jobs.try_recv() {
                        Ok(j) => j,
                        Err(_) => break,
                    },
                };
                self.metrics.queue_depth.fetch_sub(1, Relaxed);
                let in_use = active.iter().map(|a| a.bytes).sum();
                match self.admit(job, in_use, active.is_empty()) {
                    Admit::Started(a) => active.push(a),
                    Admit::Wait(j) => {
                        self.metrics.queue_depth.fetch_add(1, Relaxed);
                        waiting = Some(j);
                        break;
                    }
                    Admit::Refused => {}
                }
            }
            self.publish(&active);
            let t = Instant::now();
            let steps = self.round(&mut active);
            let decoded = steps.iter().filter(|s| !matches!(s, Step::Cancelled)).count();
            let mut answers = Vec::new();
            // From the last: each swap_remove moves a request already seen.
            for (i, step) in steps.into_iter().enumerate().rev() {
                if !matches!(step, Step::Running) {
                    let a = active.swap_remove(i);
                    answers.extend(self.finish(*a, step));
                    self.fit(active.iter().map(|a| a.bytes).sum());
                }
            }
            if decoded > 0 {
                self.metrics.record_round(t, decoded);
            }
            self.publish(&active);
            for (to, event) in answers {
                let _ = to.send(event);
            }
        }
    }

    /// Bytes held by cached conversations and free GPU caches (not those generating).
    fn idle_bytes(&self) -> u64 {
        self.store.resident() + self.free.iter().map(|f| f.bytes).sum::<u64>()
    }

    /// A GPU cache under `spec` (`kv` its text) of `need` bytes, besides
    /// `in_use` bytes generating: a free one, else a new one once
    /// `--kv-memory` has room, made by dropping free caches, then the least
    /// recently used conversations. None when the caches in use hold the rest.
    fn gpu_cache(&mut self, spec: &KvSpec, kv: &str, need: u64, in_use: u64) -> crate::Result<Option<CacheSlot>> {
        if let Some(i) = self.free.iter().position(|f| f.kv == kv) {
            return Ok(Some(self.free.swap_remove(i).slot));
        }
        while self.idle_bytes() + in_use + need > self.limit {
            if !self.free.is_empty() {
                self.free.remove(0);
                continue;
            }
            match self.store.evict_lru() {
                Some(e) => {
                    Metrics::add(&self.metrics.evictions, 1);
                    if let (Cache::Gpu(mut slot), true) = (e.slot, e.kv == kv) {
                        slot.kv_mut().reset(&self.model.gpu);
                        return Ok(Some(*slot));
                    }
                }
                None => return Ok(None),
            }
        }
        self.model.new_cache(spec.clone(), self.ctx).map(Some)
    }

    /// A cache for `job`: the cached conversation it extends (restored to
    /// the GPU if it was parked), else an empty one.
    fn admit(&mut self, job: Job, in_use: u64, alone: bool) -> Admit {
        if job.events.is_closed() {
            Metrics::add(&self.metrics.cancelled, 1);
            return Admit::Refused;
        }
        let kv = job.kv.to_string();
        let (id, slot, cached) = match self.store.take_prefix(&kv, &job.ids) {
            Some((Entry { id, slot: Cache::Gpu(slot), .. }, n)) => {
                Metrics::add(&self.metrics.cache_hits, 1);
                (id, *slot, n)
            }
            found => {
                let parked = found.as_ref().map_or(0, |(e, _)| e.bytes);
                let slot = match self.gpu_cache(&job.kv, &kv, job.kv_bytes, in_use + parked) {
                    Ok(Some(slot)) => slot,
                    Ok(None) if !alone => {
                        if let Some((e, _)) = found {
                            self.store.put(e.id, e.slot, e.ids, e.kv, e.bytes);
                        }
                        return Admit::Wait(job);
                    }
                    Ok(None) => {
                        let msg = format!("a KV cache under '{kv}' needs {} bytes; --kv-memory is {}", job.kv_bytes, self.limit);
                        let _ = job.events.send(Event::Error(ApiError::invalid("kv", msg)));
                        return Admit::Refused;
                    }
                    Err(e) => {
                        let _ = job.events.send(Event::Error(ApiError::invalid("kv", format!("cannot make a KV cache under '{kv}': {e}"))));
                        return Admit::Refused;
                    }
                };
                let Some((e, n)) = found else {
                    Metrics::add(&self.metrics.cache_misses, 1);
                    let id = self.new_id();
                    return self.start(job, id, slot, 0, kv);
                };
                let mut slot = slot;
                match self.unpark(e.slot, &mut slot) {
                    Ok(()) => {
                        Metrics::add(&self.metrics.cache_hits, 1);
                        (e.id, slot, n)
                    }
                    Err(err) => {
                        // A parked cache that does not come back is dropped; the request starts afresh.
                        eprintln!("wgkv serve: a parked conversation could not be restored ({err}); prefilling it again");
                        Metrics::add(&self.metrics.cache_misses, 1);
                        (self.new_id(), slot, 0)
                    }
                }
            }
        };
        self.start(job, id, slot, cached, kv)
    }

    /// An id for a new conversation.
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// `job` running in `slot`, whose first `cached` tokens are its prompt's.
    fn start(&self, job: Job, id: u64, slot: CacheSlot, cached: usize, kv: String) -> Admit {
        let sampler = Sampler::new(job.sampling);
        Admit::Started(Box::new(Active {
            id,
            kv,
            bytes: job.kv_bytes,
            slot,
            fed: job.ids[..cached].to_vec(),
            next: job.ids[cached..].to_vec(),
            sampler,
            dec: StreamDecoder::new(),
            cut: StopText::new(&job.stop),
            produced: 0,
            max_new: job.max_new,
            prompt_tokens: job.ids.len(),
            cached,
            events: job.events,
        }))
    }

    /// Within `--kv-memory` beside `in_use` bytes generating: least recently
    /// used conversations dropped first, then free GPU caches.
    fn fit(&mut self, in_use: u64) {
        while self.idle_bytes() + in_use > self.limit {
            if self.store.evict_lru().is_some() {
                Metrics::add(&self.metrics.evictions, 1);
            } else if self.free.pop().is_none() {
                break;
            }
        }
    }

    /// A parked `cache` restored into the empty GPU cache `spare` (left empty if it fails).
    fn unpark(&self, cache: Cache, spare: &mut CacheSlot) -> crate::Result<()> {
        let Cache::Host { state, data, cut, .. } = cache else {
            return Err(crate::Error::msg("internal: a GPU cache is not parked"));
        };
        if let Err(e) = spare.kv_mut().restore(&self.model.gpu, &state, &data) {
            spare.kv_mut().reset(&self.model.gpu);
            return Err(e);
        }
        if let Some(n) = cut {
            spare.kv_mut().truncate(n);
        }
        Ok(())
    }

    /// One step of every request in `active`, in its order: a request
    /// whose client left is cancelled; those decoding run together, one
    /// batched step for up to `MAX_BATCH` of them (one alone runs its own
    /// step); each of the others runs its prompt.
    fn round(&mut self, active: &mut [Box<Active>]) -> Vec<Step> {
        let mut steps: Vec<Option<Step>> = active.iter().map(|a| a.events.is_closed().then_some(Step::Cancelled)).collect();
        let decoding: Vec<usize> = (0..active.len()).filter(|&i| steps[i].is_none() && active[i].produced > 0 && active[i].next.len() == 1).collect();
        if decoding.len() > 1 {
            let mut rest: Vec<&mut Box<Active>> = active.iter_mut().enumerate().filter(|(i, _)| decoding.contains(i)).map(|(_, a)| a).collect();
            let mut at = decoding.iter();
            for batch in rest.chunks_mut(MAX_BATCH) {
                for step in self.step_batch(batch) {
                    steps[*at.next().expect("one step per request")] = Some(step);
                }
            }
        }
        for (i, a) in active.iter_mut().enumerate() {
            if steps[i].is_none() {
                steps[i] = Some(self.step(a));
            }
        }
        steps.into_iter().map(|s| s.expect("every request stepped")).collect()
    }

    /// One batched decode step of `batch` (each has one token to run).
    fn step_batch(&mut self, batch: &mut [&mut Box<Active>]) -> Vec<Step> {
        let t = Instant::now();
        let tokens: Vec<u32> = batch.iter().map(|a| a.next[0]).collect();
        let mut slots: Vec<&mut CacheSlot> = batch.iter_mut().map(|a| &mut a.slot).collect();
        let logits = self.model.forward_batch(&mut slots, &tokens);
        let m = &self.metrics;
        Metrics::add(&m.decode_seconds_micros, t.elapsed().as_micros() as u64);
        Metrics::add(&m.decode_steps, batch.len() as u64);
        match logits {
            Ok(logits) => batch
                .iter_mut()
                .zip(&logits)
                .map(|(a, l)| {
                    let id = choose_from(&mut a.sampler, l);
                    let input = std::mem::take(&mut a.next);
                    self.accept(a, &input, id)
                })
                .collect(),
            Err(e) => batch
                .iter()
                .map(|a| {
                    let _ = a.events.send(Event::Error(ApiError::internal(format!("the forward pass failed: {e}"))));
                    Step::Failed
                })
                .collect(),
        }
    }

    /// Run `a`'s pending tokens (its prompt, or its last token) and take the next one.
    fn step(&mut self, a: &mut Active) -> Step {
        if a.events.is_closed() {
            return Step::Cancelled;
        }
        let input = std::mem::take(&mut a.next);
        let prefill = a.produced == 0;
        let t = Instant::now();
        self.model.swap_cache(&mut a.slot);
        let chosen = choose(&mut self.model, &mut a.sampler, &input);
        self.model.swap_cache(&mut a.slot);
        let micros = t.elapsed().as_micros() as u64;
        let m = &self.metrics;
        Metrics::add(if prefill { &m.prefill_seconds_micros } else { &m.decode_seconds_micros }, micros);
        Metrics::add(&m.decode_steps, u64::from(!prefill));
        match chosen {
            Ok(id) => self.accept(a, &input, id),
            Err(e) => {
                let _ = a.events.send(Event::Error(ApiError::internal(format!("the forward pass failed: {e}"))));
                Step::Failed
            }
        }
    }

    /// `a` ran `input` and drew `id`: stream its text and say whether it goes on.
    fn accept(&self, a: &mut Active, input: &[u32], id: u32) -> Step {
        a.fed.extend_from_slice(input);
        if self.eog.contains(&id) {
            return Step::Finished("stop");
        }
        a.sampler.accept(id);
        a.produced += 1;
        let text = a.cut.push(&a.dec.push(&self.tokenizer, id));
        if !text.is_empty() && a.events.send(Event::Text(text)).is_err() {
            return Step::Cancelled;
        }
        if a.cut.matched {
            return Step::Finished("stop");
        }
        if a.produced >= a.max_new || a.fed.len() + 1 > self.ctx || a.slot.kv().room() == Some(0) {
            return Step::Finished("length");
        }
        a.next = vec![id];
        Step::Running
    }

    /// Send `a`'s last text and its usage, and keep its cache as a conversation.
    /// Returns where to send the last event, and the event: sent once the
    /// engine's state (memory, `/metrics`) has caught up, so a client that
    /// reads `/metrics` after its answer sees its request's effects.
    fn finish(&mut self, mut a: Active, end: Step) -> Option<(UnboundedSender<Event>, Event)> {
        let m = &self.metrics;
        let mut last = None;
        match end {
            Step::Finished(reason) => {
                let tail = a.cut.finish(&a.dec.finish());
                if !tail.is_empty() {
                    let _ = a.events.send(Event::Text(tail));
                }
                let done = Done { finish: reason, prompt_tokens: a.prompt_tokens, completion_tokens: a.produced, cached_tokens: a.cached };
                last = Some((a.events.clone(), Event::Done(done)));
            }
            Step::Cancelled => Metrics::add(&m.cancelled, 1),
            Step::Failed | Step::Running => {
                // The cache may hold part of a call: it starts again empty.
                a.slot.kv_mut().reset(&self.model.gpu);
                a.fed.clear();
            }
        }
        Metrics::add(&m.prompt_tokens, a.prompt_tokens as u64);
        Metrics::add(&m.cached_tokens, a.cached as u64);
        Metrics::add(&m.completion_tokens, a.produced as u64);
        if a.fed.is_empty() {
            self.free.push(Free { kv: a.kv, bytes: a.bytes, slot: a.slot });
            return last;
        }
        // Parked in host memory where the policy allows: only its kept rows stay.
        let kv = a.slot.kv();
        let parked = match kv.can_save() {
            true => kv.save(&self.model.gpu).map(|(state, data)| (state, data, kv.can_truncate())),
            false => Err(crate::Error::msg("not saved")),
        };
        match parked {
            Ok((state, data, truncatable)) => {
                let bytes = data.len() as u64;
                self.store.put(a.id, Cache::Host { state: Box::new(state), data, truncatable, cut: None }, a.fed, a.kv.clone(), bytes);
                a.slot.kv_mut().reset(&self.model.gpu);
                self.free.push(Free { kv: a.kv, bytes: a.bytes, slot: a.slot });
            }
            Err(_) => self.store.put(a.id, Cache::Gpu(Box::new(a.slot)), a.fed, a.kv, a.bytes),
        }
        last
    }

    /// The conversations for `/metrics`.
    fn publish(&self, active: &[Box<Active>]) {
        let place = |c: &Cache| if matches!(c, Cache::Gpu(_)) { "gpu" } else { "host" };
        let idle = self.store.entries().map(|e| ConversationInfo { id: e.id, kv: e.kv.clone(), bytes: e.bytes, tokens: e.ids.len(), place: place(&e.slot) });
        let busy = active.iter().map(|a| ConversationInfo { id: a.id, kv: a.kv.clone(), bytes: a.bytes, tokens: a.fed.len(), place: "active" });
        self.metrics.set_conversations(idle.chain(busy).collect(), self.free.iter().map(|f| f.bytes).sum());
        self.metrics.active.store(active.len() as u64, Relaxed);
    }
}
