//! `wgkv eval ppl`, `ppl-plot`, `compare` and `passkey`: numbers
//! that say how close the engine is to the exact model, and what a KV
//! policy costs in quality.

use super::load::{self, RunArgs, load};
use crate::kv::KvSpec;
use crate::measure::record::Stamp;
use crate::measure::{budget, frontier};
use crate::model::{Model, Output, Readout};
use crate::progress;
use crate::{Error, Result};
use serde_json::json;
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum EvalCommand {
    /// Perplexity: each chunk's first half prefilled, second half teacher-forced through the decode path and scored.
    Ppl {
        /// Text file to score.
        #[arg(long)]
        file: String,
        /// Tokens per chunk (and the KV cache size).
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Score only the first N chunks.
        #[arg(long)]
        chunks: Option<usize>,
        /// KV cache policy, or several separated by `;` (scored in one pass
        /// over the text, each in its own cache).
        #[arg(long, default_value = "full")]
        kv: String,
        /// Also run a `full`-cache model on the same tokens (once for every
        /// policy) and report mean KL(full || policy) over the scored
        /// positions and top-1 agreement.
        #[arg(long)]
        compare_full: bool,
        #[arg(long)]
        json: bool,
    },
    /// Plot KL to full, perplexity and top-1 agreement against the KV
    /// budget, one line per policy, from `eval ppl --compare-full --json`
    /// output files (several runs' files together).
    PplPlot {
        /// Files of `eval ppl --json` lines.
        #[arg(required = true, value_name = "FILE.jsonl")]
        files: Vec<String>,
        /// The SVG to write.
        #[arg(long, value_name = "FILE.svg")]
        out: String,
        /// Leave out a policy family (the spec without its budget, e.g.
        /// `vatp:alloc=dynamic`) whose values would flatten the others.
        #[arg(long, value_name = "SPEC")]
        skip: Vec<String>,
    },
    /// Quality against KV bytes from `eval ppl --compare-full --json` lines:
    /// KL to full and perplexity against each policy's resident KV bytes as a
    /// share of full's, one line per eviction part.
    PplFrontier {
        /// Files of `eval ppl --json` lines.
        #[arg(required = true, value_name = "FILE.jsonl")]
        files: Vec<String>,
        /// The SVG to write.
        #[arg(long, value_name = "FILE.svg")]
        out: String,
    },
    /// Teacher-force a reference file's tokens and compare logits with its top-20.
    Compare {
        #[arg(long)]
        reference: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Pass-key retrieval accuracy per KV policy and depth (Quest's protocol).
    Passkey(super::passkey::PasskeyArgs),
    /// A chat of thousands of turns: memory and decode speed at checkpoints.
    Soak(super::soak::SoakArgs),
}

pub fn run(global: &super::Global, cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Ppl { file, ctx, chunks, kv, compare_full, json } => ppl(global, &file, ctx, chunks, json, compare_full, RunArgs { kv, ctx: Some(ctx) }),
        EvalCommand::PplPlot { files, out, skip } => ppl_plot(&files, &out, &skip),
        EvalCommand::PplFrontier { files, out } => ppl_frontier(&files, &out),
        EvalCommand::Compare { reference, json, run } => compare(global, &reference, json, run),
        EvalCommand::Passkey(a) => super::passkey::run(global, a),
        EvalCommand::Soak(a) => super::soak::run(global, a),
    }
}

/// Every file's `eval ppl --json` records, as `parse` reads them (file
/// name, text, the points so far).
fn read_records<P>(files: &[String], parse: impl Fn(&str, &str, &mut Vec<P>) -> Result<()>) -> Result<Vec<P>> {
    let mut points = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        parse(f, &text, &mut points)?;
    }
    Ok(points)
}

