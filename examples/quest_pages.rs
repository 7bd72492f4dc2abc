//! Which pages Quest's score ranks high, against where attention goes: a
//! diagnostic for `quest:width=W` (docs/policies.md, "Quest's page score").
//!
//! `cargo run --release --example quest_pages -- MODEL [CTX] [DEPTH%] [SEED] [BUDGET]`
//!
//! Builds `eval passkey`'s prompt (raw format, question prefilled, trial 0
//! at one depth of 0/25/50/75/100), prefills it on the GPU with a `full`
//! cache, hands that cache to the CPU reference forward and decodes the
//! answer there densely. At every answer step, for every sparse layer (from
//! Quest's default `dense_layers`) and KV head (Quest's shared selection):
//! - the attention the group's heads put on each full page (the softmax over
//!   every cached slot, averaged over the heads);
//! - the share of it on the pages Quest would select at `BUDGET` tokens,
//!   scoring with the box width weighted 1 (the paper's bound), 0.5, 0.25
//!   and 0 (the box centre), and with the pages' attention itself (the best
//!   any page score can do);
//! - for heads that put over 20% of their attention on the key line's
//!   pages: the best rank of those pages under each score.

use wgkv::cli::load::tokenizer;
use wgkv::gpu::{Gpu, GpuOptions};
use wgkv::kv::KvSpec;
use wgkv::measure::passkey::{self, Frame};
use wgkv::model::{Model, Output, Readout};
use wgkv::reference::forward::{RefModel, RefQuest};
use wgkv::reference::quest::channel_score;
use wgkv::weights::Weights;

const WIDTHS: [f64; 4] = [1.0, 0.5, 0.25, 0.0];
const PAGE: usize = 16;
const DENSE_LAYERS: usize = 2;

