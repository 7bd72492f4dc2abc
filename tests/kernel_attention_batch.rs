//! `attn_decode_batch` (+ `attn_merge`): a batched decode step's attention
//! over several sequences' own dense caches in one dispatch, against the CPU
//! reference per sequence, on every context (f16 and f32 KV storage):
//! caches of different sizes and lengths (one slot, partial lanes and
//! chunks, past one chunk, full), GQA groups 1 and 3, head_dim 32 to 96,
//! a window and a softcap, three sequences in four binding pairs; each
//! cache gains exactly its token's row.

mod common;
use common::*;
use wgkv::gpu::Gpu;
use wgkv::ops::Step;
use wgkv::ops::attention::AttnShape;
use wgkv::ops::attention_batch::{self as ab, BatchScratch, SeqEntry};
use wgkv::reference::attention as reference;

/// As tests/kernel_attention.rs: convex combinations of f16-rounded rows,
/// f32 sums over up to a few thousand slots.
const ATTN: Tol = F32_REDUCTION;

/// One sequence: its cache (poisoned, guard words after), the CPU mirror of
/// the values the GPU holds, and its step's length after the append.
struct Seq {
    shape: AttnShape,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    kc: Vec<f32>,
    vc: Vec<f32>,
    kv_len: usize,
}

impl Seq {
    /// A cache of `max_seq` slots whose first `kv_len - 1` hold random rows.
    fn new(g: &Gpu, rng: &mut Rng, s: &AttnShape, max_seq: u32, kv_len: usize) -> Seq {
        let shape = AttnShape { max_seq, ..*s };
        let (hd, ms) = (s.head_dim as usize, max_seq as usize);
        let words = (shape.cache_bytes(g.caps.f16) / 4) as usize;
        let (k, v) = (poisoned(g, "k_cache", words), poisoned(g, "v_cache", words));
        let n = s.n_kv_heads as usize * ms * hd;
        let (mut kc, mut vc) = (vec![0.0; n], vec![0.0; n]);
        let elem = if g.caps.f16 { 2 } else { 4 };
        for h in (0..s.n_kv_heads as usize).filter(|_| kv_len > 1) {
            let off = h * ms * hd;
            for (buf, mirror) in [(&k, &mut kc), (&v, &mut vc)] {
                let vals = kv_round(g, &rng.vec((kv_len - 1) * hd, -1.0, 1.0));
                g.write(buf, (off * elem) as u64, &kv_bytes(g, &vals));
                mirror[off..off + vals.len()].copy_from_slice(&vals);
            }
        }
        Seq { shape, k, v, kc, vc, kv_len }
    }
}

/// `lens[i]` = (cache slots, length after the step) of sequence `i`, in
/// dispatches of as many sequences as the adapter binds.
fn check(g: &Gpu, rng: &mut Rng, s: &AttnShape, lens: &[(u32, usize)], q_range: f32) {
    for part in lens.chunks(ab::max_sequences(g)) {
        check_dispatch(g, rng, s, part, q_range);
    }
}