/// `eval ppl-plot`: read every file's records, write the figure.
fn ppl_plot(files: &[String], out: &str, skip: &[String]) -> Result<()> {
    let mut points = read_records(files, budget::parse_lines)?;
    for s in skip {
        let family = KvSpec::parse(s)?.to_string();
        if !points.iter().any(|p| p.family == family) {
            return Err(Error::msg(format!("ppl-plot --skip {s}: no such policy in the files")));
        }
        points.retain(|p| p.family != family);
    }
    if points.is_empty() {
        return Err(Error::msg("ppl-plot: no record with a budget= policy in the files"));
    }
    std::fs::write(out, budget::budget_figure(&points).to_svg()).map_err(|e| Error::io(out, e))?;
    let families = points.iter().map(|p| p.family.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    println!("{out}: {} points of {families} policies", points.len());
    Ok(())
}

/// `eval ppl-frontier`: read every file's records, write the figure and
/// print each point.
fn ppl_frontier(files: &[String], out: &str) -> Result<()> {
    let points = read_records(files, frontier::parse_lines)?;
    if points.is_empty() {
        return Err(Error::msg("ppl-frontier: no record in the files"));
    }
    std::fs::write(out, frontier::frontier_figure(&points).to_svg()).map_err(|e| Error::io(out, e))?;
    for p in &points {
        println!("{} {}: {:.1}% of full's KV bytes, KL {:.4}, ppl {:.3}", p.model, p.kv, p.bytes_pct, p.kl, p.ppl);
    }
    println!("{out}: {} points", points.len());
    Ok(())
}

/// log(sum(exp(logits))) in f64.
fn log_sum_exp(logits: &[f32]) -> f64 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    m + logits.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln()
}

fn logits(o: Output) -> Vec<f32> {
    match o {
        Output::Logits(v) => v,
        _ => unreachable!("logits readout"),
    }
}

/// KL(p || q) in nats for the softmax distributions of two logit vectors, in f64.
fn kl_logits(p: &[f32], q: &[f32]) -> f64 {
    let (lp, lq) = (log_sum_exp(p), log_sum_exp(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let la = a as f64 - lp;
            la.exp() * (la - (b as f64 - lq))
        })
        .sum::<f64>()
        .max(0.0)
}

/// Index of the largest logit (the first on ties).
fn argmax_of(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (j, &x)| if x > b.1 { (j, x) } else { b }).0
}

/// A model per policy of `run.kv` (`;`-separated), and with `compare_full`
/// a `full`-cache model beside them on the same GPU and weights; the
/// tokenizer and the model's name.
fn load_models(global: &super::Global, run: &RunArgs, compare_full: bool) -> Result<(Vec<Model>, Option<Model>, crate::tokenizer::Tokenizer, String)> {
    let specs: Vec<KvSpec> = run.kv.split(';').map(KvSpec::parse).collect::<Result<_>>()?;
    if specs.len() == 1 && !compare_full {
        let l = load(global, run)?;
        return Ok((vec![l.model], None, l.tokenizer, l.model_name));
    }
    let (_, weights, name) = super::bench::open_weights(global)?;
    let tok = load::tokenizer(&weights)?;
    let ctx = run.ctx.unwrap_or(weights.cfg.max_seq.min(8192));
    if ctx > weights.cfg.max_seq {
        return Err(Error::msg(format!("--ctx {ctx} exceeds the model's context length {}", weights.cfg.max_seq)));
    }
    let gpu = load::gpu(global)?;
    let models = specs.into_iter().map(|s| Model::load(gpu.clone(), &weights, ctx, s)).collect::<Result<Vec<_>>>()?;
    let full = if compare_full { Some(Model::load(gpu, &weights, ctx, KvSpec::full())?) } else { None };
    Ok((models, full, tok, name))
}

/// The text's tokens in chunks of `n_ctx`, as llama.cpp's perplexity cuts
/// them: a model that adds BOS gets it before the text and in place of each
/// chunk's first token; a partial last chunk is dropped.
fn ppl_chunks(ids: &[u32], bos: Option<u32>, n_ctx: usize) -> Vec<Vec<u32>> {
    let all: Vec<u32> = bos.into_iter().chain(ids.iter().copied()).collect();
    all.chunks_exact(n_ctx)
        .map(|c| {
            let mut c = c.to_vec();
            if let Some(b) = bos {
                c[0] = b;
            }
            c
        })
        .collect()
}

/// One policy's sums over the scored tokens.
#[derive(Default)]
struct Sums {
    nll: f64,
    kl: f64,
    agree: usize,
    /// KV bytes resident after each scored step, summed.
    resident: f64,
}

