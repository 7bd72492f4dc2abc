//! Weight-reading kernel throughput: matvec (decode), matmul (512-token
//! prefill) and the matmuls of 8- and 32-token calls (`matfew`: each shape the
//! adapter could run it with) for every weight type at the default model's shapes; one
//! layer's decode attention at depth 4096, dense (`attn_decode`) against
//! Mustafar's compressed blocks (`mustafar_attn`, k = v = 0.7); and the
//! decode step's readback kernels (argmax, top-k) over the real vocabulary
//! for each first-stage block size.
//!
//! `cargo bench --bench kernels [-- FILTER...]` (FILTER matches a type name,
//! `matvec`, `matmul`, `matfew`, `attn` or `sample`). `WGKV_BACKEND` / `WGKV_ADAPTER` pick the adapter.
//! Every case is first checked against the CPU reference, then timed with
//! many dispatches recorded into one pass and one submit (so submit and
//! readback overhead is amortised away): matvec reports weight GB/s,
//! matmul GFLOP/s (2 * rows * cols * tokens).

mod common;

use std::time::{Duration, Instant};
use wgkv::gpu::Gpu;
use wgkv::kernels::Dispatch;
use wgkv::ops::Step;
use wgkv::ops::linear as ops;
use wgkv::quant::{self, Layout, WType};
use wgkv::reference::linear as reference;

/// The model's matvec shapes (rows x cols): FFN up/gate, FFN down,
/// attention q/output, attention k/v, and the tied 49152-token output head.
const MATVEC_SHAPES: &[(u32, u32)] = &[(1536, 576), (576, 1536), (576, 576), (192, 576), (49152, 576)];
const MATMUL_SHAPES: &[(u32, u32)] = &[(1536, 576), (576, 1536), (576, 576)];
const PREFILL: u32 = 512;
/// Tokens of short calls (a chat turn's few tokens, a prompt's tail chunk):
/// one `matmul_rows` workgroup's, and the most it is chosen for.
const FEW: &[u32] = &[8, 16, 32];

/// A fast deterministic generator for test data (xorshift).
struct Rng(u64);
impl Rng {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }
}

/// Largest |got - want| relative to 1 + |want|; the f32-vs-f64 dot error is ~1e-5.
fn worst_error(got: &[f32], want: &[f32]) -> f32 {
    got.iter().zip(want).map(|(g, w)| (g - w).abs() / (1.0 + w.abs())).fold(0.0, f32::max)
}

/// CPU seconds this process has used (all threads), from /proc on Linux:
/// on CPU adapters it measures a kernel's cost even when other work shares
/// the cores and wall times are unreliable. None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on every Linux ABI
}

/// Seconds per dispatch: one warm-up pass, then passes of `reps` dispatches
/// in one submit until at least `budget` has elapsed; the fastest pass
/// counts. Also the process CPU seconds per dispatch over all passes.
fn time(g: &Gpu, d: &Dispatch, budget: Duration) -> (f64, Option<f64>) {
    time_all(g, &[d], budget)
}

/// `time` for a sequence of dispatches run in order (e.g. a kernel's
/// blocks and their merge): seconds per run of the whole sequence.
fn time_all(g: &Gpu, ds: &[&Dispatch], budget: Duration) -> (f64, Option<f64>) {
    g.run(ds);
    let t = Instant::now();
    g.run(ds);
    let once = t.elapsed().as_secs_f64().max(1e-6);
    let reps = ((0.1 / once) as usize).clamp(1, 2000);
    let list: Vec<&Dispatch> = (0..reps).flat_map(|_| ds.iter().copied()).collect();
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while start.elapsed() < budget || best.is_infinite() {
        let t = Instant::now();
        g.run(&list);
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        runs += reps;
    }
    let cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) / runs as f64);
    (best, cpu)
}

fn cpu_col(cpu: Option<f64>) -> String {
    cpu.map_or(String::new(), |c| format!(" {:>9.1} us CPU", c * 1e6))
}

fn weights(rng: &mut Rng, w: WType, rows: u32, cols: u32) -> (Vec<u8>, Vec<f32>) {
    let n = (rows * cols) as usize;
    let bytes = quant::quantize(w, &rng.vec(n));
    let deq = quant::dequantize(w, &bytes, n).expect("dequantize");
    (bytes, deq)
}

