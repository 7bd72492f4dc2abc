//! Quest's kernels against their CPU references, on every context: page
//! metadata (exact), page scores and selected pages (exact, on integer-valued
//! keys and queries where f32 arithmetic is exact, so ties really occur and
//! the tie-breaking is checked), attention over the selected pages, and a
//! budget covering the context equal to full decode attention.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::Kernel;
use wgkv::ops::Step;
use wgkv::ops::attention::{self as attn, AttnShape, DecodeScratch};
use wgkv::ops::quest::{self as ops, QuestScratch, QuestShape};
use wgkv::reference::attention::attention;
use wgkv::reference::quest as reference;

fn step(g: &Gpu, n_tokens: u32, kv_len: u32) -> wgpu::Buffer {
    g.uniform("step", bytemuck::bytes_of(&Step { pos: kv_len - n_tokens, n_tokens, kv_len, _pad: 0 }))
}

/// A layer's cache and its metadata on the GPU, with CPU mirrors.
struct Layer {
    s: QuestShape,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    kmax: wgpu::Buffer,
    kmin: wgpu::Buffer,
    kc: Vec<f32>,
    vc: Vec<f32>,
    len: usize,
}

impl Layer {
    fn new(g: &Gpu, s: QuestShape) -> Layer {
        let a = s.attn;
        let n = (a.n_kv_heads * a.max_seq * a.head_dim) as usize;
        Layer {
            s,
            k: g.buffer("k", a.cache_bytes(g.caps.f16)),
            v: g.buffer("v", a.cache_bytes(g.caps.f16)),
            kmax: g.buffer("kmax", s.meta_bytes(g.caps.f16)),
            kmin: g.buffer("kmin", s.meta_bytes(g.caps.f16)),
            kc: vec![0.0; n],
            vc: vec![0.0; n],
            len: 0,
        }
    }

    /// Append `n` tokens through kv_append + quest_meta (one call), keys and
    /// values from `fill` (rounded as the cache stores them).
    fn append(&mut self, g: &Gpu, n: usize, fill: &mut dyn FnMut(usize) -> Vec<f32>) {
        let a = self.s.attn;
        let kvrow = (a.n_kv_heads * a.head_dim) as usize;
        let (k_new, v_new) = (kv_round(g, &fill(n * kvrow)), kv_round(g, &fill(n * kvrow)));
        self.len += n;
        let st = step(g, n as u32, self.len as u32);
        let (kb, vb) = (upload_f32(g, "k_new", &k_new), upload_f32(g, "v_new", &v_new));
        let app = attn::kv_append(g, &a, &kb, &vb, &self.k, &self.v, &st, n as u32);
        let meta = ops::quest_meta(g, &self.s, &self.k, &self.kmax, &self.kmin, &st, n as u32);
        assert_eq!(meta.kernel, Kernel::QuestMeta);
        g.run(&[&app, &meta]);
        wgkv::reference::attention::kv_append(&a, &mut self.kc, &mut self.vc, &k_new, &v_new, self.len - n);
    }
}

fn qshape(n_heads: u32, n_kv_heads: u32, head_dim: u32, max_seq: u32, page: u32, budget: u32, shared: bool) -> QuestShape {
    let attn = AttnShape { n_heads, n_kv_heads, head_dim, max_seq, ..Default::default() };
    QuestShape::new(attn, page, budget, if shared { attn.group() } else { 1 }).unwrap()
}

