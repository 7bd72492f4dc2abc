//! `wgkv generate -p TEXT`: one prompt in (or `-p -` / `-f FILE`), streamed
//! text out (or one JSON object), with why it stopped.

use super::load::{RunArgs, TemplateArgs, load_with};
use super::sampling::{MaxTokens, SamplingArgs, parse_max_tokens};
use crate::generate::{PrefillBar, Stop, StopText, generate};
use crate::measure::record::Stamp;
use crate::sampler::Sampler;
use crate::template::Message;
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use serde_json::json;
use std::io::{Read, Write};

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The prompt; `-` reads it from standard input.
    #[arg(short = 'p', long, required_unless_present = "file", conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from FILE.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<String>,
    /// Tokens to generate at most; -1: until the model stops or the context is full.
    #[arg(short = 'n', long, default_value = "128", allow_negative_numbers = true, value_parser = parse_max_tokens)]
    pub n: MaxTokens,
    /// Wrap the prompt in the model's chat template as one user turn.
    #[arg(long)]
    pub chat: bool,
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The prompt text from `-p TEXT`, `-p -` (standard input) or `-f FILE`.
fn prompt_text(a: &GenerateArgs) -> Result<String> {
    match (&a.prompt, &a.file) {
        (Some(p), _) if p == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Error::msg(format!("standard input: {e} (the prompt must be UTF-8 text)")))?;
            Ok(s)
        }
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| Error::io(f, e)),
        (None, None) => Err(Error::msg("give a prompt with -p TEXT, -p - (standard input) or -f FILE")),
    }
}

pub fn run(global: &super::Global, a: GenerateArgs) -> Result<()> {
    let (cfg, random_seed) = a.sampling.config();
    cfg.validate()?;
    let prompt = prompt_text(&a)?;
    if a.template.chat_template.is_some() && !a.chat {
        return Err(Error::msg("--chat-template applies with --chat (add it, or drop --chat-template)"));
    }
    let mut l = load_with(global, &a.run, &a.template)?;
    let text = if a.chat {
        let t = l.template.as_ref().ok_or_else(|| Error::msg("this model has no chat template; drop --chat, or give one with --chat-template FILE"))?;
        t.render(&[Message { role: "user".into(), content: prompt }], true)?
    } else {
        prompt
    };
    let ids = l.tokenizer.encode_prompt(&text)?;
    if ids.is_empty() {
        return Err(Error::msg("the prompt is empty"));
    }
    let seed = cfg.seed;
    let mut sampler = Sampler::new(cfg);
    let eog = l.tokenizer.eog_ids();
    if a.sampling.ignore_eos {
        sampler.ban(&eog);
    }
    let mut dec = StreamDecoder::new();
    let mut cut = StopText::new(&a.sampling.stop);
    let mut stdout = std::io::stdout().lock();
    let streaming = !a.json;
    let tok = &l.tokenizer;
    let mut bar = PrefillBar::new(&mut l.model, ids.len());
    let g = generate(bar.model(), &mut sampler, &ids, a.n.0, &eog, |id| {
        let shown = cut.push(&dec.push(tok, id));
        // A closed stdout (e.g. `| head`) ends generation quietly.
        if streaming && stdout.write_all(shown.as_bytes()).and_then(|_| stdout.flush()).is_err() {
            return Some(Stop::Interrupted);
        }
        cut.matched.then_some(Stop::StopString)
    })?;
    drop(bar);
    let rest = cut.finish(&dec.finish());
    let (stats, kv) = (&g.stats, &l.model.kv);
    if a.json {
        let mut o = json!({
            "text": cut.text,
            "tokens": g.tokens,
            "stop": g.stop.name(),
            "seed": seed,
            "prompt_tokens": stats.prompt_tokens,
            "prefill_tok_s": stats.prefill_tok_s(),
            "decode_tok_s": stats.decode_tok_s(),
            "kv": kv.spec.to_string(),
            "kv_bytes": kv.report().resident,
        });
        Stamp::new(Some(&l.model.gpu), &l.model_name).merge_into(&mut o);
        println!("{o}");
    } else {
        let _ = writeln!(stdout, "{rest}");
        let seed = if random_seed && a.sampling.temp > 0.0 { format!(", seed {seed}") } else { String::new() };
        eprintln!(
            "[{} prompt tokens at {:.1} t/s, {} generated at {:.1} t/s, KV {:.1} MiB{seed}; stopped: {}]",
            stats.prompt_tokens,
            stats.prefill_tok_s(),
            g.tokens.len(),
            stats.decode_tok_s(),
            kv.report().resident as f64 / (1 << 20) as f64,
            g.stop.describe()
        );
    }
    Ok(())
}
