//! KIVI's storage kernels: `kivi_append` stages each call's rows in f16 and
//! `kivi_pack` quantizes the slots the boundary passes (past the sinks) as
//! `reference::kivi` does (keys per channel over groups of slots, values
//! per slot over groups of channels), over calls of awkward sizes; the
//! prefill and decode attention kernels of both adapter classes read the
//! quantized groups and the staged rows as the CPU attention over the
//! values they decode to.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::Kernel;
use wgkv::ops::Step;
use wgkv::ops::attention::{self as ops, AttnKind, AttnShape, DecodeScratch, PrefillScratch};
use wgkv::reference::attention as reference;
use wgkv::reference::kivi::{Format, settle};

/// `kivi`: (bits, group, residual, sinks).
fn shape(n_heads: u32, n_kv_heads: u32, head_dim: u32, max_seq: u32, kivi: (u32, u32, u32, u32)) -> AttnShape {
    let (kivi, kivi_group, kivi_res, kivi_sink) = kivi;
    AttnShape { n_heads, n_kv_heads, head_dim, max_seq, kivi, kivi_group, kivi_res, kivi_sink, ..Default::default() }
}

fn step(g: &Gpu, pos: u32, n_tokens: u32, kv_len: u32) -> wgpu::Buffer {
    g.uniform("step", bytemuck::bytes_of(&Step { pos, n_tokens, kv_len, _pad: 0 }))
}

fn format(s: &AttnShape) -> Format {
    let (heads, hd, seq) = (s.n_kv_heads as usize, s.head_dim as usize, s.max_seq as usize);
    let (group, residual, sinks, stage) = (s.kivi_group as usize, s.kivi_res as usize, s.kivi_sink as usize, s.kivi_stage() as usize);
    Format { heads, hd, seq, bits: s.kivi, group, residual, sinks, stage }
}

/// A cache under test: the buffers (poisoned, with a guard past their end)
/// and the CPU's copy of what they hold (`[len][n_kv_heads * hd]`, f16 rows,
/// quantized slots as the reference gives them back).
struct Cache {
    s: AttnShape,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    words: [usize; 2],
    rows: [Vec<f32>; 2],
}

impl Cache {
    fn new(g: &Gpu, s: AttnShape) -> Cache {
        let [kb, vb] = s.kv_cache_bytes(true);
        let words = [kb as usize / 4, vb as usize / 4];
        Cache { s, k: poisoned(g, "k_cache", words[0]), v: poisoned(g, "v_cache", words[1]), words, rows: [Vec::new(), Vec::new()] }
    }

    fn len(&self) -> usize {
        self.rows[0].len() / (self.s.n_kv_heads * self.s.head_dim) as usize
    }

    /// The boundary after `len` cached tokens.
    fn boundary(&self, len: usize) -> usize {
        len / self.s.kivi_res as usize * self.s.kivi_res as usize
    }

    /// A call of `n` new rows (random, with an outlier key channel and a
    /// constant one): stage them; with `kind`, attend them (prefill, or a
    /// decode step where `n` is 1) with that class of kernels and check the
    /// output against the CPU attention over the values the buffers decode
    /// to; then pack.
    fn call(&mut self, g: &Gpu, rng: &mut Rng, n: usize, kind: Option<AttnKind>) {
        let (hd, kvh) = (self.s.head_dim as usize, self.s.n_kv_heads as usize);
        let row = kvh * hd;
        let prior = self.len();
        let mut new = [rng.vec(n * row, -2.0, 2.0), rng.vec(n * row, -1.0, 1.0)];
        for (t, x) in new[0].chunks_mut(row).enumerate() {
            x[3] = 30.0 + t as f32 * 0.01; // a key channel far larger than the rest
            x[row - 1] = 0.25; // a constant one: scale 0
        }
        let st = step(g, prior as u32, n as u32, (prior + n) as u32);
        let app = ops::kv_append(g, &self.s, &upload_f32(g, "k", &new[0]), &upload_f32(g, "v", &new[1]), &self.k, &self.v, &st, n as u32);
        assert_eq!(app.kernel, Kernel::KiviAppend);
        let h = |x: f32| half::f16::from_f32(x).to_f32();
        for (rows, x) in self.rows.iter_mut().zip(&new) {
            rows.extend(x.iter().map(|&v| h(v)));
        }
        match kind {
            Some(kind) => self.attend(g, rng, &st, &app, kind, n),
            None => g.run(&[&app]),
        }
        g.run(&[&ops::kivi_pack(g, &self.s, &self.k, &self.v, &st, n as u32)]);
        let (q0, q1) = (self.boundary(prior).max(self.s.kivi_sink as usize), self.boundary(prior + n));
        for h in 0..kvh {
            settle(&mut self.rows[0], row, h * hd, hd, q0, q1, self.s.kivi, true, self.s.kivi_group as usize);
            settle(&mut self.rows[1], row, h * hd, hd, q0, q1, self.s.kivi, false, self.s.kivi_gv() as usize);
        }
    }