#[test]
fn metadata_is_the_exact_page_min_and_max() {
    for g in contexts() {
        let mut rng = Rng::new(1);
        for &page in &[16, 5] {
            let s = qshape(9, 3, 64, 200, page, 64, true);
            let mut layer = Layer::new(&g, s);
            // A prefill chunk ending mid-page, decode steps crossing a page
            // boundary, then a chunk starting mid-page.
            for &n in &[37usize, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 23, 64] {
                layer.append(&g, n, &mut |m| rng.vec(m, -3.0, 3.0));
                let (want_max, want_min) = reference::page_meta(&s, &layer.kc, layer.len);
                let words = (s.attn.n_kv_heads * s.max_pages() * s.attn.head_dim) as usize;
                let (got_max, got_min) = (read_kv(&g, &layer.kmax, words), read_kv(&g, &layer.kmin, words));
                let hd = s.attn.head_dim as usize;
                for h in 0..s.attn.n_kv_heads as usize {
                    let used = (h * s.max_pages() as usize) * hd..(h * s.max_pages() as usize + reference::n_pages(&s, layer.len)) * hd;
                    let what = format!("page {page} len {} head {h} on {}", layer.len, label(&g));
                    assert_close(&format!("kmax {what}"), &got_max[used.clone()], &want_max[used.clone()], EXACT);
                    assert_close(&format!("kmin {what}"), &got_min[used.clone()], &want_min[used], EXACT);
                }
            }
        }
    }
}

#[test]
fn hand_checked_scores_are_23_10_and_16_5() {
    // q = (2, -3), page min (0, -5), max (4, 1): max(8, 0) + max(-3, 15) = 23.
    for g in contexts() {
        let s = qshape(1, 1, 4, 2, 1, 1, false);
        let q = upload_f32(&g, "q", &[2.0, -3.0, 0.0, 0.0]);
        let meta = |x: [f32; 4]| g.upload("meta", &kv_bytes(&g, &[x[0], x[1], x[2], x[3], 0.0, 0.0, 0.0, 0.0]));
        let (kmax, kmin) = (meta([4.0, 1.0, 0.0, 0.0]), meta([0.0, -5.0, 0.0, 0.0]));
        // Centre (2, -2), half-width (2, 3): q . centre = 10, |q| . half-width = 13.
        for (width, want) in [(1.0, 23.0), (0.0, 10.0), (0.5, 16.5)] {
            let score = poisoned(&g, "score", 2);
            let st = step(&g, 1, 2);
            g.run(&[&ops::quest_score(&g, &s, width, &q, &kmax, &kmin, &score, &st)]);
            let got = read_guarded_f32(&g, &score, 2);
            assert_eq!(got[0], want, "width {width} on {}", label(&g));
            assert_eq!(got[1].to_bits(), GUARD, "the current page must not be scored");
        }
    }
}

/// Integer keys in -8..=8 and queries in -4..=4: every product and sum is
/// exact in f32 (and f16 storage), so GPU and reference agree bit for bit and
/// equal scores are common.
fn int_vec(rng: &mut Rng, n: usize, m: u32) -> Vec<f32> {
    (0..n).map(|_| rng.below(2 * m + 1) as f32 - m as f32).collect()
}