fn bench_matvec(g: &Gpu, w: WType, rows: u32, cols: u32, rng: &mut Rng) -> Result<(), String> {
    let (bytes, deq) = weights(rng, w, rows, cols);
    let x = rng.vec(cols as usize);
    // The input as the model holds it: an activations buffer, which CPU
    // adapters' matvec reads as a uniform.
    let xb = g.activations("x", (4 * cols as u64).max(ops::X_UNIFORM_BYTES));
    g.write(&xb, 0, bytemuck::cast_slice(&x));
    let yb = g.buffer("y", 4 * rows as u64);
    // Each layout the type has: the file's, and split where the adapter's tuning uploads it.
    let layouts: &[Layout] = if w.split_parts().is_some() { &[Layout::Gguf, Layout::Split] } else { &[Layout::Gguf] };
    for &layout in layouts {
        let wb = g.upload("w", &w.arrange(&bytes, cols as usize, layout));
        let d = ops::matvec_with(g, ops::MatvecShape::for_gpu(g), ops::Enc { wtype: w, layout }, &wb, &xb, &yb, ops::Rows::all(rows), cols, false);
        g.run(&[&d]);
        let err = worst_error(&g.read_f32(&yb, rows as usize), &reference::matvec(&deq, &x, rows as usize, cols as usize, None));
        if err > 1e-3 {
            return Err(format!("matvec {} {layout:?} {rows}x{cols}: wrong result (error {err:e})", w.name()));
        }
        let (s, cpu) = time(g, &d, Duration::from_millis(500));
        let name = format!("{}{}", w.name(), if layout == Layout::Split { " split" } else { "" });
        println!("matvec  {:10} {:>5}x{:<5} {:>9.1} us {:>8.2} GB/s{}", name, rows, cols, s * 1e6, bytes.len() as f64 / s / 1e9, cpu_col(cpu));
    }
    Ok(())
}

fn bench_matmul(g: &Gpu, w: WType, rows: u32, cols: u32, rng: &mut Rng) -> Result<(), String> {
    let (bytes, deq) = weights(rng, w, rows, cols);
    let x = rng.vec((PREFILL * cols) as usize);
    let wb = g.upload("w", &bytes);
    let xb = g.upload("x", bytemuck::cast_slice(&x));
    let yb = g.buffer("y", 4 * (rows * PREFILL) as u64);
    let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: 0, n_tokens: PREFILL, kv_len: PREFILL, _pad: 0 }));
    let d = ops::matmul(g, w, &wb, &xb, &yb, &step, rows, cols, PREFILL, false);
    g.run(&[&d]);
    let got = g.read_f32(&yb, (rows * PREFILL) as usize);
    // Check a spread of 16 tokens (the full f64 reference is slow to compute at 512).
    for t in (0..PREFILL as usize).step_by(33) {
        let xt = &x[t * cols as usize..(t + 1) * cols as usize];
        let want = reference::matvec(&deq, xt, rows as usize, cols as usize, None);
        let err = worst_error(&got[t * rows as usize..(t + 1) * rows as usize], &want);
        if err > 1e-3 {
            return Err(format!("matmul {} {rows}x{cols} token {t}: wrong result (error {err:e})", w.name()));
        }
    }
    let (s, cpu) = time(g, &d, Duration::from_millis(800));
    let flops = 2.0 * rows as f64 * cols as f64 * PREFILL as f64;
    println!("matmul  {:5} {:>5}x{:<5} x{PREFILL} {:>9.1} us {:>8.2} GFLOP/s{}", w.name(), rows, cols, s * 1e6, flops / s / 1e9, cpu_col(cpu));
    Ok(())
}

/// Calls of `FEW` tokens through `matmul_words` (a batched decode step's,
/// Q4_1), `matmul_rows` and `matmul_lanes` (CPU adapters) or the adapter's matmul, in the layout the adapter's tuning
/// uploads: time per call and per token.
fn bench_few(g: &Gpu, w: WType, rows: u32, cols: u32, rng: &mut Rng) -> Result<(), String> {
    for &n in FEW {
        bench_few_at(g, w, rows, cols, n, rng)?;
    }
    Ok(())
}

