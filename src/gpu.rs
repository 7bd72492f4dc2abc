//! GPU context: instance, adapter choice, device with the adapter's real limits,
//! buffer creation, upload, readback and submit. Every version-sensitive wgpu
//! call lives here (wgpu 30).

use crate::error::{Error, Result};
use crate::kernels::Registry;
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
                    list.into_iter()
                        .nth(i)
                        .ok_or_else(|| Error::msg(format!("adapter index {i} out of range ({n} adapters)")))?
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
            max_storage_binding: limits.max_storage_buffer_binding_size as u64,
            max_buffer: limits.max_buffer_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers: limits.max_storage_buffers_per_shader_stage,
            cpu: info.device_type == wgpu::DeviceType::Cpu,
        };
        let kernels = Registry::new(caps.f16, info.backend);
        Ok(Arc::new(Gpu { device, queue, info, caps, kernels, stated_memory: opts.memory }))
    }

    /// A storage buffer of `bytes` (rounded up to 4), usable as copy source and target.
    pub fn buffer(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).div_ceil(4) * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data` (padded with zeros to a multiple of 4 bytes).
    pub fn upload(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buf = self.buffer(label, data.len() as u64);
        self.write(&buf, 0, data);
        buf
    }

    /// A uniform buffer holding `data` (a `#[repr(C)]` params struct).
    pub fn uniform(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (data.len() as u64).max(16).div_ceil(16) * 16,
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
        if data.len() % 4 == 0 {
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
            size: bytes.max(4).div_ceil(4) * 4,
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