#[test]
fn scores_and_selected_pages_equal_the_reference_exactly() {
    for g in contexts() {
        let mut rng = Rng::new(2);
        // (heads, kv heads, page, budget tokens, shared, context lengths)
        type Case = (u32, u32, u32, u32, bool, &'static [usize]);
        let cases: &[Case] = &[
            (9, 3, 16, 64, true, &[1, 64, 65, 100, 161, 300]),
            (9, 3, 16, 64, false, &[80, 161, 300]),
            (4, 4, 5, 17, false, &[3, 15, 16, 51, 77]),
            (8, 1, 16, 48, true, &[200]),
            // More pages than one select workgroup (64) holds.
            (3, 1, 2, 40, true, &[150, 301]),
            // The default model's shape at a 4096 context (255 full pages).
            (9, 3, 16, 256, true, &[4090]),
            (9, 3, 16, 512, false, &[4096]),
        ];
        for &(nh, nkv, page, budget, shared, lens) in cases {
            let max_seq = lens.iter().max().unwrap().next_multiple_of(64).max(320) as u32;
            let s = qshape(nh, nkv, 64, max_seq, page, budget, shared);
            let mut layer = Layer::new(&g, s);
            let scratch = QuestScratch::new(&g, &s);
            for &len in lens {
                layer.append(&g, len - layer.len, &mut |m| int_vec(&mut rng, m, 8));
                let q = int_vec(&mut rng, (nh * 64) as usize, 4);
                let qb = upload_f32(&g, "q", &q);
                // Quest's bound, the box centre alone, shares between.
                for width in [1.0, 0.0, 0.5, 0.25] {
                    let st = step(&g, 1, len as u32);
                    let sc = ops::quest_score(&g, &s, width, &qb, &layer.kmax, &layer.kmin, &scratch.score, &st);
                    let sel = ops::quest_select(&g, &s, &scratch.score, &scratch.list, &st);
                    g.run(&[&sc, &sel]);
                    let (kmax, kmin) = reference::page_meta(&s, &layer.kc, len);
                    let want_scores = reference::page_scores(&s, width, &q, &kmax, &kmin, len);
                    let want_lists = reference::select(&s, &want_scores, len);
                    let mp = s.max_pages() as usize;
                    let got_scores = g.read_f32(&scratch.score, s.n_units() as usize * mp);
                    let got_lists = g.read_u32(&scratch.list, (s.n_units() * s.budget_pages) as usize);
                    for u in 0..s.n_units() as usize {
                        let what =
                            format!("unit {u} of {nh}/{nkv} heads, page {page}, budget {budget}, shared {shared}, width {width}, len {len} on {}", label(&g));
                        let ws: Vec<f32> = want_scores[u].iter().map(|&x| x as f32).collect();
                        assert_eq!(&got_scores[u * mp..u * mp + ws.len()], &ws[..], "scores, {what}");
                        let wl = &want_lists[u];
                        assert_eq!(&got_lists[u * s.budget_pages as usize..][..wl.len()], &wl[..], "pages, {what}");
                    }
                }
            }
        }
    }
}

#[test]
fn selection_of_given_scores_breaks_ties_by_page_index() {
    for g in contexts() {
        let s = qshape(2, 1, 64, 160, 16, 64, false);
        let scratch = QuestScratch::new(&g, &s);
        let mp = s.max_pages() as usize;
        // Unit 0: distinct scores; unit 1: ties everywhere (3 levels).
        let mut scores = vec![0.0f32; 2 * mp];
        let u0 = [0.5, -1.0, 7.0, 2.0, 2.5, 9.0, -3.0, 1.0, 0.0];
        let u1 = [1.0, 2.0, 1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 2.0];
        scores[..9].copy_from_slice(&u0);
        scores[mp..mp + 9].copy_from_slice(&u1);
        g.write(&scratch.score, 0, bytemuck::cast_slice(&scores));
        let st = step(&g, 1, 150); // 10 pages: 9 full + the current one
        g.run(&[&ops::quest_select(&g, &s, &scratch.score, &scratch.list, &st)]);
        let got = g.read_u32(&scratch.list, 8);
        assert_eq!(&got[..4], &[5, 2, 4, 9], "distinct scores on {}", label(&g));
        assert_eq!(&got[4..], &[1, 3, 5, 9], "tied scores go to the lower page on {}", label(&g));
        let want = reference::select(&s, &[u0.iter().map(|&x| x as f64).collect(), u1.iter().map(|&x| x as f64).collect()], 150);
        assert_eq!(want, vec![vec![5, 2, 4, 9], vec![1, 3, 5, 9]]);
    }
}

#[test]
fn both_selection_kernels_equal_the_reference_on_many_pages() {
    for g in contexts() {
        let mut rng = Rng::new(5);
        // (page, budget tokens, context, the kernel that selects): thousands
        // of pages; keep = budget / page - 1 at, just past and far below
        // quest_select_radix's limit.
        let cases: &[(u32, u32, u32, Kernel)] = &[
            (1, ops::RADIX_KEEP + 1, 3500, Kernel::QuestSelectRadix),
            (1, ops::RADIX_KEEP + 2, 3400, Kernel::QuestSelect),
            (2, 64, 9001, Kernel::QuestSelectRadix),
            (3, 9, 700, Kernel::QuestSelectRadix),
        ];
        for &(page, budget, len, kernel) in cases {
            let s = qshape(2, 1, 64, len.next_multiple_of(64), page, budget, false);
            let scratch = QuestScratch::new(&g, &s);
            let mp = s.max_pages() as usize;
            // Unit 0: heavy ties (5 levels, -0 among them); unit 1: distinct.
            let mut scores = vec![0.0f32; 2 * mp];
            for (i, x) in scores[..mp].iter_mut().enumerate() {
                *x = if i % 7 == 3 { -0.0 } else { rng.below(5) as f32 - 2.0 };
            }
            for x in &mut scores[mp..] {
                *x = rng.below(1 << 20) as f32 * 0.37 - 1e5;
            }
            g.write(&scratch.score, 0, bytemuck::cast_slice(&scores));
            let st = step(&g, 1, len);
            let sel = ops::quest_select(&g, &s, &scratch.score, &scratch.list, &st);
            assert_eq!(sel.kernel, kernel, "page {page}, budget {budget}");
            g.run(&[&sel]);
            let got = g.read_u32(&scratch.list, (2 * s.budget_pages) as usize);
            let want =
                reference::select(&s, &[scores[..mp].iter().map(|&x| x as f64).collect(), scores[mp..].iter().map(|&x| x as f64).collect()], len as usize);
            for (u, w) in want.iter().enumerate() {
                assert_eq!(w.len(), s.budget_pages as usize);
                let what = format!("unit {u}, page {page}, budget {budget}, len {len}, {kernel:?} on {}", label(&g));
                assert_eq!(&got[u * s.budget_pages as usize..][..w.len()], &w[..], "{what}");
            }
        }
    }
}

/// Run score, select and paged attention for one decode query; returns
/// (out, the page lists the GPU chose).
fn decode_pages(g: &Gpu, layer: &Layer, q: &[f32]) -> (Vec<f32>, Vec<Vec<u32>>) {
    let s = &layer.s;
    let scratch = QuestScratch::new(g, s);
    let (nh, hd) = (s.attn.n_heads as usize, s.attn.head_dim as usize);
    let qb = upload_f32(g, "q", q);
    let out = poisoned(g, "out", nh * hd);
    let lse = g.buffer("lse", 4 * nh as u64);
    let st = step(g, 1, layer.len as u32);
    let sc = ops::quest_score(g, s, 1.0, &qb, &layer.kmax, &layer.kmin, &scratch.score, &st);
    let sel = ops::quest_select(g, s, &scratch.score, &scratch.list, &st);
    let da = ops::attn_decode_pages(g, s, &qb, &layer.k, &layer.v, &scratch, &out, &lse, &st);
    assert_eq!(
        [sc.kernel, sel.kernel, da.partial.kernel, da.merge.kernel],
        [Kernel::QuestScore, Kernel::QuestSelectRadix, Kernel::AttnDecodePages, Kernel::AttnMerge]
    );
    g.run(&[&sc, &sel, &da.partial, &da.merge]);
    let n_sel = reference::n_pages(s, layer.len).min(s.budget_pages as usize);
    let lists = g.read_u32(&scratch.list, (s.n_units() * s.budget_pages) as usize);
    let lists = lists.chunks(s.budget_pages as usize).map(|c| c[..n_sel].to_vec()).collect();
    (read_guarded_f32(g, &out, nh * hd), lists)
}

#[test]
fn attention_over_selected_pages_equals_reference_on_those_pages() {
    for g in contexts() {
        let mut rng = Rng::new(3);
        for &(nh, nkv, page, budget, shared, len) in &[
            (9u32, 3u32, 16u32, 64u32, true, 301usize),
            (9, 3, 16, 64, false, 301),
            (9, 3, 16, 256, true, 1000),
            (4, 4, 5, 23, false, 77),
            (8, 1, 16, 48, true, 50),
            // The default model's shape at a 4096 context.
            (9, 3, 16, 512, true, 4090),
        ] {
            let s = qshape(nh, nkv, 64, len.next_multiple_of(1024) as u32, page, budget, shared);
            let mut layer = Layer::new(&g, s);
            layer.append(&g, len - 1, &mut |m| rng.vec(m, -1.0, 1.0));
            layer.append(&g, 1, &mut |m| rng.vec(m, -1.0, 1.0));
            let q = rng.vec((nh * 64) as usize, -2.0, 2.0);
            let (got, lists) = decode_pages(&g, &layer, &q);
            let n_sel = reference::n_pages(&s, len).min(s.budget_pages as usize);
            for l in &lists {
                assert_eq!(l.len(), n_sel);
                assert_eq!(*l.last().unwrap() as usize, reference::n_pages(&s, len) - 1, "the current page is always attended");
            }
            let want = reference::attention_pages(&s, &q, &layer.kc, &layer.vc, &lists, len);
            let what = format!("paged decode {nh}/{nkv} heads, page {page}, budget {budget}, shared {shared}, len {len} on {}", label(&g));
            assert_close(&what, &got, &want, F32_REDUCTION);
        }
    }
}

#[test]
fn a_budget_covering_the_context_equals_full_attention() {
    for g in contexts() {
        let mut rng = Rng::new(4);
        for &(page, len, shared) in &[(16u32, 300usize, true), (16, 300, false), (5, 99, true)] {
            let s = qshape(9, 3, 64, 512, page, len.next_multiple_of(page as usize) as u32, shared);
            let mut layer = Layer::new(&g, s);
            layer.append(&g, len, &mut |m| rng.vec(m, -1.0, 1.0));
            let q = rng.vec(9 * 64, -2.0, 2.0);
            let (got, lists) = decode_pages(&g, &layer, &q);
            assert!(lists.iter().all(|l| l.len() == reference::n_pages(&s, len)));
            // Full flash-decoding on the same cache, and the exact reference.
            let scratch = DecodeScratch::new(&g, &s.attn);
            let (qb, out, lse) = (upload_f32(&g, "q", &q), poisoned(&g, "out", 9 * 64), g.buffer("lse", 36));
            let st = step(&g, 1, len as u32);
            let full = attn::attn_decode(&g, &s.attn, &qb, &layer.k, &layer.v, &scratch, &out, &lse, &st);
            g.run(&full.dispatches());
            let full = read_guarded_f32(&g, &out, 9 * 64);
            let want = attention(&s.attn, &q, &layer.kc, &layer.vc, 1, len).out;
            let what = format!("page {page} len {len} shared {shared} on {}", label(&g));
            assert_close(&format!("quest vs reference, {what}"), &got, &want, F32_REDUCTION);
            assert_close(&format!("quest vs full decode, {what}"), &got, &full, F32_REDUCTION);
        }
    }
}

#[test]
fn bad_quest_shapes_are_refused() {
    let attn = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, max_seq: 100, ..Default::default() };
    assert!(QuestShape::new(attn, 16, 8, 3).unwrap_err().to_string().contains("below one page"));
    assert!(QuestShape::new(attn, 0, 64, 3).is_err());
    assert!(QuestShape::new(attn, 16, 64, 2).unwrap_err().to_string().contains("neither 1 nor"));
    assert_eq!(QuestShape::new(attn, 16, 100, 1).unwrap().budget_pages, 6);
    let long = AttnShape { max_seq: 1 << 18, ..attn };
    assert!(QuestShape::new(long, 4, 64, 3).unwrap_err().to_string().contains("raise page="));
    assert!(QuestShape::new(long, 8, 64, 3).is_ok());
}

