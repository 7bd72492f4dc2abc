//! `wgkv generate -p TEXT`: one prompt in, streamed text out (or one JSON object).

use super::load::{load, RunArgs};
use super::sampling::SamplingArgs;
use crate::generate::generate;
use crate::sampler::Sampler;
use crate::template::Message;
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use serde_json::json;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The prompt.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n: usize,
    /// Wrap the prompt in the model's chat template as one user turn.
    #[arg(long)]
    pub chat: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(global: &super::Global, a: GenerateArgs) -> Result<()> {
    let cfg = a.sampling.config();
    cfg.validate()?;
    let mut l = load(global, &a.run)?;
    let text = if a.chat {
        let t = l.template.as_ref().ok_or_else(|| Error::msg("this model has no chat template; drop --chat"))?;
        t.render(&[Message { role: "user".into(), content: a.prompt.clone() }], true)?
    } else {
        a.prompt.clone()
    };
    let ids = l.tokenizer.encode_prompt(&text)?;
    if ids.is_empty() {
        return Err(Error::msg("the prompt is empty"));
    }
    let mut sampler = Sampler::new(cfg);
    let eog = l.tokenizer.eog_ids();
    let mut dec = StreamDecoder::new();
    let mut stdout = std::io::stdout().lock();
    let streaming = !a.json;
    let (out, _stop, stats) = generate(&mut l.model, &mut sampler, &ids, a.n, &eog, |id| {
        if streaming {
            let s = dec.push(&l.tokenizer, id);
            // A closed stdout (e.g. `| head`) ends generation quietly.
            return stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()).is_ok();
        }
        true
    })?;
    if a.json {
        let o = json!({
            "text": l.tokenizer.decode(&out),
            "tokens": out,
            "prompt_tokens": stats.prompt_tokens,
            "prefill_tok_s": stats.prefill_tok_s(),
            "decode_tok_s": stats.decode_tok_s(),
            "kv_bytes": l.model.kv.bytes_resident(),
        });
        println!("{o}");
    } else {
        let rest = dec.finish();
        let _ = write!(stdout, "{rest}\n");
        eprintln!(
            "[{} prompt tokens at {:.1} t/s, {} generated at {:.1} t/s, KV {:.1} MiB]",
            stats.prompt_tokens, stats.prefill_tok_s(), out.len(), stats.decode_tok_s(),
            l.model.kv.bytes_resident() as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