fn ppl(global: &super::Global, file: &str, n_ctx: usize, max_chunks: Option<usize>, as_json: bool, compare_full: bool, run: RunArgs) -> Result<()> {
    if n_ctx < 4 {
        return Err(Error::msg("--ctx must be at least 4"));
    }
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let (mut models, mut full, tokenizer, model_name) = load_models(global, &run, compare_full)?;
    let bos = tokenizer.bos().filter(|_| tokenizer.add_bos());
    let ids = tokenizer.encode(&text, false)?;
    let mut chunks = ppl_chunks(&ids, bos, n_ctx);
    chunks.truncate(max_chunks.unwrap_or(usize::MAX));
    let n_chunks = chunks.len();
    if n_chunks == 0 {
        return Err(Error::msg(format!("{file}: {} tokens, fewer than one chunk of {n_ctx}", ids.len())));
    }
    let first = n_ctx / 2;
    let mut sums: Vec<Sums> = models.iter().map(|_| Sums::default()).collect();
    let (mut count, mut nll_full, mut resident_full) = (0usize, 0f64, 0f64);
    let t0 = Instant::now();
    let per_chunk = (n_ctx - 1 - first) as u64;
    let bar = progress::bar(n_chunks as u64 * per_chunk, "ppl {bar:30} {pos}/{len} tokens, {elapsed}, eta {eta} | {msg}");
    for (c, tokens) in chunks.iter().enumerate() {
        for m in models.iter_mut().chain(full.as_mut()) {
            m.reset();
            m.forward(&tokens[..first], Readout::Argmax)?;
        }
        for j in first..n_ctx - 1 {
            // The full cache's logits once per token, against every policy's.
            let lf = match full.as_mut() {
                Some(f) => {
                    let lf = logits(f.forward(&[tokens[j]], Readout::Logits)?);
                    nll_full += log_sum_exp(&lf) - lf[tokens[j + 1] as usize] as f64;
                    resident_full += f.kv.resident() as f64;
                    Some(lf)
                }
                None => None,
            };
            for (m, s) in models.iter_mut().zip(sums.iter_mut()) {
                let lg = logits(m.forward(&[tokens[j]], Readout::Logits)?);
                s.nll += log_sum_exp(&lg) - lg[tokens[j + 1] as usize] as f64;
                s.resident += m.kv.resident() as f64;
                if let Some(lf) = &lf {
                    s.kl += kl_logits(lf, &lg);
                    s.agree += (argmax_of(lf) == argmax_of(&lg)) as usize;
                }
            }
            count += 1;
            bar.inc(1);
        }
        bar.set_message(format!("chunk {}/{n_chunks}, ppl {:.4}", c + 1, (sums[0].nll / count as f64).exp()));
    }
    bar.finish_and_clear();
    let n = count as f64;
    for (model, s) in models.iter().zip(&sums) {
        let ppl = (s.nll / n).exp();
        if as_json {
            let mut o = json!({"file": file, "ctx": n_ctx, "chunks": n_chunks, "scored": count, "ppl": ppl, "kv": model.kv.spec.to_string(), "seconds": t0.elapsed().as_secs_f64(), "kv_resident_mean": s.resident / n});
            Stamp::new(Some(&model.gpu), &model_name).merge_into(&mut o);
            if full.is_some() {
                o["ppl_full"] = json!((nll_full / n).exp());
                o["kl_mean"] = json!(s.kl / n);
                o["top1_agree"] = json!(s.agree);
                o["top1_rate"] = json!(s.agree as f64 / n);
                o["kv_resident_mean_full"] = json!(resident_full / n);
            }
            println!("{o}");
        } else {
            println!("ppl {ppl:.4} over {count} tokens ({n_chunks} chunks of {n_ctx}, kv {}, model {model_name}, {})", model.kv.spec, model.gpu.describe());
            if full.is_some() {
                println!(
                    "vs full cache: mean KL(full || {}) {:.6} nats, top-1 agreement {}/{count} ({:.2}%), full-cache ppl {:.4}, KV resident {:.1}% of full's (mean over the scored steps)",
                    model.kv.spec,
                    s.kl / n,
                    s.agree,
                    100.0 * s.agree as f64 / n,
                    (nll_full / n).exp(),
                    100.0 * s.resident / resident_full.max(1.0)
                );
            }
        }
    }
    Ok(())
}