fn bench_few_at(g: &Gpu, w: WType, rows: u32, cols: u32, few: u32, rng: &mut Rng) -> Result<(), String> {
    let (bytes, deq) = weights(rng, w, rows, cols);
    let x = rng.vec((few * cols) as usize);
    let tuning = wgkv::ops::tuning::Tuning::for_caps(&g.caps);
    let layout = if tuning.split_weights && w.split_parts().is_some() { Layout::Split } else { Layout::Gguf };
    let wb = g.upload("w", &w.arrange(&bytes, cols as usize, layout));
    let xb = g.activations("x", (4 * (few * cols) as u64).max(ops::X_UNIFORM_BYTES));
    g.write(&xb, 0, bytemuck::cast_slice(&x));
    let yb = g.buffer("y", 4 * (rows * few) as u64);
    let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: 0, n_tokens: few, kv_len: few, _pad: 0 }));
    let enc = ops::Enc { wtype: w, layout };
    // The batched decode step's kernel first, where it takes these weights.
    let words = ops::words_shape(g, enc, few);
    let shapes: Vec<ops::MatmulShape> = words.into_iter().chain(tuning.few).chain([tuning.matmul]).collect();
    for shape in shapes {
        let d = ops::matmul_with(g, shape, enc, &wb, &xb, &yb, &step, ops::Rows::all(rows), cols, few, false);
        g.run(&[&d]);
        let got = g.read_f32(&yb, (rows * few) as usize);
        for t in 0..few as usize {
            let want = reference::matvec(&deq, &x[t * cols as usize..(t + 1) * cols as usize], rows as usize, cols as usize, None);
            let err = worst_error(&got[t * rows as usize..(t + 1) * rows as usize], &want);
            if err > 1e-3 {
                return Err(format!("{} {} {rows}x{cols} token {t}: wrong result (error {err:e})", shape.kernel.name(), w.name()));
            }
        }
        let (s, cpu) = time(g, &d, Duration::from_millis(500));
        println!(
            "matfew  {:5} {:>5}x{:<5} x{few:<2} {:12} {:>9.1} us {:>8.1} us/token{}",
            w.name(),
            rows,
            cols,
            shape.kernel.name(),
            s * 1e6,
            s * 1e6 / few as f64,
            cpu_col(cpu)
        );
    }
    Ok(())
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).map(|a| a.to_lowercase()).collect();
    // Kernel names and type names filter independently; an empty group allows all.
    let (kernels, types): (Vec<&String>, Vec<&String>) = filters.iter().partition(|f| f.starts_with("mat") || *f == "attn" || *f == "sample");
    let wanted = |kernel: &str, w: WType| {
        (kernels.is_empty() || kernels.iter().any(|k| *k == kernel)) && (types.is_empty() || types.iter().any(|t| **t == w.name().to_lowercase()))
    };
    let g = match Gpu::new(&common::gpu_options()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU context: {e}");
            std::process::exit(1);
        }
    };
    println!("adapter: {}", g.describe());
    println!("matvec {:?}, matmul {:?}", ops::MatvecShape::for_gpu(&g), ops::MatmulShape::for_gpu(&g));
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut failed = false;
    for &w in WType::ALL {
        let fits = |cols: u32| (cols as usize).is_multiple_of(w.block_elems());
        for (kernel, shapes) in [("matvec", MATVEC_SHAPES), ("matmul", MATMUL_SHAPES), ("matfew", MATMUL_SHAPES)] {
            if !wanted(kernel, w) {
                continue;
            }
            for &(rows, cols) in shapes {
                if !fits(cols) {
                    println!("{kernel}  {:5} {rows:>5}x{cols:<5} skipped: rows of {cols} are not whole {}-weight blocks", w.name(), w.block_elems());
                    continue;
                }
                let r = match kernel {
                    "matvec" => bench_matvec(&g, w, rows, cols, &mut rng),
                    "matmul" => bench_matmul(&g, w, rows, cols, &mut rng),
                    _ => bench_few(&g, w, rows, cols, &mut rng),
                };
                if let Err(e) = r {
                    eprintln!("FAILED: {e}");
                    failed = true;
                }
            }
        }
    }
    if (kernels.is_empty() || kernels.iter().any(|k| *k == "attn"))
        && let Err(e) = bench_attention(&g, &mut rng)
    {
        eprintln!("FAILED: {e}");
        failed = true;
    }
    if (kernels.is_empty() || kernels.iter().any(|k| *k == "sample"))
        && let Err(e) = bench_sample(&g, &mut rng)
    {
        eprintln!("FAILED: {e}");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}

