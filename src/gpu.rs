//! GPU context: instance, adapter choice, device with the adapter's real limits,
//! buffer creation, upload, readback and submit; pipelines, bind groups,
//! compute passes and timestamps. Every version-sensitive wgpu call lives
//! here (wgpu 30): other modules build `Dispatch`es with `Gpu::dispatch` and
//! record them with `Gpu::record` / `Gpu::run`.
//!
//! `gpu` imports `kernels` (the shader registry and `Dispatch`), never the
//! other way round.

use crate::error::{Error, Result};
use crate::kernels::{Dispatch, Registry, Spec};
use std::sync::Arc;

/// How the context is created.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// `vulkan`, `metal`, `dx12` or `gl`; all of them when `None`.
    pub backend: Option<String>,
    /// Adapter name substring or index in `wgkv devices` order.
    pub adapter: Option<String>,
    /// Do not request SHADER_F16 even when present: exercises the f32 path.
    pub force_f32: bool,
    /// Open the device with at most this storage binding limit (bytes):
    /// exercises the split of weights above the limit on any adapter.
    pub max_storage_binding: Option<u64>,
    /// The device's memory in bytes, as the user states it (`--gpu-memory`):
    /// models that need more are refused before allocating.
    pub memory: Option<u64>,
}

/// What the shaders may use on this device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caps {
    pub f16: bool,
    pub subgroups: bool,
    pub subgroup_min: u32,
    pub subgroup_max: u32,
    pub timestamps: bool,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
    pub max_storage_buffers: u32,
    pub cpu: bool,
}

/// One device and its queue, with the pipeline registry.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub caps: Caps,
    pub kernels: Registry,
    /// `GpuOptions::memory`.
    pub stated_memory: Option<u64>,
}

/// One buffer of a dispatch's bind group: bound at `@binding(at)`, whole
/// or (`bytes`) its first bytes only.
pub struct Binding<'a> {
    pub at: u32,
    pub buffer: &'a wgpu::Buffer,
    pub bytes: Option<u64>,
}

/// Bytes [`Gpu::buffer`] (and [`Gpu::upload`], [`Gpu::staging`]) really
/// allocates for a request of `bytes`: at least 4, a multiple of 4.
pub fn storage_size(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

/// Bytes of queued writes [`Gpu::upload_staged`] lets pile up before it
/// submits them: each queued write holds a staging copy of its data until
/// the next submit, so a load that queued every weight would hold them twice.
pub const STAGING_LIMIT: u64 = 4 << 20;

/// Bytes [`Gpu::uniform`] really allocates for `len` bytes of params: at
/// least 16, a multiple of 16.
pub fn uniform_size(len: u64) -> u64 {
    len.max(16).div_ceil(16) * 16
}

pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        other => return Err(Error::msg(format!("unknown backend '{other}' (use vulkan, metal, dx12 or gl)"))),
    })
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter of the chosen backends, in a stable order.
pub fn adapters(backend: Option<&str>) -> Result<Vec<wgpu::Adapter>> {
    let backends = match backend {
        Some(b) => parse_backend(b)?,
        None => wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12 | wgpu::Backends::GL,
    };
    let inst = instance(backends);
    let mut list = pollster::block_on(inst.enumerate_adapters(backends));
    // Vulkan/Metal/DX12 before GL; discrete before integrated before CPU.
    let rank = |a: &wgpu::Adapter| {
        let i = a.get_info();
        let b = if i.backend == wgpu::Backend::Gl { 1 } else { 0 };
        let t = match i.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        (b, t)
    };
    list.sort_by_key(rank);
    Ok(list)
}