fn compare(global: &super::Global, reference: &str, as_json: bool, run: RunArgs) -> Result<()> {
    let text = std::fs::read_to_string(reference).map_err(|e| Error::io(reference, e))?;
    let r: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(reference, e.to_string()))?;
    let ids = |k: &str| -> Result<Vec<u32>> {
        r[k].as_array()
            .ok_or_else(|| Error::format(reference, format!("missing array '{k}'")))?
            .iter()
            .map(|v| v.as_u64().map(|x| x as u32).ok_or_else(|| Error::format(reference, format!("'{k}' holds a non-integer"))))
            .collect()
    };
    let prompt = ids("prompt_ids")?;
    let generated = ids("generated_ids")?;
    let steps = r["steps"].as_array().ok_or_else(|| Error::format(reference, "missing array 'steps'"))?;
    let mut l = load(global, &run)?;
    let (mut agree, mut margin_n, mut margin_agree, mut n) = (0, 0, 0, 0);
    let (mut sum_diff, mut max_diff, mut n_diff) = (0f64, 0f64, 0usize);
    for (i, step) in steps.iter().enumerate() {
        let input: Vec<u32> = if i == 0 { prompt.clone() } else { vec![generated[i - 1]] };
        let lg = logits(l.model.forward(&input, Readout::Logits)?);
        let top = step["top"].as_array().ok_or_else(|| Error::format(reference, format!("step {i} has no 'top'")))?;
        let entry = |j: usize| -> Result<(u32, f64)> {
            let e = &top[j];
            Ok((e[0].as_u64().unwrap_or(u64::MAX) as u32, e[2].as_f64().ok_or_else(|| Error::format(reference, "bad top entry"))?))
        };
        if top.len() < 2 {
            return Err(Error::format(reference, format!("step {i}: fewer than 2 top entries")));
        }
        let ours = lg.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (j, &v)| if v > b.1 { (j, v) } else { b }).0 as u32;
        let (id0, l0) = entry(0)?;
        let (_, l1) = entry(1)?;
        n += 1;
        agree += (ours == id0) as usize;
        if l0 - l1 > 0.25 {
            margin_n += 1;
            margin_agree += (ours == id0) as usize;
        }
        for j in 0..top.len() {
            let (id, want) = entry(j)?;
            let got = *lg.get(id as usize).ok_or_else(|| Error::format(reference, format!("token id {id} outside the vocabulary")))? as f64;
            let d = (got - want).abs();
            sum_diff += d;
            max_diff = max_diff.max(d);
            n_diff += 1;
        }
    }
    let mean = sum_diff / n_diff.max(1) as f64;
    let o = json!({
        "reference": reference, "steps": n, "top1_agree": agree, "top1_rate": agree as f64 / n.max(1) as f64,
        "margin_steps": margin_n, "margin_agree": margin_agree,
        "mean_abs_diff_top20": mean, "max_abs_diff_top20": max_diff,
        "kv": l.model.kv.spec.to_string(),
    });
    if as_json {
        let mut o = o;
        Stamp::new(Some(&l.model.gpu), &l.model_name).merge_into(&mut o);
        println!("{o}");
    } else {
        println!(
            "{reference}: top-1 agreement {agree}/{n}, {margin_agree}/{margin_n} where the reference margin > 0.25; top-20 logit |diff| mean {mean:.4} max {max_diff:.4} ({}, {})",
            l.model_name,
            l.model.gpu.describe()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ppl_chunks;

    #[test]
    fn chunks_follow_llama_cpp() {
        let ids: Vec<u32> = (10..21).collect();
        assert_eq!(ppl_chunks(&ids, None, 4), [vec![10, 11, 12, 13], vec![14, 15, 16, 17]]);
        // BOS before the text shifts it by one, and replaces each chunk's first token.
        assert_eq!(ppl_chunks(&ids, Some(2), 4), [vec![2, 10, 11, 12], vec![2, 14, 15, 16], vec![2, 18, 19, 20]]);
        assert!(ppl_chunks(&ids[..3], Some(2), 5).is_empty());
    }
}