#[test]
fn paged_attention_with_window_and_softcap_equals_reference() {
    for g in contexts() {
        let mut rng = Rng::new(5);
        // (heads, KV heads, page, budget, shared, len, softcap, window, query range)
        type Case = (u32, u32, u32, u32, bool, usize, f32, u32, f32);
        let cases: &[Case] = &[
            // A window narrower than the budget: selected pages before it are
            // skipped whole, the one it starts in partly.
            (9, 3, 16, 64, true, 301, 0.0, 40, 2.0),
            (9, 3, 16, 64, false, 301, 0.0, 1, 2.0),  // only the query's own slot
            (4, 4, 5, 23, false, 77, 0.0, 13, 2.0),   // odd pages
            (9, 3, 16, 64, true, 40, 0.0, 1000, 2.0), // a window past the context
            // The softcap against large scores, alone and with a window.
            (8, 1, 16, 48, true, 50, 0.5, 0, 30.0),
            (9, 3, 16, 256, true, 1000, 50.0, 500, 100.0),
        ];
        for &(nh, nkv, page, budget, shared, len, softcap, window, q_range) in cases {
            let attn =
                AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: 64, max_seq: len.next_multiple_of(1024) as u32, softcap, window, ..Default::default() };
            let s = QuestShape::new(attn, page, budget, if shared { attn.group() } else { 1 }).unwrap();
            let mut layer = Layer::new(&g, s);
            layer.append(&g, len - 1, &mut |m| rng.vec(m, -1.0, 1.0));
            layer.append(&g, 1, &mut |m| rng.vec(m, -1.0, 1.0));
            let q = rng.vec((nh * 64) as usize, -q_range, q_range);
            let (got, lists) = decode_pages(&g, &layer, &q);
            let want = reference::attention_pages(&s, &q, &layer.kc, &layer.vc, &lists, len);
            let what = format!(
                "paged decode {nh}/{nkv} heads, page {page}, budget {budget}, shared {shared}, len {len}, softcap {softcap}, window {window} on {}",
                label(&g)
            );
            assert_close(&what, &got, &want, F32_REDUCTION);
        }
    }
}