impl Gpu {
    pub fn new(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let list = adapters(opts.backend.as_deref())?;
        if list.is_empty() {
            return Err(Error::NoAdapter(match &opts.backend {
                Some(b) => format!("no {b} adapter found"),
                None => "no GPU adapter found (on Linux without a GPU install mesa-vulkan-drivers and libvulkan1 for lavapipe)".into(),
            }));
        }
        let adapter = match &opts.adapter {
            None => list.into_iter().next().unwrap(),
            Some(sel) => match sel.parse::<usize>() {
                Ok(i) => {
                    let n = list.len();
                    list.into_iter().nth(i).ok_or_else(|| Error::msg(format!("adapter index {i} out of range ({n} adapters)")))?
                }
                Err(_) => {
                    let low = sel.to_ascii_lowercase();
                    list.into_iter()
                        .find(|a| a.get_info().name.to_ascii_lowercase().contains(&low))
                        .ok_or_else(|| Error::msg(format!("no adapter named like '{sel}' (see `wgkv devices`)")))?
                }
            },
        };
        Self::from_adapter(adapter, opts)
    }

    pub fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let force_f32 = opts.force_f32;
        let info = adapter.get_info();
        let have = adapter.features();
        let mut want = wgpu::Features::empty();
        for f in [wgpu::Features::SHADER_F16, wgpu::Features::SUBGROUP, wgpu::Features::TIMESTAMP_QUERY] {
            if have.contains(f) && !(force_f32 && f == wgpu::Features::SHADER_F16) {
                want |= f;
            }
        }
        let mut limits = adapter.limits();
        if let Some(cap) = opts.max_storage_binding {
            // Below a page the kernels' own small buffers would not fit.
            if cap < 65536 {
                return Err(Error::msg(format!("a storage binding limit of {cap} bytes is below the 64 KiB wgkv needs")));
            }
            let cap = cap / 256 * 256;
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgkv"),
            required_features: want,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::msg(format!("cannot open device on '{}': {e}", info.name)))?;
        let caps = Caps {
            f16: want.contains(wgpu::Features::SHADER_F16),
            subgroups: want.contains(wgpu::Features::SUBGROUP),
            subgroup_min: info.subgroup_min_size,
            subgroup_max: info.subgroup_max_size,
            timestamps: want.contains(wgpu::Features::TIMESTAMP_QUERY),
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer: limits.max_buffer_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers: limits.max_storage_buffers_per_shader_stage,
            cpu: info.device_type == wgpu::DeviceType::Cpu,
        };
        let kernels = Registry::new(caps.f16);
        Ok(Arc::new(Gpu { device, queue, info, caps, kernels, stated_memory: opts.memory }))
    }

    /// A storage buffer of `bytes` (rounded up to 4, see [`storage_size`]), usable as copy source and target.
    pub fn buffer(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.storage_buffer(label, bytes, wgpu::BufferUsages::empty())
    }

    /// `buffer` that may also be bound as a uniform (its first
    /// [`crate::ops::linear::X_UNIFORM_BYTES`] bytes): the activations a
    /// CPU adapter's decode matvec reads as its input vector.
    pub fn activations(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.storage_buffer(label, bytes, wgpu::BufferUsages::UNIFORM)
    }

    /// A storage buffer of `bytes` (see [`storage_size`]), a copy source and
    /// target, with the `extra` usages.
    fn storage_buffer(&self, label: &str, bytes: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: storage_size(bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | extra,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data` (padded with zeros to a multiple of 4 bytes).
    pub fn upload(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buf = self.buffer(label, data.len() as u64);
        self.write(&buf, 0, data);
        buf
    }

    /// `upload`, in pieces of at most [`STAGING_LIMIT`] bytes, submitting
    /// the queued writes first whenever `pending` (the bytes queued since
    /// the last submit, shared by a load's uploads) would pass the limit.
    pub fn upload_staged(&self, label: &str, data: &[u8], pending: &std::cell::Cell<u64>) -> wgpu::Buffer {
        let buf = self.buffer(label, data.len() as u64);
        for (i, piece) in data.chunks(STAGING_LIMIT as usize).enumerate() {
            let bytes = storage_size(piece.len() as u64);
            if pending.get() + bytes > STAGING_LIMIT {
                self.flush();
                pending.set(0);
            }
            self.write(&buf, i as u64 * STAGING_LIMIT, piece);
            pending.set(pending.get() + bytes);
        }
        buf
    }

    /// Submit the queued writes and wait for them, returning their staging copies.
    pub fn flush(&self) {
        self.queue.submit([]);
        self.wait();
    }

    /// A uniform buffer holding `data` (a `#[repr(C)]` params struct).
    pub fn uniform(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: uniform_size(data.len() as u64),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.write(&buf, 0, data);
        buf
    }

    /// Queue a write of `data` at `offset`; padded to a multiple of 4 bytes.
    pub fn write(&self, buf: &wgpu::Buffer, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if data.len().is_multiple_of(4) {
            self.queue.write_buffer(buf, offset, data);
        } else {
            let mut padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buf, offset, &padded);
        }
    }

    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Submit and wait until the GPU is done.
    pub fn submit(&self, enc: wgpu::CommandEncoder) {
        self.queue.submit([enc.finish()]);
        self.wait();
    }

    pub fn wait(&self) {
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// A MAP_READ buffer of `bytes` for `readback_into`.
    pub fn staging(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: storage_size(bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copy `bytes` from `src` at `offset` into `staging` (allocated once by
    /// the caller with `staging`), submit together with `enc`'s work and
    /// return the bytes.
    pub fn readback_into(&self, mut enc: wgpu::CommandEncoder, src: &wgpu::Buffer, offset: u64, bytes: u64, staging: &wgpu::Buffer) -> Vec<u8> {
        let size = bytes.div_ceil(4) * 4;
        enc.copy_buffer_to_buffer(src, offset, staging, 0, size);
        self.queue.submit([enc.finish()]);
        read_mapped(self, staging, size)[..bytes as usize].to_vec()
    }

    /// Like `readback_into` with a staging buffer made for this one call.
    pub fn readback_with(&self, enc: Option<wgpu::CommandEncoder>, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Vec<u8> {
        let staging = self.staging(bytes);
        self.readback_into(enc.unwrap_or_else(|| self.encoder()), src, offset, bytes, &staging)
    }

    /// The byte ranges `(offset, len)` of `src` (each a multiple of 4), one after another.
    pub fn read_ranges(&self, src: &wgpu::Buffer, ranges: &[(u64, u64)]) -> Vec<u8> {
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        if total == 0 {
            return Vec::new();
        }
        let staging = self.staging(total);
        let mut enc = self.encoder();
        let mut at = 0;
        for &(offset, len) in ranges {
            enc.copy_buffer_to_buffer(src, offset, &staging, at, len);
            at += len;
        }
        self.queue.submit([enc.finish()]);
        read_mapped(self, &staging, total.div_ceil(4) * 4)[..total as usize].to_vec()
    }

    pub fn readback(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Vec<u8> {
        self.readback_with(None, src, offset, bytes)
    }

    pub fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(&self.readback(src, 0, 4 * n as u64))
    }

    pub fn read_u32(&self, src: &wgpu::Buffer, n: usize) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&self.readback(src, 0, 4 * n as u64))
    }

    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// The pipeline for `spec`, compiled on first use and kept in `kernels`.
    pub fn pipeline(&self, spec: &Spec) -> Arc<wgpu::ComputePipeline> {
        if let Some(p) = self.kernels.get(spec) {
            return p;
        }
        let src = spec.source(self.kernels.f16());
        let label = spec.kernel.name();
        let desc = wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(src.into()) };
        // SAFETY: `runtime_checks` (see there) drops only checks whose
        // preconditions every kernel in shaders/ meets.
        let module = unsafe { self.device.create_shader_module_trusted(desc, runtime_checks(self.info.backend)) };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            // Every kernel writes its workgroup memory before reading it; zero
            // filling it costs run time everywhere and, on Mesa's GL, compile
            // time that grows with the square of its size.
            compilation_options: wgpu::PipelineCompilationOptions { zero_initialize_workgroup_memory: false, ..Default::default() },
            cache: None,
        });
        self.kernels.insert(spec, pipeline)
    }

    /// Build a dispatch: `buffers[i]` is bound (whole) at `@binding(i)`.
    pub fn dispatch(&self, spec: &Spec, buffers: &[&wgpu::Buffer], groups: [u32; 3]) -> Dispatch {
        let whole: Vec<Binding> = buffers.iter().enumerate().map(|(i, b)| Binding { at: i as u32, buffer: b, bytes: None }).collect();
        self.dispatch_bound(spec, &whole, groups)
    }

    /// `dispatch` with each buffer's binding number (and bytes) given.
    pub fn dispatch_bound(&self, spec: &Spec, bindings: &[Binding], groups: [u32; 3]) -> Dispatch {
        let pipeline = self.pipeline(spec);
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|b| wgpu::BindGroupEntry {
                binding: b.at,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b.buffer, offset: 0, size: b.bytes.and_then(wgpu::BufferSize::new) }),
            })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(spec.kernel.name()), layout: &layout, entries: &entries });
        Dispatch { kernel: spec.kernel, wtype: spec.wtype, pipeline, bind, groups, weights: None }
    }

    /// Record `dispatches`, in order, into one compute pass of `enc` named `label`.
    pub fn record<'d>(&self, enc: &mut wgpu::CommandEncoder, label: &str, dispatches: impl IntoIterator<Item = &'d Dispatch>) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
        for d in dispatches {
            d.record(&mut pass);
        }
    }

    /// Run `dispatches` in one pass, one submit, and wait.
    pub fn run(&self, dispatches: &[&Dispatch]) {
        let mut enc = self.encoder();
        self.record(&mut enc, "run", dispatches.iter().copied());
        self.submit(enc);
    }

    /// Copy `bytes` (a multiple of 4) from `src` at `offset` to `dst` at
    /// `dst_offset`, after the passes `enc` already holds.
    pub fn copy(&self, enc: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) {
        enc.copy_buffer_to_buffer(src, offset, dst, dst_offset, bytes);
    }

    /// A timer for up to `passes` compute passes, or `None` when the device
    /// has no TIMESTAMP_QUERY or one query set cannot hold them.
    pub fn timer(&self, passes: usize) -> Option<PassTimer> {
        if !self.caps.timestamps || passes == 0 || 2 * passes > wgpu::QUERY_SET_MAX_QUERIES as usize {
            return None;
        }
        let queries = 2 * passes as u32;
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("timer"), ty: wgpu::QueryType::Timestamp, count: queries });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timer.resolve"),
            size: 8 * queries as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.staging(8 * queries as u64);
        Some(PassTimer { set, resolve, staging, queries })
    }

    /// Record `d` alone in a compute pass of `enc` whose beginning and end
    /// write timestamps into pass `i` (`0..passes`) of `timer`.
    pub fn record_timed(&self, enc: &mut wgpu::CommandEncoder, timer: &PassTimer, i: u32, d: &Dispatch) {
        let writes =
            wgpu::ComputePassTimestampWrites { query_set: &timer.set, beginning_of_pass_write_index: Some(2 * i), end_of_pass_write_index: Some(2 * i + 1) };
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(d.kernel.name()), timestamp_writes: Some(writes) });
        d.record(&mut pass);
    }

    /// Submit `enc` (holding `timer`'s passes), wait, and return each pass's
    /// GPU time in microseconds, in pass order.
    pub fn read_timer(&self, mut enc: wgpu::CommandEncoder, timer: &PassTimer) -> Vec<f64> {
        let bytes = 8 * timer.queries as u64;
        enc.resolve_query_set(&timer.set, 0..timer.queries, &timer.resolve, 0);
        enc.copy_buffer_to_buffer(&timer.resolve, 0, &timer.staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let raw: Vec<u64> = bytemuck::pod_collect_to_vec(&read_mapped(self, &timer.staging, bytes));
        let ns = self.queue.get_timestamp_period() as f64;
        raw.chunks(2).map(|p| p[1].saturating_sub(p[0]) as f64 * ns / 1e3).collect()
    }
}

