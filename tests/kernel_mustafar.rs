//! Mustafar's kernels against `reference::mustafar`, on every context:
//! compression gives exactly the reference tiles (bitmaps and non-zeros,
//! wherever the pool put them) and a pool that grows by exactly their units;
//! expansion gives the pruned dense rows; attention read from the tiles
//! equals reference attention over the pruned rows; sparsity 0 keeps the
//! cache as it was.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::kernels::Kernel;
use wgkv::ops::Step;
use wgkv::ops::attention::{self as attn, AttnShape};
use wgkv::ops::mustafar::{self as ops, MustafarShape, Store};
use wgkv::reference::attention::{attention, round_f16};
use wgkv::reference::mustafar::{self as reference, Block, T};

/// Dense source rows `[n_kv_heads][seq][d]`, stored as the cache type: one
/// third small integers / 4 (equal magnitudes, ties, and exact zeros), the rest
/// uniform values scaled by 1 .. 1e-7, so f32 caches exercise the kernels'
/// rounding to f16 (ties to even, subnormals, values that round to 0).
fn source(g: &Gpu, rng: &mut Rng, n: usize) -> (Vec<f32>, wgpu::Buffer) {
    let vals: Vec<f32> = (0..n)
        .map(|_| if rng.below(3) == 0 { (rng.below(17) as f32 - 8.0) / 4.0 } else { rng.uniform(-1.0, 1.0) * 10f32.powi(-(rng.below(8) as i32)) })
        .collect();
    let vals = kv_round(g, &vals);
    let buf = g.upload("src", &kv_bytes(g, &vals));
    (vals, buf)
}

/// Reference blocks of `n_blocks` blocks per head from slot `first` of `k`/`v`.
fn ref_blocks(s: &MustafarShape, k: &[f32], v: &[f32], seq: usize, first: usize, n_blocks: usize) -> Vec<Vec<Block>> {
    let d = s.attn.head_dim as usize;
    (0..s.attn.n_kv_heads as usize)
        .map(|h| {
            (0..n_blocks)
                .map(|b| {
                    let o = (h * seq + first + b * T) * d;
                    reference::compress_block(&k[o..o + T * d], &v[o..o + T * d], d, s.keep_k as usize, s.keep_v as usize)
                })
                .collect()
        })
        .collect()
}

/// The non-zeros of a tile from the pool: `n` f16 values from unit `u`, and
/// whether the rest of its last unit is zero padding.
fn pool_tile(pool: &[u32], u: usize, n: usize) -> (Vec<f32>, bool) {
    let halves: Vec<f32> = pool[u * 4..(u + n.div_ceil(8)) * 4]
        .iter()
        .flat_map(|w| [half::f16::from_bits(*w as u16).to_f32(), half::f16::from_bits((*w >> 16) as u16).to_f32()])
        .collect();
    let pad_zero = halves[n..].iter().all(|&x| x.to_bits() == 0);
    (halves[..n].to_vec(), pad_zero)
}

struct Case {
    n_kv_heads: u32,
    group: u32,
    head_dim: u32,
    sparsity: f64,
}

fn shape_of(c: &Case, max_seq: u32) -> MustafarShape {
    let attn = AttnShape { n_heads: c.n_kv_heads * c.group, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim, max_seq, ..Default::default() };
    let keep = reference::keep_count(c.head_dim as usize, c.sparsity) as u32;
    MustafarShape::new(attn, keep, keep).unwrap()
}

const CASES: &[Case] = &[
    Case { n_kv_heads: 3, group: 3, head_dim: 64, sparsity: 0.7 },
    Case { n_kv_heads: 2, group: 1, head_dim: 96, sparsity: 0.5 },
    Case { n_kv_heads: 1, group: 8, head_dim: 32, sparsity: 0.3 },
    Case { n_kv_heads: 2, group: 2, head_dim: 128, sparsity: 0.7 },
    Case { n_kv_heads: 1, group: 3, head_dim: 64, sparsity: 0.0 },
];

