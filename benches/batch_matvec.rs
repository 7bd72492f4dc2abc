//! What a decode step's weight kernel could gain from batching tokens on
//! this adapter: a Q4_1 matvec (split layout, lanes across rows, as
//! `shaders/matvec.wgsl`) that holds `B` tokens' inputs and accumulators,
//! so each weight word loaded and unpacked serves `B` tokens. The kernel
//! text is generated with one variable per (row, token) so that nothing
//! is a private array indexed in a loop. The loop runs 10 times inside one
//! dispatch over 1536 rows x 576 columns, so the dispatch's own cost does
//! not count. Every (R, B) must give each token the sums of the CPU
//! reference (`reference::linear`, f64 over the dequantized rows).
//!
//! Two forms: the products taken from the nibbles in place for each token
//! (as the decode matvec), and `words`, each row's weights dequantized
//! one 4-byte word at a time and then multiplied by every token's inputs.
//!
//! `cargo bench --bench batch_matvec`. Prints weight-rows x tokens per
//! second and the speed-up per token over the first line (R 8, B 1: the
//! shape of the decode matvec, one token at a time).

use std::fmt::Write;
use std::time::Instant;
use wgkv::gpu::{Gpu, GpuOptions};
use wgkv::quant::{self, Layout, WType};
use wgkv::reference::linear as reference;
use wgpu::util::DeviceExt;

const REPEAT: u32 = 10;
const ROWS: u32 = 1536;
const COLS: u32 = 576;
const MAX_B: u32 = 16;

/// Both kernels' bindings, helpers and first lines.
const PRELUDE: &str = r#"
struct Params { rows: u32, cols: u32, repeat: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> wv: array<vec4<u32>>;
@group(0) @binding(1) var<uniform> x: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
const NIB_LO = vec4<f32>(1.0, 0.00390625, 1.52587890625e-5, 5.9604644775390625e-8);
const NIB_HI = vec4<f32>(0.0625, 2.44140625e-4, 9.5367431640625e-7, 1.0);
fn lo(v: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) & vec4<u32>(0xFu, 0xF00u, 0xF0000u, 0xF000000u))); }
fn hi(v: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v & 0xF0u, v & 0xF000u, v & 0xF00000u, v >> 28u))); }
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let nb = p.cols / 32u;
    let texels = (nb * 20u + 15u) / 16u;
    let xs = p.cols / 4u;
"#;

/// The kernel for `r` rows per invocation and `b` tokens: each token's
/// products from the nibbles in place (`words` false, as the decode
/// matvec), or (`words` true) each row's weights dequantized once, a
/// 4-byte word (8 weights) at a time, then multiplied by every token's
/// inputs, so that only one word per row is live at once.
fn kernel(r: u32, b: u32, words: bool) -> String {
    let mut s = String::from(PRELUDE);
    let _ = writeln!(s, "    let r0 = (wid.x * 8u + li) * {r}u;");
    for i in 0..r {
        let _ = writeln!(s, "    let b{i} = min(r0 + {i}u, p.rows - 1u) * texels;");
        for j in 0..b {
            let _ = writeln!(s, "    var a{i}_{j} = 0.0;");
        }
    }
    s.push_str("    for (var rep = 0u; rep < p.repeat; rep++) {\n    for (var sb = 0u; sb < nb; sb++) {\n");
    for i in 0..r {
        let _ = writeln!(s, "        let q{i} = wv[b{i} + sb];\n        let dm{i} = unpack2x16float(w[(b{i} + nb) * 4u + sb]);");
        if words {
            let _ = writeln!(s, "        let dl{i} = NIB_LO * dm{i}.x;\n        let dh{i} = NIB_HI * dm{i}.x;");
        }
    }
    if words {
        by_words(&mut s, r, b);
    } else {
        in_place(&mut s, r, b);
    }
    s.push_str("    }\n    }\n");
    for i in 0..r {
        for j in 0..b {
            let _ = writeln!(s, "    if (r0 + {i}u < p.rows) {{ y[{j}u * p.rows + r0 + {i}u] = a{i}_{j}; }}");
        }
    }
    s.push_str("}\n");
    s
}

/// A chunk's sums, token by token, from the nibbles in place.
fn in_place(s: &mut String, r: u32, b: u32) {
    for j in 0..b {
        let _ = writeln!(s, "        {{\n        let k = {j}u * xs + sb * 8u;");
        for c in 0..8 {
            let scale = if c < 4 { "NIB_LO" } else { "NIB_HI" };
            let _ = writeln!(s, "        let x{c} = x[k + {c}u];\n        let y{c} = x{c} * {scale};");
        }
        let _ = writeln!(s, "        let xv = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));\n        let xsum = (xv.x + xv.y) + (xv.z + xv.w);");
        for i in 0..r {
            let _ = writeln!(
                s,
                "        let s{i} = ((lo(q{i}.x) * y0 + hi(q{i}.x) * y4) + (lo(q{i}.y) * y1 + hi(q{i}.y) * y5)) + ((lo(q{i}.z) * y2 + hi(q{i}.z) * y6) + (lo(q{i}.w) * y3 + hi(q{i}.w) * y7));\n        a{i}_{j} += ((s{i}.x + s{i}.y) + (s{i}.z + s{i}.w)) * dm{i}.x + xsum * dm{i}.y;"
            );
        }
        s.push_str("        }\n");
    }
}