/// GPU errors `Gpu::catch` saw while its closure ran, each on one line.
#[derive(Clone, Debug, Default)]
pub struct Caught {
    pub out_of_memory: Option<String>,
    pub validation: Option<String>,
}

impl Gpu {
    /// Run `f` (which creates GPU objects) inside out-of-memory and
    /// validation error scopes, and return what they caught with its result.
    pub fn catch<T>(&self, f: impl FnOnce() -> T) -> (T, Caught) {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let validation = pollster::block_on(invalid.pop()).map(|e| one_line(&e));
        let out_of_memory = pollster::block_on(oom.pop()).map(|e| one_line(&e));
        (out, Caught { out_of_memory, validation })
    }

    /// Call `uncaught` with every GPU error no scope caught (on one line),
    /// and `lost` with the reason and message when the device is lost
    /// (dropping it at exit reports `Destroyed`, which is not a loss).
    pub fn on_failure(&self, uncaught: impl Fn(String) + Send + Sync + 'static, lost: impl Fn(String, String) + Send + 'static) {
        self.device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| uncaught(one_line(&e))));
        self.device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                lost(format!("{reason:?}"), msg);
            }
        });
    }
}

/// A wgpu error's message on one line: its non-empty lines joined, without
/// the "Caused by:" headings.
pub fn one_line(e: &wgpu::Error) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "Caused by:").collect();
    if parts.is_empty() { "unknown error".into() } else { parts.join(": ") }
}