    fn attend(&self, g: &Gpu, rng: &mut Rng, st: &wgpu::Buffer, app: &wgkv::kernels::Dispatch, kind: AttnKind, n: usize) {
        let s = &self.s;
        let (len, qrow) = (self.len(), (s.n_heads * s.head_dim) as usize);
        let q = rng.vec(n * qrow, -2.0, 2.0);
        let qb = upload_f32(g, "q", &q);
        let out = poisoned(g, "out", n * qrow);
        if n == 1 {
            let scratch = DecodeScratch::with_kind(g, s, kind);
            let lse = poisoned(g, "lse", s.n_heads as usize);
            let dec = ops::attn_decode(g, s, &qb, &self.k, &self.v, &scratch, &out, &lse, st);
            g.run(&[app, &dec.partial, &dec.merge]);
        } else {
            let scratch = PrefillScratch::with_kind(g, s, kind, n as u32).unwrap();
            let attn = ops::attn_prefill(g, s, &qb, &self.k, &self.v, &scratch, &out, st);
            g.run(&[&[app], attn.iter().collect::<Vec<_>>().as_slice()].concat());
        }
        // What the kernels saw: quantized slots below the boundary before the call.
        let [kc, vc] = self.decoded(g, self.boundary(len - n));
        self.compare(&kc, &vc, &format!("before attending {n} tokens"));
        let want = reference::attention(s, &q, &kc, &vc, n, len);
        let what = format!("kivi {} {kind:?} heads {}/{} dim {} n={n} len={len} on {}", s.kivi, s.n_heads, s.n_kv_heads, s.head_dim, label(g));
        assert_close(&what, &read_guarded_f32(g, &out, n * qrow), &want.out, F32_REDUCTION);
    }

    /// The decoded buffers equal the CPU's copy (up to a code one step over
    /// where 1 / scale differs in its last bit on the GPU).
    fn compare(&self, kc: &[f32], vc: &[f32], when: &str) {
        let want = self.expected();
        for (i, (a, b)) in [kc, vc].iter().zip(&want).enumerate() {
            let mut exact = 0;
            for (e, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() <= 22.0, "kivi {:?} {when} {}: elem {e}: {x} vs {y}", self.s, ["k", "v"][i]);
                exact += ((x - y).abs() <= 1e-6 * y.abs().max(1.0)) as usize;
            }
            assert!(exact * 1000 >= a.len() * 999, "kivi {:?} {when}: {exact} of {} elements equal the reference", self.s, a.len());
        }
    }

    /// The buffers decoded, `[n_kv_heads][max_seq][hd]`, with `boundary`
    /// slots quantized; nothing written past them.
    fn decoded(&self, g: &Gpu, boundary: usize) -> [Vec<f32>; 2] {
        let f = format(&self.s);
        let len = self.len();
        [(&self.k, 0, true), (&self.v, 1, false)].map(|(buf, i, keys)| {
            let got = g.read_u32(buf, self.words[i] + GUARD_WORDS);
            assert!(got[self.words[i]..].iter().all(|&w| w == GUARD), "{}: wrote past the cache", ["k", "v"][i]);
            f.decode(&got[..self.words[i]], keys, len, boundary)
        })
    }

    /// The CPU's copy as `[n_kv_heads][max_seq][hd]`.
    fn expected(&self) -> [Vec<f32>; 2] {
        let (hd, kvh, ms) = (self.s.head_dim as usize, self.s.n_kv_heads as usize, self.s.max_seq as usize);
        let len = self.len();
        self.rows.clone().map(|rows| {
            let mut out = vec![0.0; kvh * ms * hd];
            for h in 0..kvh {
                for t in 0..len {
                    out[(h * ms + t) * hd..][..hd].copy_from_slice(&rows[(t * kvh + h) * hd..][..hd]);
                }
            }
            out
        })
    }
}