/// A chunk's sums, word by word: each row's 8 weights of a word
/// dequantized (by its scale `d` times the nibble weights, `dl` / `dh`,
/// written with the row's loads), then multiplied by every token's inputs.
fn by_words(s: &mut String, r: u32, b: u32) {
    for (c, comp) in ["x", "y", "z", "w"].iter().enumerate() {
        for i in 0..r {
            let _ = writeln!(s, "        let wl{i}_{c} = lo(q{i}.{comp}) * dl{i} + dm{i}.y;\n        let wh{i}_{c} = hi(q{i}.{comp}) * dh{i} + dm{i}.y;");
        }
        for j in 0..b {
            let _ = writeln!(s, "        let xl{c}_{j} = x[{j}u * xs + sb * 8u + {c}u];\n        let xh{c}_{j} = x[{j}u * xs + sb * 8u + {}u];", c + 4);
            for i in 0..r {
                let _ = writeln!(s, "        a{i}_{j} += dot(wl{i}_{c}, xl{c}_{j}) + dot(wh{i}_{c}, xh{c}_{j});");
            }
        }
    }
}

fn main() {
    let gpu = Gpu::new(&GpuOptions::default()).expect("an adapter");
    let d = &gpu.device;
    println!("adapter: {}", gpu.describe());
    // Q4_1 rows of varied values, in the split layout the kernel reads.
    let n = (ROWS * COLS) as usize;
    let values: Vec<f32> = (0..n).map(|i| (i * 7919 % 1999) as f32 / 999.5 - 1.0).collect();
    let bytes = quant::quantize(WType::Q4_1, &values);
    let deq = quant::dequantize(WType::Q4_1, &bytes, n).expect("dequantize");
    let split = WType::Q4_1.arrange(&bytes, COLS as usize, Layout::Split);
    let wbuf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &split, usage: wgpu::BufferUsages::STORAGE });
    let x: Vec<f32> = (0..16384).map(|i| ((i % 7) as f32 - 3.0) * 0.1 + (i / COLS as usize) as f32 * 0.01).collect();
    let want = reference::matmul(&deq, &x[..(MAX_B * COLS) as usize], ROWS as usize, COLS as usize, MAX_B as usize, None);
    let xbuf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&x), usage: wgpu::BufferUsages::UNIFORM });
    let ybuf = gpu.buffer("y", (MAX_B * ROWS) as u64 * 4);
    let params = gpu.uniform("params", bytemuck::cast_slice(&[ROWS, COLS, REPEAT, 0]));
    let mut one: Option<f64> = None;
    let cases = [(8, 1, false), (8, 2, false), (8, 4, false), (8, 8, false), (16, 1, false), (16, 4, false), (16, 8, false)];
    let words = [(8, 4, true), (8, 8, true), (16, 4, true), (16, 8, true), (32, 8, true), (16, 16, true), (24, 8, true)];
    for (r, b, w) in cases.into_iter().chain(words) {
        let src = kernel(r, b, w);
        let desc = wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) };
        // SAFETY: the loops are bounded and every index is in range (as wgkv's kernels, gpu::runtime_checks).
        let module = unsafe { d.create_shader_module_trusted(desc, wgkv::gpu::runtime_checks(gpu.info.backend)) };
        let t = Instant::now();
        let pipe = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let build = t.elapsed().as_secs_f64();
        let entries = [
            wgpu::BindGroupEntry { binding: 0, resource: wbuf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 5, resource: wbuf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: xbuf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: ybuf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: params.as_entire_binding() },
        ];
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipe.get_bind_group_layout(0), entries: &entries });
        let groups = ROWS.div_ceil(8 * r);
        let run = |n: usize| {
            let mut enc = d.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &bind, &[]);
                for _ in 0..n {
                    pass.dispatch_workgroups(groups, 1, 1);
                }
            }
            gpu.queue.submit([enc.finish()]);
            let _ = d.poll(wgpu::PollType::wait_indefinitely());
        };
        run(2);
        let y = gpu.read_f32(&ybuf, (b * ROWS) as usize);
        for t in 0..b {
            for row in 0..ROWS {
                // The kernel sums its REPEAT passes.
                let i = (t * ROWS + row) as usize;
                let (got, want) = (y[i] as f64, REPEAT as f64 * want[i] as f64);
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "R {r} B {b} words {w}: token {t} row {row}: {got} against {want}");
            }
        }
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            run(4);
            best = best.min(t.elapsed().as_secs_f64() / 4.0);
        }
        let rate = (ROWS * COLS * REPEAT * b) as f64 / best / 1e9;
        let per_token = best / b as f64;
        let gain = one.map_or(1.0, |o| o / per_token);
        one.get_or_insert(best);
        let form = if w { "words" } else { "in place" };
        println!("{form:8} R {r:2} B {b}: {:8.1} us per dispatch  {rate:5.2} G weight-rows x tokens/s  x{gain:.2} per token  (build {build:.1} s)", best * 1e6);
    }
}
