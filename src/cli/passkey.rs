//! `wgkv eval passkey`: pass-key retrieval accuracy per KV policy and depth
//! (Quest's protocol; the prompt is built by `measure::passkey`).
//!
//! Per trial: the context (task, filler, key line) is prefilled in one
//! `forward` call (shared by the policies that differ only in the cut
//! they make after it: `Model::forward_shared`), the question tokens go through the decode path one at a
//! time (so a selection policy is active while the model reads the
//! question; `--question prefill` feeds them in the context's call
//! instead), then up to `--answer-tokens` greedy tokens are decoded; the
//! first integer of the answer is compared with the key. Every policy is
//! asked the same keys at the same positions.

use super::bench::open_weights;
use super::load;
use crate::measure::passkey::{self, Frame, Prompt};
use crate::measure::plot::{Figure, Panel, Point, Scale, Series};
use crate::measure::record::{self, Device};
use crate::measure::table::{Align, Table};
use crate::measure::{parse_list, parse_specs};
use crate::kv::{KvCache, KvSpec};
use crate::model::{Model, Output, Readout};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde_json::json;

/// How the prompt is wrapped.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain text (BOS first when the model wants one).
    Raw,
    /// One user turn in the model's chat template; the answer lead opens the assistant's turn.
    Chat,
}

/// How the question after the context reaches the model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// One token at a time through the decode path (Quest's protocol: a
    /// selection policy is active while the model reads the question).
    Decode,
    /// In the same prefill call as the context, as a user's prompt arrives:
    /// eviction that scores a prompt's last tokens (SnapKV's observation
    /// window) then sees the question.
    Prefill,
}

#[derive(clap::Args, Debug)]
pub struct PasskeyArgs {
    /// KV cache size; the prompt fills it up to the answer's room.
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Depths of the key line in the filler, in percent.
    #[arg(long, default_value = "0,25,50,75,100", value_name = "PCT,PCT...")]
    pub depths: String,
    /// Trials (different keys) per depth.
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Seed of the keys.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// KV policies to compare, separated by `;`.
    #[arg(long, default_value = "full", value_name = "SPEC;SPEC...")]
    pub kv: String,
    /// Prompt format (raw works with SmolLM2-135M-Instruct; see README: Measuring).
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// How the question is fed after the context.
    #[arg(long, value_enum, default_value_t = Question::Decode)]
    pub question: Question,
    /// Greedy answer tokens at most (decoding stops early once a number is complete).
    #[arg(long, default_value_t = 8)]
    pub answer_tokens: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG plot: accuracy against depth, one line per policy.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<String>,
}

/// One trial's outcome.
struct Trial {
    depth_index: usize,
    trial: usize,
    key: u32,
    /// Context + question tokens, and where the key line sits (share of the filler).
    prompt_tokens: usize,
    key_depth: f64,
    answer: String,
    correct: bool,
}

