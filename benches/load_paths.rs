//! What a weight load costs on this adapter, by the resource it comes from:
//! the decode matvec's inner loop (Q4_1 in the split layout, 8 rows per
//! invocation, x as a uniform) reading its quants and scales from a
//! storage buffer (what wgkv does), a uniform buffer (at most 64 KiB per
//! binding) or an `Rgba32Uint` texture. The loop runs 40 times inside one
//! dispatch over 128 rows x 576 columns (46 KiB), so the dispatch's own
//! cost does not count. Every path must give the same sums (checked), but
//! `no loads`, which makes its quants and scales from the indices: the
//! loop's cost without its weight loads.
//!
//! `cargo bench --bench load_paths`. On lavapipe, llvmpipe compiles a
//! storage load as a loop over the SIMD lanes with a bounds test and branch
//! per component (about 30 instructions per lane and component), and a
//! uniform load at a per-lane offset without branches: per component, one
//! clamp of the 8 offsets, then 8 extracts and scalar loads (about 20
//! instructions for all 8 lanes). See docs/speed.md.

use std::time::Instant;
use wgkv::gpu::{Gpu, GpuOptions};
use wgpu::util::DeviceExt;

const REPEAT: u32 = 40;
const ROWS: u32 = 128;
const COLS: u32 = 576;

/// The matvec body; LOADQ / LOADS are each path's loads of a block's quants
/// (a vec4<u32>) and of its (d, m) word, at texel `base[i]` of row i. Its
/// arithmetic is the decode matvec's `nib8_dot` ([`nib8_dot`]).
const BODY: &str = r#"
struct Params { rows: u32, cols: u32, repeat: u32, _p: u32 }
@group(0) @binding(1) var<uniform> x: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r0 = (wid.x * 8u + li) * 8u;
    let nb = p.cols / 32u;
    let texels = (nb * 20u + 15u) / 16u;
    var acc: array<vec4<f32>, 8>;
    var base: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        base[i] = min(r0 + i, p.rows - 1u) * texels;
    }
    for (var rep = 0u; rep < p.repeat; rep++) {
        for (var sb = 0u; sb < nb; sb++) {
            let k = sb * 8u;
            let xv = array<vec4<f32>, 8>(x[k], x[k + 1u], x[k + 2u], x[k + 3u], x[k + 4u], x[k + 5u], x[k + 6u], x[k + 7u]);
            let xsum = ((xv[0] + xv[1]) + (xv[2] + xv[3])) + ((xv[4] + xv[5]) + (xv[6] + xv[7]));
            for (var i = 0u; i < 8u; i++) {
                let q = LOADQ;
                let dm = unpack2x16float(LOADS);
                let s = (nib8_dot(q.x, xv[0] * NIB_LO, xv[4] * NIB_HI) + nib8_dot(q.y, xv[1] * NIB_LO, xv[5] * NIB_HI))
                      + (nib8_dot(q.z, xv[2] * NIB_LO, xv[6] * NIB_HI) + nib8_dot(q.w, xv[3] * NIB_LO, xv[7] * NIB_HI));
                acc[i] += s * dm.x + xsum * dm.y;
            }
        }
    }
    for (var i = 0u; i < 8u; i++) {
        if (r0 + i < p.rows) {
            y[r0 + i] = acc[i].x + acc[i].y + acc[i].z + acc[i].w;
        }
    }
}
"#;

/// (name, declaration of the weights, quants load, scales load).
const PATHS: &[(&str, &str, &str, &str)] = &[
    (
        "storage",
        "@group(0) @binding(0) var<storage, read> w: array<u32>;\n@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;\n",
        "wv[base[i] + sb]",
        "w[(base[i] + nb) * 4u + sb]",
    ),
    ("uniform", "@group(0) @binding(6) var<uniform> wu: array<vec4<u32>, 4096>;\n", "wu[base[i] + sb]", "wu[base[i] + nb + sb / 4u][sb & 3u]"),
    ("windows", "WINDOWS", "wuK[base[i] - wid.x * 64u * texels + sb]", "wuK[base[i] - wid.x * 64u * texels + nb + sb / 4u][sb & 3u]"),
    ("no loads", "", "vec4<u32>(base[i], sb, base[i] ^ sb, base[i] + sb)", "0x3c002c00u ^ (sb & 1u)"),
    (
        "texture",
        "@group(0) @binding(0) var wt: texture_2d<u32>;\n",
        "textureLoad(wt, vec2<u32>(base[i] + sb, 0u), 0)",
        "textureLoad(wt, vec2<u32>(base[i] + nb + sb / 4u, 0u), 0)[sb & 3u]",
    ),
];

/// `quant/common.wgsl`'s `nib8_dot` and its constants, as the decode
/// matvec has them (the whole fragment declares bindings the paths use
/// otherwise): the text from `const NIB_LO` to the function's end.
fn nib8_dot() -> &'static str {
    let common = wgkv::kernels::QUANT_COMMON;
    let start = common.find("const NIB_LO").expect("quant/common.wgsl defines NIB_LO");
    let end = start + common[start..].find("\n}\n").expect("nib8_dot ends") + 3;
    assert!(common[start..end].contains("fn nib8_dot("), "nib8_dot follows NIB_LO / NIB_HI in quant/common.wgsl");
    &common[start..end]
}

/// Uniform windows of the windows path: as many as a dispatch could bind
/// beside the matvec's input and parameters.
const WINDOWS: u32 = 12;

/// A split Q4_1 row's bytes.
fn row_bytes() -> u32 {
    (COLS / 32 * 20).div_ceil(16) * 16
}