#[test]
fn compression_equals_the_reference_tiles_and_expands_to_the_pruned_rows() {
    for g in contexts() {
        let mut rng = Rng::new(1);
        for c in CASES {
            // 3 blocks from slot 5 of a 250-slot source, into blocks 2, 3, 0 of
            // a 4-block store (a ring), the pool run starting at unit 5.
            let (seq, first, n_blocks, dst_block, run0) = (250usize, 5usize, 3usize, 2u32, 5u32);
            let s = shape_of(c, 4 * T as u32);
            let d = c.head_dim as usize;
            let n = c.n_kv_heads as usize * seq * d;
            let ((k, kb), (v, vb)) = (source(&g, &mut rng, n), source(&g, &mut rng, n));
            let want = ref_blocks(&s, &k, &v, seq, first, n_blocks);
            let store = Store::with_meta(&g, &s, s.units_bound(4) as u32 + run0, true);
            g.write(&store.state, 0, bytemuck::cast_slice(&[run0, 0]));
            let comp = ops::compress(&g, &store, &kb, &vb, seq as u32, first as u32, n_blocks as u32, dst_block, store.units);
            assert_eq!(comp.kernel, Kernel::MustafarCompress);
            g.run(&[&comp]);

            let tiles = s.tiles() as usize;
            let bits = g.read_u32(&store.bits, c.n_kv_heads as usize * 4 * tiles * 2);
            let offs = g.read_u32(&store.offs, c.n_kv_heads as usize * 4 * tiles);
            let pool = g.read_u32(&store.pool, store.units as usize * 4);
            let state = g.read_u32(&store.state, 2);
            let what = format!("{} KV heads, head_dim {d}, sparsity {} on {}", c.n_kv_heads, c.sparsity, label(&g));
            let mut units = 0;
            for (h, blocks) in want.iter().enumerate() {
                for (b, blk) in blocks.iter().enumerate() {
                    let meta = (h * 4 + (dst_block as usize + b) % 4) * tiles;
                    for (i, tile) in blk.k.iter().chain(&blk.v).enumerate() {
                        assert_eq!([bits[(meta + i) * 2], bits[(meta + i) * 2 + 1]], tile.bits, "bitmap of tile {i}, block {b}, head {h}: {what}");
                        let (nz, pad_zero) = pool_tile(&pool, offs[meta + i] as usize, tile.nz.len());
                        assert_eq!(nz, tile.nz, "non-zeros of tile {i}, block {b}, head {h}: {what}");
                        assert!(pad_zero, "padding of tile {i}: {what}");
                        units += tile.units();
                    }
                }
            }
            assert_eq!(state, [run0 + units as u32, 0], "pool units handed out / overflow: {what}");
            assert!(offs.iter().enumerate().all(|(i, &o)| o >= run0 || bits[2 * i..2 * i + 2] == [0, 0]), "a tile below the run: {what}");
            // Sparsity 0 keeps every element that is non-zero.
            if c.sparsity == 0.0 {
                assert_eq!(units, want.iter().flatten().map(|b| b.k.iter().chain(&b.v).map(|t| t.units()).sum::<usize>()).sum::<usize>());
            }

            // Quest's block metadata: per channel the max / min of the pruned keys.
            let (kmax, kmin) = (read_kv(&g, &store.kmax, c.n_kv_heads as usize * 4 * d), read_kv(&g, &store.kmin, c.n_kv_heads as usize * 4 * d));
            for (h, blocks) in want.iter().enumerate() {
                for (b, blk) in blocks.iter().enumerate() {
                    let (wk, _) = reference::expand_block(blk, d);
                    let o = (h * 4 + (dst_block as usize + b) % 4) * d;
                    for ch in 0..d {
                        let col = (0..T).map(|t| wk[t * d + ch]);
                        assert_eq!(kmax[o + ch], col.clone().fold(f32::NEG_INFINITY, f32::max), "kmax channel {ch}, block {b}, head {h}: {what}");
                        assert_eq!(kmin[o + ch], col.fold(f32::INFINITY, f32::min), "kmin channel {ch}, block {b}, head {h}: {what}");
                    }
                }
            }

            // Expand the ring's 3 live blocks (oldest at store block 2) to slots 2.. of a dense destination.
            let dst_seq = 200usize;
            let kd = g.buffer("kd", (c.n_kv_heads as usize * dst_seq * d * 4) as u64);
            let vd = g.buffer("vd", (c.n_kv_heads as usize * dst_seq * d * 4) as u64);
            let live = g.uniform("live", bytemuck::cast_slice(&[n_blocks as u32, dst_block, 0, 0]));
            let exp = ops::expand(&g, &store, &kd, &vd, dst_seq as u32, 2, 0, n_blocks as u32, &live);
            assert_eq!(exp.kernel, Kernel::MustafarExpand);
            g.run(&[&exp]);
            let (gk, gv) = (read_kv(&g, &kd, c.n_kv_heads as usize * dst_seq * d), read_kv(&g, &vd, c.n_kv_heads as usize * dst_seq * d));
            for (h, blocks) in want.iter().enumerate() {
                for (b, blk) in blocks.iter().enumerate() {
                    let (wk, wv) = reference::expand_block(blk, d);
                    let o = (h * dst_seq + 2 + b * T) * d;
                    assert_eq!(&gk[o..o + T * d], &wk[..], "expanded keys, block {b}, head {h}: {what}");
                    assert_eq!(&gv[o..o + T * d], &wv[..], "expanded values, block {b}, head {h}: {what}");
                    // The expansion is the pruned rows, row by row.
                    let src = (h * seq + first + b * T) * d;
                    for t in 0..T {
                        let row = &k[src + t * d..src + (t + 1) * d];
                        assert_eq!(&wk[t * d..(t + 1) * d], &reference::prune(row, s.keep_k as usize)[..]);
                        if c.sparsity == 0.0 {
                            // The row as the format stores it: f16 (what an f16 cache holds already).
                            assert_eq!(&wk[t * d..(t + 1) * d], &round_f16(row)[..], "sparsity 0 must keep the row");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_pool_too_small_is_flagged_and_not_written_past() {
    for g in contexts() {
        let mut rng = Rng::new(2);
        let c = &CASES[0];
        let s = shape_of(c, 2 * T as u32);
        let n = (c.n_kv_heads * 2 * T as u32 * c.head_dim) as usize;
        let ((_, kb), (_, vb)) = (source(&g, &mut rng, n), source(&g, &mut rng, n));
        // Room for about one block of one head.
        let store = Store::new(&g, &s, (s.units_bound(1) / c.n_kv_heads as u64) as u32);
        g.run(&[&ops::compress(&g, &store, &kb, &vb, 2 * T as u32, 0, 2, 0, store.units)]);
        let state = g.read_u32(&store.state, 2);
        assert_eq!(state[1], 1, "overflow flag on {}", label(&g));
        let offs = g.read_u32(&store.offs, (c.n_kv_heads * 2 * s.tiles()) as usize);
        let unplaced = offs.chunks(s.tiles() as usize).filter(|o| o.iter().all(|&x| x == u32::MAX)).count();
        assert!(unplaced >= 1, "a block that did not fit has no offsets on {}", label(&g));
        assert!(offs.iter().all(|&o| o == u32::MAX || o < store.units), "offsets inside the pool on {}", label(&g));
    }
}

#[test]
fn attention_over_tiles_equals_reference_attention_over_pruned_rows() {
    for g in contexts() {
        let mut rng = Rng::new(3);
        for c in CASES {
            // 3 live blocks of a 5-block ring from store block 3 (3, 4, 0):
            // partials 3 and 4 are empty.
            let (max_blocks, live) = (5u32, 3usize);
            let s = shape_of(c, max_blocks * T as u32);
            let (d, kvh, nh) = (c.head_dim as usize, c.n_kv_heads as usize, s.attn.n_heads as usize);
            let seq = live * T;
            let n = kvh * seq * d;
            let ((k, kb), (v, vb)) = (source(&g, &mut rng, n), source(&g, &mut rng, n));
            let store = Store::new(&g, &s, s.units_bound(max_blocks) as u32);
            g.run(&[&ops::compress(&g, &store, &kb, &vb, seq as u32, 0, live as u32, 3, store.units)]);

            let q = rng.vec(nh * d, -2.0, 2.0);
            let qb = upload_f32(&g, "q", &q);
            let part_o = g.buffer("part_o", (nh * max_blocks as usize * d * 4) as u64);
            let part_ml = g.buffer("part_ml", (nh * max_blocks as usize * 8) as u64);
            let out = poisoned(&g, "out", nh * d);
            let lse = g.buffer("lse", (nh * 4) as u64);
            let blocks = g.uniform("blocks", bytemuck::cast_slice(&[live as u32, 3, 0, 0]));
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: seq as u32 - 1, n_tokens: 1, kv_len: seq as u32, _pad: 0 }));
            let part = ops::attn_partial(&g, &store, &qb, &part_o, &part_ml, max_blocks, 0, &blocks, None);
            assert_eq!(part.kernel, Kernel::MustafarAttn);
            let merge = attn::attn_merge(&g, &s.attn, s.attn.n_heads, &part_o, &part_ml, max_blocks, &out, &lse, &step);
            g.run(&[&part, &merge]);

            // Reference: the pruned rows as a dense cache of `seq` slots.
            let mut kc = vec![0.0; kvh * seq * d];
            let mut vc = vec![0.0; kvh * seq * d];
            for (h, blocks) in ref_blocks(&s, &k, &v, seq, 0, live).iter().enumerate() {
                for (b, blk) in blocks.iter().enumerate() {
                    let (wk, wv) = reference::expand_block(blk, d);
                    let o = (h * seq + b * T) * d;
                    kc[o..o + T * d].copy_from_slice(&wk);
                    vc[o..o + T * d].copy_from_slice(&wv);
                }
            }
            let dense = AttnShape { max_seq: seq as u32, ..s.attn };
            let want = attention(&dense, &q, &kc, &vc, 1, seq);
            let what = format!("{kvh} KV heads x {} group, head_dim {d}, sparsity {} on {}", c.group, c.sparsity, label(&g));
            assert_close(&format!("out: {what}"), &read_guarded_f32(&g, &out, nh * d), &want.out, F32_REDUCTION);
            assert_close(&format!("lse: {what}"), &g.read_f32(&lse, nh), &want.lse, F32_REDUCTION);
            if c.sparsity == 0.0 {
                // Sparsity 0: full attention over the cache (as f16, what the format stores).
                let full = attention(&dense, &q, &round_f16(&k), &round_f16(&v), 1, seq);
                assert_close(&format!("sparsity 0 vs full: {what}"), &read_guarded_f32(&g, &out, nh * d), &full.out, F32_REDUCTION);
            }

            // With a block list (Quest's selection): KV head h attends live
            // blocks 2 and (h % 2).
            let lists: Vec<[u32; 2]> = (0..kvh as u32).map(|h| [2, h % 2]).collect();
            let list = g.upload("list", bytemuck::cast_slice(&lists));
            let two = g.uniform("blocks", bytemuck::cast_slice(&[live as u32, 3, 0, 0]));
            let part = ops::attn_partial(&g, &store, &qb, &part_o, &part_ml, max_blocks, 0, &two, Some((&list, 2)));
            g.run(&[&part, &merge]);
            let mut want = vec![0.0; nh * d];
            for h in 0..kvh {
                // The listed blocks' rows as a dense cache of 128 slots.
                let sel = [2usize, h % 2];
                let (mut kc2, mut vc2) = (vec![0.0; 2 * T * d], vec![0.0; 2 * T * d]);
                for (i, &b) in sel.iter().enumerate() {
                    let o = (h * seq + b * T) * d;
                    kc2[i * T * d..(i + 1) * T * d].copy_from_slice(&kc[o..o + T * d]);
                    vc2[i * T * d..(i + 1) * T * d].copy_from_slice(&vc[o..o + T * d]);
                }
                let one = AttnShape { n_heads: c.group, n_kv_heads: 1, max_seq: 2 * T as u32, ..s.attn };
                let qh = &q[h * c.group as usize * d..(h + 1) * c.group as usize * d];
                let r = attention(&one, qh, &kc2, &vc2, 1, 2 * T);
                want[h * c.group as usize * d..(h + 1) * c.group as usize * d].copy_from_slice(&r.out);
            }
            assert_close(&format!("listed blocks: {what}"), &read_guarded_f32(&g, &out, nh * d), &want, F32_REDUCTION);
        }
    }
}

#[test]
fn bad_mustafar_shapes_are_refused() {
    let attn = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, max_seq: 128, ..Default::default() };
    assert!(MustafarShape::new(attn, 0, 10).is_err());
    assert!(MustafarShape::new(attn, 65, 10).is_err());
    assert!(MustafarShape::new(AttnShape { head_dim: 256, ..attn }, 10, 10).is_err());
    assert_eq!(reference::keep_count(64, 0.7), 20);
    assert_eq!(reference::keep_count(128, 0.7), 39);
    assert_eq!(reference::keep_count(64, 0.0), 64);
}

#[test]
fn window_placement_and_live_bound_equal_the_reference() {
    // kv_place: windows of awkward lengths behind compressed prefixes, odd
    // slot counts, a window longer than the room left (clipped), w = 0.
    for g in contexts() {
        let mut rng = Rng::new(4);
        for &(heads, d, src_seq, dst_seq, c0, w) in &[
            (3usize, 64usize, 37usize, 200usize, 128usize, 29usize),
            (2, 96, 13, 64, 51, 13),
            (1, 32, 70, 70, 0, 70),
            (2, 128, 9, 40, 36, 9),
            (3, 64, 20, 100, 64, 0),
        ] {
            let shape =
                |seq: usize| AttnShape { n_heads: heads as u32, n_kv_heads: heads as u32, head_dim: d as u32, max_seq: seq as u32, ..Default::default() };
            let ((ks, kb), (vs, vb)) = (source(&g, &mut rng, heads * src_seq * d), source(&g, &mut rng, heads * src_seq * d));
            let ((mut kd, kdb), (mut vd, vdb)) = (source(&g, &mut rng, heads * dst_seq * d), source(&g, &mut rng, heads * dst_seq * d));
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: 0, n_tokens: 1, kv_len: (c0 + w) as u32, _pad: 0 }));
            let win = g.uniform("win", bytemuck::bytes_of(&Step { pos: 0, n_tokens: 1, kv_len: w as u32, _pad: 0 }));
            let place = ops::place(&g, &shape(src_seq), &shape(dst_seq), &kb, &vb, &kdb, &vdb, &step, &win);
            assert_eq!(place.kernel, Kernel::KvPlace);
            g.run(&[&place]);
            reference::place_window(&ks, src_seq, &mut kd, dst_seq, heads, d, c0, w);
            reference::place_window(&vs, src_seq, &mut vd, dst_seq, heads, d, c0, w);
            let what = format!("heads {heads}, d {d}, window {w} of {src_seq} at {c0} of {dst_seq} on {}", label(&g));
            assert_eq!(read_kv(&g, &kdb, heads * dst_seq * d), kd, "keys: {what}");
            assert_eq!(read_kv(&g, &vdb, heads * dst_seq * d), vd, "values: {what}");
        }

        // expand skips blocks at or past the live count.
        let c = &CASES[0];
        let s = shape_of(c, 3 * T as u32);
        let d = c.head_dim as usize;
        let n = c.n_kv_heads as usize * 3 * T * d;
        let ((k, kb), (v, vb)) = (source(&g, &mut rng, n), source(&g, &mut rng, n));
        let store = Store::new(&g, &s, s.units_bound(3) as u32);
        g.run(&[&ops::compress(&g, &store, &kb, &vb, 3 * T as u32, 0, 3, 0, store.units)]);
        let ((mut kd, kdb), (mut vd, vdb)) = (source(&g, &mut rng, n), source(&g, &mut rng, n));
        let live = g.uniform("live", bytemuck::cast_slice(&[2u32, 0, 0, 0]));
        g.run(&[&ops::expand(&g, &store, &kdb, &vdb, 3 * T as u32, 0, 0, 3, &live)]);
        for (h, blocks) in ref_blocks(&s, &k, &v, 3 * T, 0, 2).iter().enumerate() {
            for (b, blk) in blocks.iter().enumerate() {
                let (wk, wv) = reference::expand_block(blk, d);
                let o = (h * 3 * T + b * T) * d;
                kd[o..o + T * d].copy_from_slice(&wk);
                vd[o..o + T * d].copy_from_slice(&wv);
            }
        }
        let what = format!("expand with 2 live blocks of 3 on {}", label(&g));
        assert_eq!(read_kv(&g, &kdb, n), kd, "keys: {what} (block 2 must stay as it was)");
        assert_eq!(read_kv(&g, &vdb, n), vd, "values: {what}");
    }
}