/// Timestamp queries for `Gpu::record_timed`: two per pass.
pub struct PassTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    queries: u32,
}

/// The checks wgpu adds to our kernels on `backend`.
///
/// - Loop bounding is off everywhere: every loop in shaders/ ends (counted
///   loops over uniform bounds; topk's digit scan counts down to 0), and it
///   costs a counter in every inner loop. With it on, attn_prefill_lanes
///   went wrong past ~2050 cached slots on lavapipe; the cause, found later,
///   is llvmpipe's cap of 65535 loop iterations per invocation (all loops
///   together): the counters most likely kept the inner loops from being
///   unrolled, so each slot cost more iterations. Kernels that run on CPU
///   adapters now bound their own loop counts (see LANES_LOOP_BUDGET).
/// - Bounds checks are off on Vulkan only, where wgpu enables the driver's
///   robustBufferAccess, so storage-buffer accesses stay bounded by the
///   driver; what goes is naga's clamping of private and workgroup array
///   indices, which in our kernels are loop counters below constant bounds.
///   On lavapipe that clamping cost about 25% of a Q4_1 matvec
///   (`cargo bench --bench kernels`, CPU time). Other backends keep them.
pub fn runtime_checks(backend: wgpu::Backend) -> wgpu::ShaderRuntimeChecks {
    let mut c = wgpu::ShaderRuntimeChecks::checked();
    c.force_loop_bounding = false;
    c.bounds_checks = backend != wgpu::Backend::Vulkan;
    c
}

impl Dispatch {
    /// Record this launch into an open pass (`Gpu::record` opens them).
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_groups(pass, self.groups);
    }

    /// Record with a different grid (e.g. fewer tokens than the buffers hold);
    /// a grid with a zero records nothing.
    pub fn record_groups(&self, pass: &mut wgpu::ComputePass<'_>, groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }
}

/// Map a MAP_READ buffer (whose copy was already submitted) and copy it out.
pub fn read_mapped(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> Vec<u8> {
    let slice = staging.slice(..size);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    gpu.wait();
    let out = {
        let view = slice.get_mapped_range().expect("mapped readback buffer");
        view.to_vec()
    };
    staging.unmap();
    out
}
