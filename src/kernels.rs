//! Shader registry: one `shaders/*.wgsl` file per kernel, specialised by a
//! small generated `const` prelude, pipelines built once and cached.
//!
//! A shader's final source is
//!   prelude (f16 or f32 storage aliases + the spec's `const` lines)
//!   + `shaders/step.wgsl` (the step uniform's struct)
//!   + shared fragments (`shaders/attn_core.wgsl` for attention, ...)
//!   + `shaders/quant/common.wgsl` + `shaders/quant/<wtype>.wgsl` (weight-reading kernels only)
//!   + `shaders/<kernel>.wgsl`.
//! Bindings are numbered in argument order: inputs, outputs, then the params
//! uniform (and the step uniform where a kernel depends on the position).

use crate::quant::WType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

macro_rules! kernels {
    ($($variant:ident => $file:literal, $weights:literal;)*) => {
        /// Every WGSL kernel the engine runs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel { $($variant),* }
        impl Kernel {
            pub const ALL: &'static [Kernel] = &[$(Kernel::$variant),*];
            /// The shader file name under `shaders/`, without `.wgsl`.
            pub fn name(self) -> &'static str { match self { $(Kernel::$variant => $file),* } }
            pub fn source(self) -> &'static str {
                match self { $(Kernel::$variant => include_str!(concat!("../shaders/", $file, ".wgsl"))),* }
            }
            /// Whether the kernel reads a weight matrix (and so takes a weight-type fragment).
            pub fn reads_weights(self) -> bool { match self { $(Kernel::$variant => $weights),* } }
        }
    };
}

kernels! {
    Embed => "embed", true;
    RmsNorm => "rmsnorm", false;
    Rope => "rope", false;
    Matvec => "matvec", true;
    Matmul => "matmul", true;
    MatmulLanes => "matmul_lanes", true;
    Swiglu => "swiglu", false;
    Add => "add", false;
    KvAppend => "kv_append", false;
    KvCompact => "kv_compact", false;
    KvPlace => "kv_place", false;
    AttnAccum => "attn_accum", false;
    EvictScore => "evict_score", false;
    EvictSelect => "evict_select", false;
    EvictBudget => "evict_budget", false;
    AttnPrefill => "attn_prefill", false;
    AttnPrefillLanes => "attn_prefill_lanes", false;
    AttnDecode => "attn_decode", false;
    AttnDecodeLanes => "attn_decode_lanes", false;
    AttnMerge => "attn_merge", false;
    QuestMeta => "quest_meta", false;
    QuestScore => "quest_score", false;
    QuestSelect => "quest_select", false;
    AttnDecodePages => "attn_decode_pages", false;
    MustafarCompress => "mustafar_compress", false;
    MustafarExpand => "mustafar_expand", false;
    MustafarAttn => "mustafar_attn", false;
    Argmax => "argmax", false;
    TopK => "topk", false;
}

pub const QUANT_COMMON: &str = include_str!("../shaders/quant/common.wgsl");
pub const STEP: &str = include_str!("../shaders/step.wgsl");
pub const ATTN_CORE: &str = include_str!("../shaders/attn_core.wgsl");
pub const HALF: &str = include_str!("../shaders/half.wgsl");
pub const MUSTAFAR_TILES: &str = include_str!("../shaders/mustafar_tiles.wgsl");
pub const RADIX_SELECT: &str = include_str!("../shaders/radix_select.wgsl");

impl Kernel {
    /// Shared WGSL fragments the kernel's source is prepended with, in order
    /// (after `step.wgsl`, which every kernel gets): the attention kernels
    /// share the attention core; Mustafar's kernels keep halves in u32 words
    /// and share the tile format; eviction's selections share a radix select.
    pub fn fragments(self) -> &'static [&'static str] {
        match self {
            Kernel::MustafarAttn => &[ATTN_CORE, HALF, MUSTAFAR_TILES],
            Kernel::AttnPrefill
            | Kernel::AttnPrefillLanes
            | Kernel::AttnDecode
            | Kernel::AttnDecodeLanes
            | Kernel::AttnDecodePages
            | Kernel::AttnMerge => &[ATTN_CORE],
            Kernel::MustafarCompress | Kernel::MustafarExpand => &[HALF, MUSTAFAR_TILES],
            Kernel::EvictSelect | Kernel::EvictBudget => &[RADIX_SELECT],
            _ => &[],
        }
    }
}

/// A kernel plus its specialisation: weight type (for weight-reading
/// kernels) and named `u32` constants emitted into the prelude.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spec {
    pub kernel: Kernel,
    pub wtype: Option<WType>,
    pub consts: Vec<(&'static str, u32)>,
}