/// The decode step's readback kernels over the real vocabulary (49152
/// logits): greedy argmax and the top-k candidates sampling reads, for the
/// engine's first-stage block (one block) and smaller ones (several blocks
/// and a merge), each checked against the CPU reference first.
fn bench_sample(g: &Gpu, rng: &mut Rng) -> Result<(), String> {
    use wgkv::ops::sample as ops;
    use wgkv::reference::sample as reference;
    let n = 49152u32;
    let logits: Vec<f32> = rng.vec(n as usize).iter().map(|v| 10.0 * v).collect();
    let lb = g.upload("logits", bytemuck::cast_slice(&logits));
    let k = ops::TOPK_K;
    let words = ops::topk_words(k) as usize;
    let out = g.buffer("out", 4 * words.max(ops::ARGMAX_WORDS) as u64);
    let want_arg = reference::argmax(&logits);
    let want_top = reference::topk(&logits, k as usize);
    for block in [ops::ARGMAX_BLOCK, 24576, 16384, 8192, 4096] {
        let groups = n.div_ceil(block);
        let what = format!("n={n} in {groups} block(s) of {block}");
        let arg = ops::argmax_blocks(g, &lb, &out, n, block);
        let arg: Vec<&Dispatch> = arg.iter().collect();
        g.run(&arg);
        let got = g.read_u32(&out, ops::ARGMAX_WORDS);
        if got[0] != want_arg || f32::from_bits(got[1]) != logits[want_arg as usize] {
            return Err(format!("argmax {what}: got id {} value {}, want {want_arg}", got[0], f32::from_bits(got[1])));
        }
        let (s_arg, cpu_arg) = time_all(g, &arg, Duration::from_millis(500));
        let top = ops::topk_blocks(g, &lb, &out, n, k, block).map_err(|e| e.to_string())?;
        let top: Vec<&Dispatch> = top.iter().collect();
        g.run(&top);
        let got = ops::TopK::parse(&g.read_u32(&out, words), k).map_err(|e| e.to_string())?;
        let bits = |c: &[(u32, f32)]| c.iter().map(|&(i, v)| (i, v.to_bits())).collect::<Vec<_>>();
        if bits(&got.candidates) != bits(&want_top.candidates[..k as usize]) {
            return Err(format!("top-{k} {what}: candidates differ from the reference"));
        }
        let (s_top, cpu_top) = time_all(g, &top, Duration::from_millis(500));
        let merge = if groups > 1 { "+ merge" } else { "" };
        println!("sample  argmax    {what:<29} {merge:<7} {:>9.1} us{}", s_arg * 1e6, cpu_col(cpu_arg));
        println!("sample  top-{k:<4}  {what:<29} {merge:<7} {:>9.1} us{}", s_top * 1e6, cpu_col(cpu_top));
    }
    Ok(())
}

