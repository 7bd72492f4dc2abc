//! `wgkv eval passkey`: pass-key retrieval accuracy per KV policy and depth
//! (Quest's protocol; the prompt is built by `measure::passkey`).
//!
//! Per trial: the context (task, filler, key line) is prefilled in one
//! `forward` call (shared by the policies that differ only in the cut
//! they make after it or in their Quest selection: `Model::forward_shared`),
//! the question tokens go through the decode path one at a time (so a
//! selection policy is active while the model reads the question;
//! `--question prefill` feeds them in the context's call instead), then up
//! to `--answer-tokens` greedy tokens are decoded; the first integer of the
//! answer is compared with the key. Every policy is asked the same keys at
//! the same positions.

use super::bench::open_weights;
use super::load;
use crate::kv::{KvCache, KvSpec};
use crate::measure::passkey::{self, Frame, Prompt};
use crate::measure::plot::{self, Figure, Panel, Point, Scale, Series};
use crate::measure::record::{self, Device};
use crate::measure::table::{Align, Table};
use crate::measure::{parse_list, parse_specs};
use crate::model::{Model, Output, Readout};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

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
    /// KV policies to compare, separated by `;` (default `full`); with
    /// `--compare`, the policies of the files to show (default all).
    #[arg(long, value_name = "SPEC;SPEC...")]
    pub kv: Option<String>,
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
    /// Merge earlier `--json` outputs (same context, depths, format and
    /// question feed) into one table, JSON and plot instead of running.
    #[arg(long, num_args = 1.., value_name = "FILE.json")]
    pub compare: Vec<String>,
}

/// One trial's outcome, as the JSON's `detail` entries hold it.
#[derive(Clone, Serialize, Deserialize)]
struct Trial {
    /// The depth's index in the run's depth list (the JSON groups trials by depth instead).
    #[serde(skip)]
    depth_index: usize,
    trial: usize,
    key: u32,
    answer: String,
    /// The answer's first integer.
    parsed: Option<u64>,
    correct: bool,
    /// Context + question tokens, and where the key line sits (share of the filler).
    prompt_tokens: usize,
    key_depth: f64,
}

/// One policy at one depth in the JSON.
#[derive(Serialize, Deserialize)]
struct Row {
    kv: String,
    depth: usize,
    trials: usize,
    correct: usize,
    accuracy: f64,
    detail: Vec<Trial>,
}

/// What a table, JSON object or plot says besides the trials.
#[derive(Clone, Serialize, Deserialize)]
struct Meta {
    git_commit: String,
    model: String,
    #[serde(flatten)]
    device: Device,
    ctx: usize,
    prompt_tokens: usize,
    trials: usize,
    seed: u64,
    format: String,
    /// Absent from runs before `--question` existed, which all decoded the question.
    #[serde(default = "question_decode")]
    question: String,
    answer_tokens: usize,
    /// Under `--compare`: each file and the commit its run was built from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<Source>,
}

fn question_decode() -> String {
    "decode".into()
}

#[derive(Clone, Serialize, Deserialize)]
struct Source {
    file: String,
    git_commit: String,
}

/// The `--json` output, which `--compare` reads back.
#[derive(Serialize, Deserialize)]
struct Report {
    schema: u32,
    wgkv_version: String,
    #[serde(flatten)]
    meta: Meta,
    results: Vec<Row>,
}