#[test]
fn a_budget_covering_the_window_equals_full_attention_with_the_window() {
    // Every page selected: paged attention with a window and a softcap is full
    // decode attention with them.
    for g in contexts() {
        let mut rng = Rng::new(6);
        for &(page, len, window, softcap) in &[(16u32, 300usize, 50u32, 0.0f32), (5, 99, 1, 10.0), (16, 300, 17, 50.0)] {
            let attn = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, max_seq: 512, softcap, window, ..Default::default() };
            let s = QuestShape::new(attn, page, len.next_multiple_of(page as usize) as u32, 3).unwrap();
            let mut layer = Layer::new(&g, s);
            layer.append(&g, len, &mut |m| rng.vec(m, -1.0, 1.0));
            let q = rng.vec(9 * 64, -4.0, 4.0);
            let (got, _) = decode_pages(&g, &layer, &q);
            let scratch = DecodeScratch::new(&g, &attn);
            let (qb, out, lse) = (upload_f32(&g, "q", &q), poisoned(&g, "out", 9 * 64), g.buffer("lse", 36));
            let st = step(&g, 1, len as u32);
            let full = attn::attn_decode(&g, &attn, &qb, &layer.k, &layer.v, &scratch, &out, &lse, &st);
            g.run(&full.dispatches());
            let full = read_guarded_f32(&g, &out, 9 * 64);
            let want = attention(&attn, &q, &layer.kc, &layer.vc, 1, len).out;
            let what = format!("page {page} len {len} window {window} softcap {softcap} on {}", label(&g));
            assert_close(&format!("quest vs reference, {what}"), &got, &want, F32_REDUCTION);
            assert_close(&format!("quest vs full decode, {what}"), &got, &full, F32_REDUCTION);
        }
    }
}