pub fn run(global: &super::Global, a: PasskeyArgs) -> Result<()> {
    let depths = parse_list("--depths", &a.depths)?;
    if let Some(d) = depths.iter().find(|&&d| d > 100) {
        return Err(Error::msg(format!("--depths: {d} is not a percentage (0..=100)")));
    }
    if a.trials == 0 || a.answer_tokens == 0 {
        return Err(Error::msg("--trials and --answer-tokens must be at least 1"));
    }
    let specs = parse_specs(&a.kv)?;
    let (_, weights, model_name) = open_weights(global)?;
    if a.ctx > weights.cfg.max_seq {
        return Err(Error::msg(format!("--ctx {} exceeds the model's context length {}", a.ctx, weights.cfg.max_seq)));
    }
    let tok = load::tokenizer(&weights)?;
    let frame = frame(&tok, a.format)?;
    let budget = a.ctx.saturating_sub(a.answer_tokens);
    let mut prompts: Vec<(usize, usize, Prompt)> = Vec::new();
    for (di, &d) in depths.iter().enumerate() {
        for t in 0..a.trials {
            let key = passkey::key_for(a.seed, t, di);
            let p = passkey::build(&mut |s| tok.encode(s, true), &frame, budget, d as f64, key)?;
            prompts.push((di, t, p));
        }
    }
    let gpu = load::gpu(global)?;
    let eog = tok.eog_ids();
    let bar = progress((prompts.len() * specs.len()) as u64);
    let mut results: Vec<(String, Vec<Trial>)> = specs.iter().map(|s| (s.to_string(), Vec::new())).collect();
    // Policies that differ only in their cut after the prompt (budget,
    // allocation) share its prefill; a group's models are loaded together.
    for group in prefill_groups(&specs, a.ctx)? {
        let names: Vec<String> = group.iter().map(|&i| specs[i].to_string()).collect();
        bar.set_message(format!("kv {}: loading", names.join("; ")));
        let mut models = group.iter().map(|&i| Model::load(gpu.clone(), &weights, a.ctx, specs[i].clone())).collect::<Result<Vec<_>>>()?;
        for (di, t, p) in &prompts {
            bar.set_message(format!("kv {}: depth {}%, trial {}", names.join("; "), depths[*di], t + 1));
            let next = prefill(&mut models, p, a.question)?;
            for (&i, model) in group.iter().zip(models.iter_mut()) {
                let answer = answer(model, &tok, p, a.question, next, a.answer_tokens, &eog)?;
                let correct = passkey::is_correct(&answer, p.key);
                results[i].1.push(Trial { depth_index: *di, trial: *t, key: p.key, prompt_tokens: p.len(), key_depth: p.depth(), answer, correct });
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let device = Device::of(&gpu);
    let prompt_tokens = prompts.iter().map(|(_, _, p)| p.len()).max().unwrap_or(0);
    if let Some(path) = &a.plot {
        let fig = figure(&results, &depths, &model_name, &device, a.ctx);
        std::fs::write(path, fig.to_svg()).map_err(|e| Error::io(path, e))?;
    }
    if a.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .flat_map(|(kv, trials)| {
                depths.iter().enumerate().map(move |(di, &d)| {
                    let cell: Vec<&Trial> = trials.iter().filter(|t| t.depth_index == di).collect();
                    let correct = cell.iter().filter(|t| t.correct).count();
                    let detail: Vec<serde_json::Value> = cell
                        .iter()
                        .map(|t| {
                            json!({
                                "trial": t.trial, "key": t.key, "answer": t.answer,
                                "parsed": passkey::first_integer(&t.answer), "correct": t.correct,
                                "prompt_tokens": t.prompt_tokens, "key_depth": t.key_depth,
                            })
                        })
                        .collect();
                    json!({
                        "kv": kv, "depth": d, "trials": cell.len(), "correct": correct,
                        "accuracy": correct as f64 / cell.len().max(1) as f64, "detail": detail,
                    })
                })
            })
            .collect();
        let o = json!({
            "schema": record::SCHEMA, "wgkv_version": env!("CARGO_PKG_VERSION"), "git_commit": record::git_commit(),
            "model": model_name, "adapter": device.adapter, "backend": device.backend, "device_type": device.device_type,
            "f16": device.f16, "ctx": a.ctx, "prompt_tokens": prompt_tokens, "trials": a.trials, "seed": a.seed,
            "format": format!("{:?}", a.format).to_lowercase(), "question": format!("{:?}", a.question).to_lowercase(), "answer_tokens": a.answer_tokens, "results": rows,
        });
        println!("{o}");
    } else {
        println!(
            "pass key: ctx {}, prompts up to {prompt_tokens} tokens, {} trial(s) per depth, format {}, {model_name}, {} ({})",
            a.ctx, a.trials, format!("{:?}", a.format).to_lowercase(), device.adapter, device.backend
        );
        print!("{}", accuracy_table(&results, &depths));
    }
    Ok(())
}

/// BOS / chat framing of the prompt.
fn frame(tok: &Tokenizer, format: Format) -> Result<Frame> {
    match format {
        Format::Raw => Ok(Frame { head: tok.encode_prompt("")?, tail: String::new() }),
        Format::Chat => {
            let src = tok.chat_template().ok_or_else(|| Error::msg("this model has no chat template; use --format raw"))?;
            let t = ChatTemplate::new(src, tok.bos_text(), tok.eos_text())?;
            let (head, tail) = passkey::chat_parts(&t)?;
            Ok(Frame { head: tok.encode_prompt(&head)?, tail })
        }
    }
}

fn argmax(o: Output) -> Result<u32> {
    match o {
        Output::Argmax(id) => Ok(id),
        _ => Err(Error::msg("internal: expected an argmax readout")),
    }
}

/// Spec indices grouped by prefill key (`KvCache::prefill_key_of`), in
/// order of first appearance; a spec without one is alone.
fn prefill_groups(specs: &[KvSpec], ctx: usize) -> Result<Vec<Vec<usize>>> {
    let mut groups: Vec<(Option<_>, Vec<usize>)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let key = KvCache::prefill_key_of(spec, ctx)?;
        match groups.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, g)) => g.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

/// Reset every model and prefill the context (with the question under
/// `--question prefill`) once, shared by the group; the first answer token.
fn prefill(models: &mut [Model], p: &Prompt, question: Question) -> Result<u32> {
    for m in models.iter_mut() {
        m.reset();
    }
    let (lead, forks) = models.split_first_mut().expect("a group has a model");
    let joined;
    let tokens: &[u32] = match question {
        Question::Prefill => {
            joined = [&p.context[..], &p.question[..]].concat();
            &joined
        }
        Question::Decode => &p.context,
    };
    argmax(lead.forward_shared(tokens, Readout::Argmax, forks)?)
}

/// After `prefill` (whose first answer token is `next`): feed the question
/// one token at a time under `--question decode`, then the greedy answer text.
fn answer(model: &mut Model, tok: &Tokenizer, p: &Prompt, question: Question, mut next: u32, max_tokens: usize, eog: &[u32]) -> Result<String> {
    if question == Question::Decode {
        for &q in &p.question {
            next = argmax(model.forward(&[q], Readout::Argmax)?)?;
        }
    }
    let mut ids = Vec::new();
    for i in 0..max_tokens {
        if eog.contains(&next) {
            break;
        }
        ids.push(next);
        if number_complete(&tok.decode(&ids)) || i + 1 == max_tokens {
            break;
        }
        next = argmax(model.forward(&[next], Readout::Argmax)?)?;
    }
    Ok(tok.decode(&ids))
}

/// Whether the answer already holds a whole number (digits followed by something else).
fn number_complete(text: &str) -> bool {
    match text.find(|c: char| c.is_ascii_digit()) {
        Some(start) => text[start..].contains(|c: char| !c.is_ascii_digit()),
        None => false,
    }
}

/// Accuracy per policy (rows) and depth (columns), plus the row's overall accuracy.
fn accuracy_table(results: &[(String, Vec<Trial>)], depths: &[usize]) -> String {
    let heads: Vec<String> = depths.iter().map(|d| format!("{d}%")).collect();
    let mut header: Vec<(&str, Align)> = vec![("kv", Align::Left)];
    header.extend(heads.iter().map(|h| (h.as_str(), Align::Right)));
    header.push(("all", Align::Right));
    let mut t = Table::new(&header);
    let cell = |trials: &[&Trial]| {
        let ok = trials.iter().filter(|t| t.correct).count();
        format!("{:.0}% ({ok}/{})", 100.0 * ok as f64 / trials.len().max(1) as f64, trials.len())
    };
    for (kv, trials) in results {
        let mut row = vec![kv.clone()];
        for di in 0..depths.len() {
            row.push(cell(&trials.iter().filter(|t| t.depth_index == di).collect::<Vec<_>>()));
        }
        row.push(cell(&trials.iter().collect::<Vec<_>>()));
        t.row(row);
    }
    t.render()
}

/// Accuracy against depth, one line per policy.
fn figure(results: &[(String, Vec<Trial>)], depths: &[usize], model: &str, device: &Device, ctx: usize) -> Figure {
    let series = results
        .iter()
        .map(|(kv, trials)| Series {
            name: kv.clone(),
            points: depths
                .iter()
                .enumerate()
                .map(|(di, &d)| {
                    let cell: Vec<&Trial> = trials.iter().filter(|t| t.depth_index == di).collect();
                    let ok = cell.iter().filter(|t| t.correct).count();
                    Point { x: d as f64, y: 100.0 * ok as f64 / cell.len().max(1) as f64, err: 0.0 }
                })
                .collect(),
        })
        .collect();
    let trials = results.first().map_or(0, |(_, t)| t.len() / depths.len().max(1));
    Figure {
        title: format!("Pass-key retrieval: {model} on {}", device.key()),
        subtitle: format!("context {ctx} tokens, {trials} trial(s) per depth; wgkv {} ({})", env!("CARGO_PKG_VERSION"), record::git_commit()),
        panels: vec![Panel {
            title: "Accuracy".into(),
            x_label: "depth of the key in the filler (%)".into(),
            y_label: "pass keys retrieved (%)".into(),
            x_scale: Scale::Percent,
            y_scale: Scale::Percent,
            series,
        }],
    }
}

fn progress(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("passkey {bar:30} {pos}/{len} trials, {elapsed} | {msg}") {
        bar.set_style(style);
    }
    bar
}