pub fn run(global: &super::Global, a: PasskeyArgs) -> Result<()> {
    if !a.compare.is_empty() {
        let (mut results, depths, meta) = read_runs(&a.compare)?;
        if let Some(kv) = &a.kv {
            results = pick(results, &parse_specs(kv)?)?;
        }
        return emit(&results, &depths, &meta, a.json, a.plot.as_deref());
    }
    let depths = parse_list("--depths", &a.depths)?;
    if let Some(d) = depths.iter().find(|&&d| d > 100) {
        return Err(Error::msg(format!("--depths: {d} is not a percentage (0..=100)")));
    }
    if a.trials == 0 || a.answer_tokens == 0 {
        return Err(Error::msg("--trials and --answer-tokens must be at least 1"));
    }
    let specs = parse_specs(a.kv.as_deref().unwrap_or("full"))?;
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
    let bar = crate::progress::bar((prompts.len() * specs.len()) as u64, "passkey {bar:30} {pos}/{len} trials, {elapsed} | {msg}");
    let mut results: Vec<(String, Vec<Trial>)> = specs.iter().map(|s| (s.to_string(), Vec::new())).collect();
    // Policies that differ only in their cut after the prompt (budget,
    // allocation) or in their Quest selection share its prefill; a group's
    // models are loaded together.
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
                results[i].1.push(Trial {
                    depth_index: *di,
                    trial: *t,
                    key: p.key,
                    parsed: passkey::first_integer(&answer),
                    answer,
                    correct,
                    prompt_tokens: p.len(),
                    key_depth: p.depth(),
                });
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let meta = Meta {
        model: model_name,
        device: Device::of(&gpu),
        git_commit: record::git_commit().to_string(),
        ctx: a.ctx,
        prompt_tokens: prompts.iter().map(|(_, _, p)| p.len()).max().unwrap_or(0),
        trials: a.trials,
        seed: a.seed,
        format: format!("{:?}", a.format).to_lowercase(),
        question: format!("{:?}", a.question).to_lowercase(),
        answer_tokens: a.answer_tokens,
        sources: Vec::new(),
    };
    emit(&results, &depths, &meta, a.json, a.plot.as_deref())
}

/// The plot, then the JSON object or the table.
fn emit(results: &[(String, Vec<Trial>)], depths: &[usize], meta: &Meta, json: bool, plot: Option<&str>) -> Result<()> {
    if let Some(path) = plot {
        let fig = figure(results, depths, meta);
        std::fs::write(path, fig.to_svg()).map_err(|e| Error::io(path, e))?;
    }
    if json {
        let rows = results
            .iter()
            .flat_map(|(kv, trials)| {
                depths.iter().enumerate().map(move |(di, &depth)| {
                    let detail: Vec<Trial> = trials.iter().filter(|t| t.depth_index == di).cloned().collect();
                    let correct = detail.iter().filter(|t| t.correct).count();
                    let accuracy = correct as f64 / detail.len().max(1) as f64;
                    Row { kv: kv.clone(), depth, trials: detail.len(), correct, accuracy, detail }
                })
            })
            .collect();
        let report = Report { schema: record::SCHEMA, wgkv_version: env!("CARGO_PKG_VERSION").into(), meta: meta.clone(), results: rows };
        // Serialising plain data (strings, integers, finite floats) cannot fail.
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "pass key: ctx {}, prompts up to {} tokens, {} trial(s) per depth, format {}, {}, {} ({})",
            meta.ctx, meta.prompt_tokens, meta.trials, meta.format, meta.model, meta.device.adapter, meta.device.backend
        );
        print!("{}", accuracy_table(results, depths));
    }
    Ok(())
}

/// `--compare`: the trials of every file's policies, in file order, with
/// their depths and the first file's description. The files must agree on
/// context, depths, format and question feed; a policy may appear once.
/// Each policy's trials, in file order.
type Runs = Vec<(String, Vec<Trial>)>;

fn read_runs(files: &[String]) -> Result<(Runs, Vec<usize>, Meta)> {
    let mut results: Runs = Vec::new();
    let mut first: Option<(Meta, Vec<usize>)> = None;
    let mut sources = Vec::new();
    for f in files {
        let (meta, depths, runs) = read_run(f)?;
        sources.push(Source { file: f.clone(), git_commit: meta.git_commit.clone() });
        match &mut first {
            None => first = Some((meta, depths)),
            Some((m0, d0)) => {
                let differ = |what: &str, a: String, b: String| Error::msg(format!("--compare: {f} has {what} {a}, {} has {b}", files[0]));
                if meta.ctx != m0.ctx {
                    return Err(differ("ctx", meta.ctx.to_string(), m0.ctx.to_string()));
                }
                if depths != *d0 {
                    return Err(differ("depths", format!("{depths:?}"), format!("{d0:?}")));
                }
                if (&meta.format, &meta.question) != (&m0.format, &m0.question) {
                    return Err(differ("format/question", format!("{}/{}", meta.format, meta.question), format!("{}/{}", m0.format, m0.question)));
                }
                m0.trials = m0.trials.max(meta.trials);
                m0.prompt_tokens = m0.prompt_tokens.max(meta.prompt_tokens);
            }
        }
        for (kv, trials) in runs {
            if results.iter().any(|(k, _)| *k == kv) {
                return Err(Error::msg(format!("--compare: policy {kv} appears again in {f}")));
            }
            results.push((kv, trials));
        }
    }
    let (mut meta, depths) = first.ok_or_else(|| Error::msg("--compare: no files"))?;
    meta.sources = sources;
    Ok((results, depths, meta))
}

