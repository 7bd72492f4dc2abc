//! `wgkv bench`: llama-bench style speed table per KV policy (`pp512`,
//! `tg128`, `tg128@d2048`), with JSON records, an SVG plot, and `--compare`
//! to put earlier JSON files (other GPUs) side by side without running.

use super::load;
use crate::kv::KvSpec;
use crate::measure::record::{self, Record};
use crate::measure::runner::{self, Plan};
use crate::measure::{parse_list, parse_specs, plot, table};
use crate::model::Model;
use crate::weights::Weights;
use crate::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Prompt tokens of the prefill test `ppP` (timed, one forward from an empty cache); 0 skips it.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens of the decode tests `tgN` (timed one by one); 0 skips them.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Cache depths for the decode tests: `tgN` at 0, `tgN@dD` (D tokens prefilled first, untimed) otherwise.
    #[arg(long, default_value = "0,2048", value_name = "D,D...")]
    pub depth: String,
    /// KV policies to compare, separated by `;` (e.g. 'full;quest:budget=128').
    #[arg(long, default_value = "full", value_name = "SPEC;SPEC...")]
    pub kv: String,
    /// Timed repetitions per test (after one untimed warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    pub reps: usize,
    /// KV cache size in tokens; default: what the tests need, max(p, max depth + n + 1).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Seed of the pseudo-random token ids.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the rows as a JSON array to FILE (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    /// Write an SVG plot: decode t/s and KV bytes against depth, one line per policy.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<String>,
    /// Also time every kernel class of one prefill (the first min(p, 512) tokens) and of one decode step at each depth, per policy.
    #[arg(long)]
    pub profile: bool,
    /// Merge earlier `--json` files into one table (and plot) instead of running.
    #[arg(long, num_args = 1.., value_name = "FILE.json")]
    pub compare: Vec<String>,
}

pub fn run(global: &super::Global, a: BenchArgs) -> Result<()> {
    if !a.compare.is_empty() {
        return emit(&merge(&a.compare)?, a.json.as_deref(), a.plot.as_deref());
    }
    // Rows measured before a failure (e.g. a policy this build cannot load)
    // are still reported; the error follows and the exit status says so.
    let mut records = Vec::new();
    let outcome = measure(global, &a, &mut records);
    if !records.is_empty() {
        emit(&records, a.json.as_deref(), a.plot.as_deref())?;
    }
    outcome
}

/// Reads every `--compare` file, rows in file order.
fn merge(files: &[String]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(record::read_file(f)?);
    }
    if out.is_empty() {
        return Err(Error::msg("--compare: the files hold no records"));
    }
    Ok(out)
}

/// Table on stdout (stderr when the JSON goes to stdout), JSON, plot.
fn emit(records: &[Record], json: Option<&str>, plot_file: Option<&str>) -> Result<()> {
    let text = table::bench_table(records);
    match json {
        Some("-") => {
            eprint!("{text}");
            println!("{}", record::to_json(records));
        }
        Some(path) => {
            print!("{text}");
            std::fs::write(path, record::to_json(records) + "\n").map_err(|e| Error::io(path, e))?;
        }
        None => print!("{text}"),
    }
    if let Some(path) = plot_file {
        let svg = plot::bench_figure(records).to_svg();
        std::fs::write(path, svg).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// The model file, its weights and the name records carry.
pub fn open_weights(global: &super::Global) -> Result<(PathBuf, Weights, String)> {
    let path = crate::fetch::resolve_model(global.model.as_deref())?;
    let weights = Weights::open(&path)?;
    let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    Ok((path, weights, name))
}

/// Runs every test under every policy, appending one record per test.
fn measure(global: &super::Global, a: &BenchArgs, records: &mut Vec<Record>) -> Result<()> {
    let plan = Plan { n_prompt: a.n_prompt, n_gen: a.n_gen, depths: parse_list("--depth", &a.depth)?, reps: a.reps, seed: a.seed };
    plan.validate()?;
    let specs: Vec<KvSpec> = parse_specs(&a.kv)?;
    let (_, weights, model_name) = open_weights(global)?;
    let needed = plan.ctx_needed();
    let ctx = a.ctx.unwrap_or(needed);
    if ctx < needed {
        return Err(Error::msg(format!("--ctx {ctx} is below the {needed} tokens the tests need (max(p, max depth + n + 1))")));
    }
    if ctx > weights.cfg.max_seq {
        return Err(Error::msg(format!("the tests need a {ctx}-token context but the model's is {}: lower -p, -n or --depth", weights.cfg.max_seq)));
    }
    let gpu = load::gpu(global)?;
    let cases = plan.cases();
    let bar = crate::progress::bar((plan.runs() * specs.len()) as u64, "bench {bar:30} {pos}/{len} runs, {elapsed} | {msg}");
    let mut profiles = String::new();
    for spec in specs {
        bar.set_message(format!("kv {spec}: loading"));
        let mut model = Model::load(gpu.clone(), &weights, ctx, spec.clone()).inspect_err(|_| bar.finish_and_clear())?;
        for case in &cases {
            let label = format!("kv {spec}: {}", case.name());
            bar.set_message(label.clone());
            let mut on_run = |r: Option<f64>| {
                bar.inc(1);
                if let Some(r) = r {
                    bar.set_message(format!("{label}: {r:.2} t/s"));
                }
            };
            let m = runner::run_case(&mut model, case, plan.reps, plan.seed, &mut on_run).inspect_err(|_| bar.finish_and_clear())?;
            records.push(runner::to_record(&model, &model_name, &m));
        }
        if a.profile {
            bar.set_message(format!("kv {spec}: profile"));
            profiles.push_str(&profile(&mut model, &plan, &spec)?);
        }
        // Free this policy's cache and activations before the next loads.
        drop(model);
    }
    bar.finish_and_clear();
    if !profiles.is_empty() {
        // Beside the table: on stderr when stdout carries the JSON.
        if a.json.as_deref() == Some("-") { eprint!("{profiles}") } else { print!("{profiles}") }
    }
    Ok(())
}

/// Kernel times of one prefill of min(p, MAX_CHUNK) tokens and of one decode
/// step at each depth (the cache filled with the same seeded ids first).
fn profile(model: &mut Model, plan: &Plan, spec: &KvSpec) -> Result<String> {
    let vocab = model.cfg.vocab_size;
    let adapter = model.gpu.describe();
    let mut out = String::new();
    let p = plan.n_prompt.min(crate::model::MAX_CHUNK);
    if p > 0 {
        model.reset();
        let prof = model.profile(&runner::token_ids(plan.seed, p, vocab))?;
        out.push_str(&format!("\n{}", crate::profile::table(&prof, &format!("profile: prefill {p} tokens, kv {spec}, {adapter}"))));
    }
    if plan.n_gen > 0 {
        for &d in &plan.depths {
            model.reset();
            let ids = runner::token_ids(plan.seed, d + 1, vocab);
            if d > 0 {
                model.forward(&ids[..d], crate::model::Readout::Argmax)?;
            }
            let prof = model.profile(&ids[d..])?;
            out.push_str(&format!("\n{}", crate::profile::table(&prof, &format!("profile: one decode step at depth {d}, kv {spec}, {adapter}"))));
        }
    }
    model.reset();
    Ok(out)
}