#[test]
fn softcapped_attention_over_tiles_equals_the_reference() {
    // Gemma 2's softcap 50 against scores past it, 0.5 deep in tanh's
    // saturation, 30 on ordinary scores; 3 live blocks of a 4-block ring
    // from store block 1.
    for g in contexts() {
        let mut rng = Rng::new(5);
        for (c, softcap, q_range) in [(&CASES[0], 50.0f32, 100.0f32), (&CASES[2], 0.5, 30.0), (&CASES[1], 30.0, 2.0)] {
            let (max_blocks, live) = (4u32, 3usize);
            let plain = shape_of(c, max_blocks * T as u32);
            let s = MustafarShape::new(AttnShape { softcap, ..plain.attn }, plain.keep_k, plain.keep_v).unwrap();
            let (d, kvh, nh) = (c.head_dim as usize, c.n_kv_heads as usize, s.attn.n_heads as usize);
            let seq = live * T;
            let n = kvh * seq * d;
            let ((k, kb), (v, vb)) = (source(&g, &mut rng, n), source(&g, &mut rng, n));
            let store = Store::new(&g, &s, s.units_bound(max_blocks) as u32);
            g.run(&[&ops::compress(&g, &store, &kb, &vb, seq as u32, 0, live as u32, 1, store.units)]);

            let q = rng.vec(nh * d, -q_range, q_range);
            let qb = upload_f32(&g, "q", &q);
            let part_o = g.buffer("part_o", (nh * max_blocks as usize * d * 4) as u64);
            let part_ml = g.buffer("part_ml", (nh * max_blocks as usize * 8) as u64);
            let out = poisoned(&g, "out", nh * d);
            let lse = g.buffer("lse", (nh * 4) as u64);
            let blocks = g.uniform("blocks", bytemuck::cast_slice(&[live as u32, 1, 0, 0]));
            let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: seq as u32 - 1, n_tokens: 1, kv_len: seq as u32, _pad: 0 }));
            let part = ops::attn_partial(&g, &store, &qb, &part_o, &part_ml, max_blocks, 0, &blocks, None);
            let merge = attn::attn_merge(&g, &s.attn, s.attn.n_heads, &part_o, &part_ml, max_blocks, &out, &lse, &step);
            g.run(&[&part, &merge]);

            let (mut kc, mut vc) = (vec![0.0; kvh * seq * d], vec![0.0; kvh * seq * d]);
            for (h, blocks) in ref_blocks(&s, &k, &v, seq, 0, live).iter().enumerate() {
                for (b, blk) in blocks.iter().enumerate() {
                    let (wk, wv) = reference::expand_block(blk, d);
                    let o = (h * seq + b * T) * d;
                    kc[o..o + T * d].copy_from_slice(&wk);
                    vc[o..o + T * d].copy_from_slice(&wv);
                }
            }
            let want = attention(&AttnShape { max_seq: seq as u32, ..s.attn }, &q, &kc, &vc, 1, seq);
            let what = format!("{kvh} KV heads x {} group, head_dim {d}, softcap {softcap}, q±{q_range} on {}", c.group, label(&g));
            assert_close(&format!("out: {what}"), &read_guarded_f32(&g, &out, nh * d), &want.out, F32_REDUCTION);
            assert_close(&format!("lse: {what}"), &g.read_f32(&lse, nh), &want.lse, F32_REDUCTION);
        }
    }
}

#[test]
fn a_sliding_window_is_refused() {
    // The ring of compressed blocks does not know its tokens' positions.
    let attn = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, max_seq: 128, window: 32, ..Default::default() };
    let e = MustafarShape::new(attn, 10, 10).unwrap_err().to_string();
    assert!(e.contains("sliding window"), "{e}");
    assert!(MustafarShape::new(AttnShape { window: 0, softcap: 50.0, ..attn }, 10, 10).is_ok());
}