/// `--compare --kv`: the merged runs of these policies, in the order named.
fn pick(mut results: Vec<(String, Vec<Trial>)>, specs: &[KvSpec]) -> Result<Vec<(String, Vec<Trial>)>> {
    let mut out = Vec::new();
    for spec in specs {
        let name = spec.to_string();
        let i = results.iter().position(|(kv, _)| *kv == name).ok_or_else(|| Error::msg(format!("--compare: no file holds policy {name}")))?;
        out.push(results.remove(i));
    }
    Ok(out)
}

/// One `eval passkey --json` output: its description, depths (in the order
/// of its rows) and trials per policy. The rows' counts and each answer's
/// parsed integer are not taken from the file: they are derived again.
fn read_run(f: &str) -> Result<(Meta, Vec<usize>, Runs)> {
    let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
    let bad = |what: String| Error::format(f, format!("--compare: not an `eval passkey --json` output ({what})"));
    let report: Report = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if report.schema > record::SCHEMA {
        return Err(bad(format!("schema {}; this wgkv reads up to {} (upgrade wgkv)", report.schema, record::SCHEMA)));
    }
    let mut depths: Vec<usize> = Vec::new();
    let mut runs: Vec<(String, Vec<Trial>)> = Vec::new();
    for row in report.results {
        if row.depth > 100 {
            return Err(bad(format!("depth {} is not a percentage", row.depth)));
        }
        let di = depths.iter().position(|&d| d == row.depth).unwrap_or_else(|| {
            depths.push(row.depth);
            depths.len() - 1
        });
        let at = match runs.iter().position(|(k, _)| *k == row.kv) {
            Some(i) => i,
            None => {
                runs.push((row.kv, Vec::new()));
                runs.len() - 1
            }
        };
        runs[at].1.extend(row.detail.into_iter().map(|t| Trial { depth_index: di, parsed: passkey::first_integer(&t.answer), ..t }));
    }
    Ok((report.meta, depths, runs))
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
        if passkey::number_complete(&tok.decode(&ids)) || i + 1 == max_tokens {
            break;
        }
        next = argmax(model.forward(&[next], Readout::Argmax)?)?;
    }
    Ok(tok.decode(&ids))
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

/// Policy families drawn in every panel of a figure split by family.
const REFERENCES: [&str; 2] = ["full", "streaming"];

/// Accuracy against depth, one line per policy; more than 8 policies are
/// split into a panel per family, each with `full` and `streaming` too.
fn figure(results: &[(String, Vec<Trial>)], depths: &[usize], meta: &Meta) -> Figure {
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
    let commits = match meta.sources.len() {
        0 => meta.git_commit.clone(),
        _ => {
            let mut c: Vec<&str> = Vec::new();
            for s in &meta.sources {
                if !c.contains(&s.git_commit.as_str()) {
                    c.push(&s.git_commit);
                }
            }
            c.join(", ")
        }
    };
    Figure {
        title: format!("Pass-key retrieval: {} on {}", meta.model, meta.device.key()),
        subtitle: format!(
            "context {} tokens, {} trial(s) per depth, question by {}; wgkv {} ({commits})",
            meta.ctx,
            meta.trials,
            meta.question,
            env!("CARGO_PKG_VERSION")
        ),
        panels: plot::by_family(
            Panel {
                title: "Accuracy".into(),
                x_label: "depth of the key in the filler (%)".into(),
                y_label: "pass keys retrieved (%)".into(),
                x_scale: Scale::Percent,
                y_scale: Scale::Percent,
                series,
            },
            8,
            &REFERENCES,
        ),
    }
}