fn main() -> wgkv::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: quest_pages MODEL [CTX] [DEPTH%] [SEED] [BUDGET]");
        std::process::exit(2);
    };
    let arg = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a whole number"));
    let (ctx, depth, seed, budget) = (arg(1, 4096), arg(2, 50), arg(3, 1) as u64, arg(4, 256));
    let depth_index = [0, 25, 50, 75, 100].iter().position(|&d| d == depth).expect("depth is one of 0, 25, 50, 75, 100");
    let w = Weights::open(std::path::Path::new(path))?;
    let tok = tokenizer(&w)?;
    let frame = Frame { head: tok.encode_prompt("")?, tail: String::new() };
    let key = passkey::key_for(seed, 0, depth_index);
    let p = passkey::build(&mut |s| tok.encode(s, true), &frame, ctx - 8, depth as f64, key)?;
    let prompt = [&p.context[..], &p.question[..]].concat();
    let key_pages = p.key_start / PAGE..=(p.key_start + p.key_len - 1) / PAGE;
    println!(
        "key {key} at depth {depth}% ({} prompt tokens; key line at slots {}..{}, pages {key_pages:?}); budget {budget}",
        prompt.len(),
        p.key_start,
        p.key_start + p.key_len
    );

    // Dense prefill on the GPU; its cache goes to the reference.
    let gpu = Gpu::new(&GpuOptions::default())?;
    let mut m = Model::load(gpu.clone(), &w, ctx, KvSpec::parse("full")?)?;
    let Output::Argmax(mut next) = m.forward(&prompt, Readout::Argmax)? else { unreachable!("an argmax readout") };
    let (st, data) = m.kv.save(&gpu)?;
    drop(m);
    let mut r = RefModel::new(&w)?;
    let (k, v) = split_rows(&data, st.n_layers, st.kv_dim, st.head_dim, st.elem_bytes, st.len)?;
    r.set_cache(k.clone(), v.clone());
    let first = next;

    let c = r.cfg.clone();
    let (hd, nkv, group) = (c.head_dim, c.n_kv_heads, c.n_heads / c.n_kv_heads);
    let keep = budget / PAGE - 1; // full pages selected (the current one always is)
    let mut answer = Vec::new();
    for step in 0..8 {
        let logits = r.forward(next);
        let n = r.cached();
        let full_pages = n.div_ceil(PAGE) - 1;
        // Per score: sum over (layer, KV head) of the attention share on the
        // selected pages plus the current page; per retrieval head, ranks.
        let mut recall = [0f64; WIDTHS.len() + 1];
        let mut heads = 0usize;
        let mut lines = Vec::new();
        for l in DENSE_LAYERS..c.n_layers {
            let (q, keys) = (&r.queries[l], r.keys(l));
            let kv_dim = nkv * hd;
            for kvh in 0..nkv {
                let key_of = |t: usize| &keys[t * kv_dim + kvh * hd..][..hd];
                // Attention per page, averaged over the group's heads.
                let mut mass = vec![0f64; full_pages + 1];
                for h in kvh * group..(kvh + 1) * group {
                    let qh = &q[h * hd..][..hd];
                    let s: Vec<f64> = (0..n).map(|t| qh.iter().zip(key_of(t)).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / (hd as f64).sqrt()).collect();
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for (t, x) in e.iter().enumerate() {
                        mass[(t / PAGE).min(full_pages)] += x / sum / group as f64;
                    }
                }
                // Page scores: each width, then the attention itself.
                // Each full page's key box, once; then its score at each width.
                let boxes: Vec<(Vec<f32>, Vec<f32>)> = (0..full_pages)
                    .map(|pg| {
                        let (mut hi, mut lo) = (vec![f32::NEG_INFINITY; hd], vec![f32::INFINITY; hd]);
                        for t in pg * PAGE..(pg + 1) * PAGE {
                            for (i, &x) in key_of(t).iter().enumerate() {
                                hi[i] = hi[i].max(x);
                                lo[i] = lo[i].min(x);
                            }
                        }
                        (hi, lo)
                    })
                    .collect();
                let mut scores: Vec<Vec<f64>> = WIDTHS
                    .iter()
                    .map(|&wd| {
                        boxes
                            .iter()
                            .map(|(hi, lo)| {
                                (kvh * group..(kvh + 1) * group)
                                    .map(|h| (0..hd).map(|i| channel_score(q[h * hd + i] as f64, hi[i] as f64, lo[i] as f64, wd)).sum::<f64>())
                                    .sum()
                            })
                            .collect()
                    })
                    .collect();
                scores.push(mass[..full_pages].to_vec());
                let rank = |sc: &[f64], pg: usize| sc.iter().enumerate().filter(|&(j, &x)| x > sc[pg] || (x == sc[pg] && j < pg)).count();
                for (i, sc) in scores.iter().enumerate() {
                    let chosen: f64 = (0..full_pages).filter(|&pg| rank(sc, pg) < keep).map(|pg| mass[pg]).sum();
                    recall[i] += chosen + mass[full_pages];
                }
                heads += 1;
                let on_key: f64 = key_pages.clone().map(|pg| mass[pg]).sum();
                if on_key > 0.2 {
                    let ranks: Vec<String> = scores.iter().map(|sc| key_pages.clone().map(|pg| rank(sc, pg)).min().unwrap_or(0).to_string()).collect();
                    lines.push(format!(
                        "  layer {l:2} KV head {kvh}: {:4.1}% on the key's pages; their best rank by width 1/0.5/0.25/0, by attention: {}",
                        100.0 * on_key,
                        ranks.join(" / ")
                    ));
                }
            }
        }
        let recall: Vec<String> = recall.iter().map(|x| format!("{:.1}%", 100.0 * x / heads as f64)).collect();
        println!(
            "step {step} (token {next}, {n} slots, {full_pages} full pages, {keep} selected): attention on the selected pages, width 1/0.5/0.25/0, by attention: {}",
            recall.join(" / ")
        );
        lines.iter().for_each(|l| println!("{l}"));
        next = argmax(&logits);
        answer.push(next);
        let text = tok.decode(&answer);
        if passkey::number_complete(&text) {
            break;
        }
    }
    println!("dense answer: {:?}", tok.decode(&answer));

    // The answer decoded under Quest's selection with each score, from the
    // same prefilled cache.
    for b in [budget, 2 * budget] {
        for (name, width, oracle) in
            [("width 1", 1.0, false), ("width 0.5", 0.5, false), ("width 0.25", 0.25, false), ("width 0", 0.0, false), ("attention", 1.0, true)]
        {
            r.set_cache(k.clone(), v.clone());
            r.quest =
                Some(RefQuest { page: PAGE, budget_pages: b / PAGE, unit: group, dense_layers: DENSE_LAYERS, width, oracle, active: true, window_from: None });
            let (mut next, mut ids) = (first, Vec::new());
            for _ in 0..8 {
                ids.push(next);
                let text = tok.decode(&ids);
                if passkey::number_complete(&text) {
                    break;
                }
                next = argmax(&r.forward(next));
            }
            println!("budget {b}, pages by {name}: {:?}", tok.decode(&ids));
        }
    }
    Ok(())
}

fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap_or(0)
}

/// Per layer, `[n][kv_dim]` rows.
type Rows = Vec<Vec<f32>>;

/// The saved cache's rows (per layer: each KV head's K rows, then V rows)
/// as the reference holds them, `[n][kv_dim]` per layer.
fn split_rows(data: &[u8], layers: usize, kv_dim: usize, hd: usize, elem: usize, n: usize) -> wgkv::Result<(Rows, Rows)> {
    let value = |b: &[u8]| if elem == 2 { half::f16::from_le_bytes([b[0], b[1]]).to_f32() } else { f32::from_le_bytes([b[0], b[1], b[2], b[3]]) };
    let heads = kv_dim / hd;
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    let mut at = 0;
    for _ in 0..layers {
        for out in [&mut ks, &mut vs] {
            let mut rows = vec![0f32; n * kv_dim];
            for h in 0..heads {
                for t in 0..n {
                    for i in 0..hd {
                        rows[t * kv_dim + h * hd + i] = value(&data[at..at + elem]);
                        at += elem;
                    }
                }
            }
            out.push(rows);
        }
    }
    if at != data.len() {
        return Err(wgkv::Error::msg("the saved cache holds more than its counts say"));
    }
    Ok((ks, vs))
}