/// The windows path's declarations: `WINDOWS` 64 KiB uniform bindings.
fn windows_decl() -> String {
    let mut s = String::new();
    for k in 0..WINDOWS {
        s += &format!("@group(0) @binding({}) var<uniform> wu{k}: array<vec4<u32>, 4096>;\n", 10 + k);
    }
    s
}

/// The windows path's body: the weight loop once per window, each copy
/// reading its own binding and run where the workgroup's window is that
/// one (a workgroup-uniform test, once per dispatch, outside the loop).
/// A switch per load instead made every load cost as much as all twelve.
fn per_window(body: &str) -> String {
    let (head, rest) = body.split_at(body.find("    for (var rep").expect("the loop"));
    let (each, tail) = rest.split_at(rest.find("    for (var i = 0u; i < 8u; i++) {\n        if (r0").expect("the stores"));
    let mut s = head.to_string();
    for k in 0..WINDOWS {
        s += &format!("    if (wid.x == {k}u) {{\n{}    }}\n", each.replace("wuK", &format!("wu{k}")));
    }
    s + tail
}

/// Random Q4_1 rows in the split layout (quants, then (d, m) words), in 64 KiB.
fn weights() -> Vec<u8> {
    let nb = COLS / 32;
    let rb = (nb * 20).div_ceil(16) * 16;
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut bytes = vec![0u8; 65536];
    for b in bytes[..(ROWS * rb) as usize].iter_mut() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = (s >> 32) as u8;
    }
    for r in 0..ROWS {
        for b in 0..nb {
            let o = (r * rb + nb * 16 + b * 4) as usize;
            bytes[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
            bytes[o + 2..o + 4].copy_from_slice(&half::f16::from_f32(-0.05).to_bits().to_le_bytes());
        }
    }
    bytes
}

fn main() {
    let gpu = Gpu::new(&GpuOptions::default()).expect("an adapter");
    let d = &gpu.device;
    println!("adapter: {}", gpu.describe());
    let bytes = weights();
    let wbuf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: &bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
    });
    // The same rows for the windows path, with room for a whole 64 KiB
    // window past the second's start.
    let mut padded = bytes.clone();
    padded.resize((64 * row_bytes()) as usize + 65536, 0);
    let winbuf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &padded, usage: wgpu::BufferUsages::UNIFORM });
    let size = wgpu::Extent3d { width: 4096, height: 1, depth_or_array_layers: 1 };
    let desc = wgpu::TextureDescriptor {
        label: None,
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    };
    let view = d.create_texture_with_data(&gpu.queue, &desc, wgpu::util::TextureDataOrder::LayerMajor, &bytes).create_view(&Default::default());
    let x: Vec<f32> = (0..16384).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
    let xbuf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&x), usage: wgpu::BufferUsages::UNIFORM });
    let ybuf = gpu.buffer("y", ROWS as u64 * 4);
    let params = gpu.uniform("params", bytemuck::cast_slice(&[ROWS, COLS, REPEAT, 0]));
    let mut first: Option<Vec<f32>> = None;
    let windows_decl = windows_decl();
    for &(name, decl, quants, scales) in PATHS {
        let decl = if decl == "WINDOWS" { windows_decl.as_str() } else { decl };
        let body = BODY.replace("LOADQ", quants).replace("LOADS", scales);
        let body = if name == "windows" { per_window(&body) } else { body };
        let src = format!("{decl}{}{body}", nib8_dot());
        let desc = wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(src.into()) };
        // SAFETY: the loops are bounded and every index is in range (as wgkv's kernels, gpu::runtime_checks).
        let module = unsafe { d.create_shader_module_trusted(desc, wgkv::gpu::runtime_checks(gpu.info.backend)) };
        let pipe = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let mut entries = vec![
            wgpu::BindGroupEntry { binding: 1, resource: xbuf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: ybuf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: params.as_entire_binding() },
        ];
        match name {
            "storage" => entries.extend([0, 5].map(|binding| wgpu::BindGroupEntry { binding, resource: wbuf.as_entire_binding() })),
            "uniform" => entries.push(wgpu::BindGroupEntry { binding: 6, resource: wbuf.as_entire_binding() }),
            // Window k holds rows 64k.. (only 0 and 1 are read; the rest
            // are bound so that the switch has its full size).
            "windows" => entries.extend((0..WINDOWS).map(|k| wgpu::BindGroupEntry {
                binding: 10 + k,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &winbuf,
                    offset: (k.min(1) * 64 * row_bytes()) as u64,
                    size: wgpu::BufferSize::new(65536),
                }),
            })),
            "texture" => entries.push(wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::TextureView(&view) }),
            _ => {}
        }
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipe.get_bind_group_layout(0), entries: &entries });
        let run = |n: usize| {
            let mut enc = d.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &bind, &[]);
                for _ in 0..n {
                    pass.dispatch_workgroups(ROWS.div_ceil(64), 1, 1);
                }
            }
            gpu.queue.submit([enc.finish()]);
            let _ = d.poll(wgpu::PollType::wait_indefinitely());
        };
        run(2);
        let y = gpu.read_f32(&ybuf, ROWS as usize);
        match &first {
            _ if name == "no loads" => {} // other weights: only its time counts
            None => first = Some(y),
            Some(want) => assert_eq!(&y, want, "{name}: sums differ from the storage path"),
        }
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            run(10);
            best = best.min(t.elapsed().as_secs_f64() / 10.0);
        }
        let rate = (ROWS * COLS * REPEAT) as f64 / best / 1e9;
        println!("{name:8} {:8.1} us per dispatch  {rate:5.2} G weight-rows/s", best * 1e6);
    }
}