impl Spec {
    pub fn new(kernel: Kernel) -> Spec {
        Spec { kernel, wtype: None, consts: Vec::new() }
    }
    pub fn weights(mut self, w: WType) -> Spec {
        self.wtype = Some(w);
        self
    }
    pub fn with(mut self, name: &'static str, value: u32) -> Spec {
        self.consts.retain(|(n, _)| *n != name);
        self.consts.push((name, value));
        self.consts.sort();
        self
    }
    pub fn get(&self, name: &str) -> Option<u32> {
        self.consts.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The complete WGSL source for this spec; `f16` selects the storage aliases.
    pub fn source(&self, f16: bool) -> String {
        let mut s = String::new();
        if f16 {
            s.push_str("enable f16;\nalias kv_t = f16;\nalias kv4_t = vec4<f16>;\n");
        } else {
            s.push_str("alias kv_t = f32;\nalias kv4_t = vec4<f32>;\n");
        }
        for (name, v) in &self.consts {
            s.push_str(&format!("const {name}: u32 = {v}u;\n"));
        }
        s.push_str(STEP);
        for f in self.kernel.fragments() {
            s.push_str(f);
            s.push('\n');
        }
        if let Some(w) = self.wtype {
            s.push_str(QUANT_COMMON);
            s.push('\n');
            s.push_str(w.shader_fragment());
            s.push('\n');
        }
        s.push_str(self.kernel.source());
        s
    }
}

/// Pipeline cache of one device.
pub struct Registry {
    f16: bool,
    checks: wgpu::ShaderRuntimeChecks,
    cache: Mutex<HashMap<Spec, Arc<wgpu::ComputePipeline>>>,
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

impl Registry {
    pub fn new(f16: bool, backend: wgpu::Backend) -> Registry {
        Registry { f16, checks: runtime_checks(backend), cache: Mutex::new(HashMap::new()) }
    }

    pub fn f16(&self) -> bool {
        self.f16
    }

    /// The pipeline for `spec`, compiled on first use.
    pub fn pipeline(&self, device: &wgpu::Device, spec: &Spec) -> Arc<wgpu::ComputePipeline> {
        if let Some(p) = self.cache.lock().unwrap().get(spec) {
            return p.clone();
        }
        let src = spec.source(self.f16);
        let label = spec.kernel.name();
        let desc = wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(src.into()) };
        // SAFETY: `runtime_checks` (see there) drops only checks whose
        // preconditions every kernel in shaders/ meets.
        let module = unsafe { device.create_shader_module_trusted(desc, self.checks) };
        let pipeline = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            // Every kernel writes its workgroup memory before reading it; zero
            // filling it costs run time everywhere and, on Mesa's GL, compile
            // time that grows with the square of its size.
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: false,
                ..Default::default()
            },
            cache: None,
        }));
        self.cache.lock().unwrap().insert(spec.clone(), pipeline.clone());
        pipeline
    }

    pub fn len(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

/// One recorded kernel launch: pipeline, bind group (built once) and grid.
pub struct Dispatch {
    pub kernel: Kernel,
    /// The weight type the kernel reads, if any (profiles group by it).
    pub wtype: Option<WType>,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind: wgpu::BindGroup,
    pub groups: [u32; 3],
}

impl Dispatch {
    /// The kernel class for profiles: the kernel name, plus the weight type it reads.
    pub fn class(&self) -> String {
        match self.wtype {
            Some(w) => format!("{} {}", self.kernel.name(), w.name()),
            None => self.kernel.name().to_string(),
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_groups(pass, self.groups);
    }

    /// Record with a different grid (e.g. fewer tokens than the buffers hold).
    pub fn record_groups(&self, pass: &mut wgpu::ComputePass<'_>, groups: [u32; 3]) {
        if groups.iter().any(|&g| g == 0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }
}

impl crate::gpu::Gpu {
    /// Build a dispatch: `buffers[i]` is bound (whole) at `@binding(i)`.
    pub fn dispatch(&self, spec: &Spec, buffers: &[&wgpu::Buffer], groups: [u32; 3]) -> Dispatch {
        let pipeline = self.kernels.pipeline(&self.device, spec);
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(spec.kernel.name()),
            layout: &layout,
            entries: &entries,
        });
        Dispatch { kernel: spec.kernel, wtype: spec.wtype, pipeline, bind, groups }
    }

    /// Record `dispatches` into one compute pass of `enc`.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        for d in dispatches {
            d.record(&mut pass);
        }
    }

    /// Run `dispatches` in one pass, one submit, and wait.
    pub fn run(&self, dispatches: &[&Dispatch]) {
        let mut enc = self.encoder();
        self.record(&mut enc, dispatches);
        self.submit(enc);
    }
}

/// Split `n` workgroups into a 2-D grid that respects the 65535 per-dimension
/// limit; kernels recover the linear id as `id.x + id.y * 65535u * WG`.
pub fn grid_1d(n: u32) -> [u32; 3] {
    if n <= 65535 { [n, 1, 1] } else { [65535, n.div_ceil(65535), 1] }
}