#[test]
fn kivi_pack_quantizes_as_the_reference() {
    // (n_kv_heads, head_dim, max_seq, (bits, group, residual, sinks),
    // calls): a prompt past one boundary then steps, without sinks and
    // with one group of them; 4 bits with the residual one group and two
    // groups of sinks; value groups of the whole row (group 64 > head 32);
    // head 96 (12 code words) under a 512-token call that passes several
    // boundaries; sinks past the first boundaries.
    let ones = |n: usize| vec![1; n];
    let cases: Vec<(AttnShape, Vec<usize>)> = vec![
        (shape(3, 3, 64, 300, (2, 32, 64, 0)), [vec![37], ones(30), vec![100], ones(5), vec![90]].concat()),
        (shape(3, 3, 64, 300, (2, 32, 64, 32)), [vec![37], ones(30), vec![100], ones(5), vec![90]].concat()),
        (shape(2, 2, 128, 200, (4, 32, 32, 64)), vec![5, 60, 1, 1, 70]),
        (shape(1, 1, 32, 256, (2, 64, 128, 0)), vec![130, 1, 120]),
        (shape(2, 2, 96, 700, (4, 32, 96, 32)), vec![512, 1, 1, 150]),
        (shape(1, 1, 64, 200, (2, 32, 32, 96)), [vec![40], ones(30), vec![50, 60]].concat()),
    ];
    for g in contexts() {
        if !g.caps.f16 {
            continue;
        }
        let mut rng = Rng::new(80);
        for (s, calls) in &cases {
            let mut c = Cache::new(&g, *s);
            for &n in calls {
                c.call(&g, &mut rng, n, None);
                let [kc, vc] = c.decoded(&g, c.boundary(c.len()));
                c.compare(&kc, &vc, &format!("after {} tokens on {}", c.len(), label(&g)));
            }
        }
    }
}

fn other(g: &Gpu) -> AttnKind {
    if AttnKind::for_gpu(g) == AttnKind::Lanes { AttnKind::Shared } else { AttnKind::Lanes }
}

#[test]
fn attention_reads_kivi_groups_and_staged_rows() {
    // (heads, KV heads, head_dim, max_seq, kivi, calls before, the call):
    // prefill chunks over a boundary inside and outside the chunk, decode
    // with staged rows and without (the step right after a boundary).
    let ones = |n: usize| vec![1; n];
    // Sinks of none, one group and two.
    let cases: Vec<(AttnShape, Vec<usize>, usize)> = vec![
        (shape(9, 3, 64, 300, (2, 32, 64, 32)), vec![37], 100),
        (shape(9, 3, 64, 300, (2, 32, 64, 0)), vec![100, 27], 1),
        (shape(9, 3, 64, 300, (4, 32, 64, 32)), [vec![64], ones(63)].concat(), 1),
        (shape(8, 1, 32, 256, (2, 64, 128, 64)), vec![130], 65),
        (shape(14, 2, 128, 200, (4, 32, 32, 0)), vec![5, 60], 1),
        (shape(6, 2, 96, 1200, (2, 32, 96, 64)), vec![512, 500], 60),
    ];
    for g in contexts() {
        if !g.caps.f16 {
            continue;
        }
        let mut rng = Rng::new(81);
        for kind in [AttnKind::for_gpu(&g), other(&g)] {
            for (s, before, n) in &cases {
                let mut c = Cache::new(&g, *s);
                for &m in before {
                    c.call(&g, &mut rng, m, None);
                }
                c.call(&g, &mut rng, *n, Some(kind));
            }
        }
        // A long context: decode after 4096 slots, every one past the sinks quantized.
        let mut c = Cache::new(&g, shape(9, 3, 64, 4200, (2, 32, 32, 32)));
        for _ in 0..8 {
            c.call(&g, &mut rng, 512, None);
        }
        c.call(&g, &mut rng, 1, Some(AttnKind::for_gpu(&g)));
    }
}