fn check_dispatch(g: &Gpu, rng: &mut Rng, s: &AttnShape, lens: &[(u32, usize)], q_range: f32) {
    let b = lens.len();
    let (nh, hd) = (s.n_heads as usize, s.head_dim as usize);
    let (qrow, kvrow) = (nh * hd, s.n_kv_heads as usize * hd);
    let mut seqs: Vec<Seq> = lens.iter().map(|&(ms, n)| Seq::new(g, rng, s, ms, n)).collect();
    let q = rng.vec(b * qrow, -q_range, q_range);
    let k_new = rng.vec(b * kvrow, -1.0, 1.0);
    let v_new = rng.vec(b * kvrow, -1.0, 1.0);
    let mut entries: Vec<SeqEntry> = seqs.iter().map(|q| SeqEntry { kv_len: q.kv_len as u32, max_seq: q.shape.max_seq, _p: [0; 2] }).collect();
    entries.resize(ab::bindings(b) as usize, SeqEntry::default()); // the uniform's array has one per binding pair
    let table = g.uniform("seqs", bytemuck::cast_slice(&entries));
    let step = g.uniform("step", bytemuck::bytes_of(&Step { pos: 0, n_tokens: b as u32, kv_len: b as u32, _pad: 0 }));
    let n_split = ab::n_split(s, lens.iter().map(|&(ms, _)| ms).max().unwrap());
    let (o, ml) = BatchScratch::bytes(s, (b * nh) as u32, n_split);
    let (part_o, part_ml) = (g.buffer("part_o", o), g.buffer("part_ml", ml));
    let out = poisoned(g, "out", b * qrow);
    let lse = poisoned(g, "lse", b * nh);
    let scratch = BatchScratch { part_o: &part_o, part_ml: &part_ml, lse: &lse, n_split };
    let caches: Vec<_> = seqs.iter().map(|q| (&q.k, &q.v)).collect();
    let (qb, kb, vb) = (upload_f32(g, "q", &q), upload_f32(g, "k", &k_new), upload_f32(g, "v", &v_new));
    let [partial, merge] = ab::attn_decode_batch(g, s, &qb, &kb, &vb, &caches, &table, &scratch, &out, &step);
    g.run(&[&partial, &merge]);

    let (got, got_lse) = (read_guarded_f32(g, &out, b * qrow), read_guarded_f32(g, &lse, b * nh));
    for (i, sq) in seqs.iter_mut().enumerate() {
        let (kn, vn) = (&k_new[i * kvrow..][..kvrow], &v_new[i * kvrow..][..kvrow]);
        reference::kv_append(&sq.shape, &mut sq.kc, &mut sq.vc, &kv_round(g, kn), &kv_round(g, vn), sq.kv_len - 1);
        let want = reference::attention(&sq.shape, &q[i * qrow..][..qrow], &sq.kc, &sq.vc, 1, sq.kv_len);
        let what =
            format!("batch of {b}, sequence {i} ({} slots, kv_len {}), heads {nh}/{} dim {hd} on {}", sq.shape.max_seq, sq.kv_len, s.n_kv_heads, label(g));
        assert_close(&format!("{what}: out"), &got[i * qrow..][..qrow], &want.out, ATTN);
        assert_close(&format!("{what}: lse"), &got_lse[i * nh..][..nh], &want.lse, ATTN);
        // The cache holds its old rows and the new one, nothing else.
        let n = sq.kc.len();
        for (buf, mirror, name) in [(&sq.k, &sq.kc, "k"), (&sq.v, &sq.vc, "v")] {
            let got = read_kv(g, buf, n);
            let ms = sq.shape.max_seq as usize;
            for h in 0..s.n_kv_heads as usize {
                let rows = h * ms * hd..(h * ms + sq.kv_len) * hd;
                assert_eq!(&got[rows.clone()], &mirror[rows], "{what}: {name} cache head {h}");
            }
            let words = (sq.shape.cache_bytes(g.caps.f16) / 4) as usize;
            let all = g.read_u32(buf, words + GUARD_WORDS);
            assert!(all[words..].iter().all(|&w| w == GUARD), "{what}: {name} guard words overwritten");
            let elem = if g.caps.f16 { 2 } else { 4 };
            let bytes: &[u8] = bytemuck::cast_slice(&all[..words]);
            for h in 0..s.n_kv_heads as usize {
                let past = (h * ms + sq.kv_len) * hd * elem..((h + 1) * ms) * hd * elem;
                let poison: Vec<u8> = (0..past.len()).map(|i| GUARD.to_le_bytes()[i % 4]).collect();
                assert_eq!(&bytes[past.clone()], &poison[..], "{what}: {name} cache head {h} written past its new row");
            }
        }
    }
}

#[test]
fn batched_decode_matches_reference_per_sequence() {
    for g in contexts() {
        let mut rng = Rng::new(50);
        // Each shape and power of two of sequences is a pipeline lavapipe
        // takes seconds to compile: the real model's, one KV head per query
        // head, head_dim 96 (24 vec4, not a power of two) and 32.
        for &(nh, nkv, hd) in &[(9, 3, 64), (4, 4, 64), (6, 2, 96), (6, 2, 32)] {
            let s = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, max_seq: 1, ..Default::default() };
            check(&g, &mut rng, &s, &[(40, 1), (300, 257), (40, 40)], 2.0);
        }
        // Eight sequences: one slot, partial lanes, past a chunk, a full cache, long.
        let s = AttnShape { n_heads: 9, n_kv_heads: 3, head_dim: 64, max_seq: 1, ..Default::default() };
        check(&g, &mut rng, &s, &[(64, 1), (64, 2), (300, 65), (1100, 1000), (300, 300), (2100, 2049), (64, 33), (600, 513)], 2.0);
        check(&g, &mut rng, &s, &[(200, 130), (200, 3), (200, 200)], 12.0);
        // The attention core's options, as Gemma's global and local layers have them.
        let w = AttnShape { softcap: 50.0, window: 64, ..s };
        check(&g, &mut rng, &w, &[(300, 200), (300, 10), (300, 65), (70, 64)], 6.0);
    }
}