/// One layer's decode attention over `DEPTH` cached tokens at the model's
/// shape (9 query heads, 3 KV heads, head_dim 64): the dense cache's
/// partial pass, and the same tokens as Mustafar blocks at k = v = 0.7.
fn bench_attention(g: &Gpu, rng: &mut Rng) -> Result<(), String> {
    use wgkv::ops::attention::{self as attn, AttnShape, DecodeScratch};
    use wgkv::ops::mustafar::{self as must, MustafarShape, Store};
    use wgkv::reference::attention::attention;
    use wgkv::reference::mustafar as mref;
    const DEPTH: usize = 4096;
    let shape = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, max_seq: DEPTH as u32, ..Default::default() };
    let (nkv, d, nh) = (3usize, 64usize, 9usize);
    let n = nkv * DEPTH * d;
    // The cache as the adapter stores it (f16 where it can), kept in f32 for the references.
    let round = |v: Vec<f32>| -> Vec<f32> { if g.caps.f16 { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() } else { v } };
    let (k, v) = (round(rng.vec(n)), round(rng.vec(n)));
    let bytes = |x: &[f32]| -> Vec<u8> {
        if g.caps.f16 { x.iter().flat_map(|&e| half::f16::from_f32(e).to_le_bytes()).collect() } else { bytemuck::cast_slice(x).to_vec() }
    };
    let (kb, vb) = (g.upload("k", &bytes(&k)), g.upload("v", &bytes(&v)));
    let q = rng.vec(nh * d);
    let qb = g.upload("q", bytemuck::cast_slice(&q));
    let (out, lse) = (g.buffer("out", (nh * d * 4) as u64), g.buffer("lse", (nh * 4) as u64));
    let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: DEPTH as u32 - 1, n_tokens: 1, kv_len: DEPTH as u32, _pad: 0 }));
    let check = |what: &str, want: &[f32]| -> Result<(), String> {
        let err = worst_error(&g.read_f32(&out, nh * d), want);
        if err > 1e-3 { Err(format!("{what}: wrong result (error {err:e})")) } else { Ok(()) }
    };

    // Dense.
    let scratch = DecodeScratch::new(g, &shape);
    let da = attn::attn_decode(g, &shape, &qb, &kb, &vb, &scratch, &out, &lse, &step);
    g.run(&[&da.partial, &da.merge]);
    check("attn_decode", &attention(&shape, &q, &k, &v, 1, DEPTH).out)?;
    let (s_dense, cpu_dense) = time(g, &da.partial, Duration::from_millis(800));
    println!("attn    dense     d{DEPTH} {:>9.1} us {:>8.2} GB/s of K/V{}", s_dense * 1e6, 2.0 * bytes(&k).len() as f64 / s_dense / 1e9, cpu_col(cpu_dense));

    // Mustafar blocks of the same tokens.
    let keep = mref::keep_count(d, 0.7) as u32;
    let ms = MustafarShape::new(shape, keep, keep).map_err(|e| e.to_string())?;
    let blocks = (DEPTH / mref::T) as u32;
    let store = Store::new(g, &ms, ms.units_bound(blocks) as u32);
    g.run(&[&must::compress(g, &store, &kb, &vb, DEPTH as u32, 0, blocks, 0, store.units)]);
    let live = g.uniform("live", bytemuck::cast_slice(&[blocks, 0, 0, 0]));
    let mscratch = DecodeScratch::with_extra(g, &shape, attn::AttnKind::for_gpu(g), blocks);
    let part = must::attn_partial(g, &store, &qb, &mscratch.part_o, &mscratch.part_ml, blocks, 0, &live, None);
    let merge = attn::attn_merge(g, &shape, shape.n_heads, &mscratch.part_o, &mscratch.part_ml, blocks, &out, &lse, &step);
    g.run(&[&part, &merge]);
    let (mut kp, mut vp) = (vec![0.0; n], vec![0.0; n]);
    for h in 0..nkv {
        for b in 0..blocks as usize {
            let o = (h * DEPTH + b * mref::T) * d;
            let blk = mref::compress_block(&k[o..o + mref::T * d], &v[o..o + mref::T * d], d, keep as usize, keep as usize);
            let (ek, ev) = mref::expand_block(&blk, d);
            kp[o..o + mref::T * d].copy_from_slice(&ek);
            vp[o..o + mref::T * d].copy_from_slice(&ev);
        }
    }
    check("mustafar_attn", &attention(&shape, &q, &kp, &vp, 1, DEPTH).out)?;
    let units = g.read_u32(&store.state, 1)[0] as f64;
    let (s_m, cpu_m) = time(g, &part, Duration::from_millis(800));
    println!(
        "attn    mustafar  d{DEPTH} {:>9.1} us {:>8.2} GB/s of tiles{}  ({:.2}x dense)",
        s_m * 1e6,
        units * 16.0 / s_m / 1e9,
        cpu_col(cpu_m),
        s_dense / s_m
    );
    Ok(())
}
