//! `wgkv chat`: multi-turn chat with the model's own template. Each turn
//! prefills only the new text (the KV cache is kept across turns), answers
//! stream token by token, Ctrl-C stops the answer, not the program.

use super::load::{load, RunArgs};
use super::sampling::SamplingArgs;
use crate::generate::{generate, Stats, Stop};
use crate::model::Model;
use crate::sampler::Sampler;
use crate::template::Message;
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// System message (default: the template's own, if any).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 512)]
    pub n: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

const HELP: &str = "commands: /help, /reset (forget the conversation), /system TEXT (set the system message and reset), \
/kv (cache policy and size), /stats (speed of the last answer), /quit (or Ctrl-D)";

/// The conversation and what of it is already in the KV cache.
struct Session {
    system: Option<String>,
    messages: Vec<Message>,
    /// The exact text whose tokens are in the cache (rendered prompt + answers).
    fed: String,
    last: Option<Stats>,
}

impl Session {
    fn history(&self) -> Vec<Message> {
        let mut v = Vec::new();
        if let Some(s) = &self.system {
            v.push(Message { role: "system".into(), content: s.clone() });
        }
        v.extend(self.messages.iter().cloned());
        v
    }
    fn reset(&mut self, model: &mut Model) {
        self.messages.clear();
        self.fed.clear();
        model.reset();
    }
}

pub fn run(global: &super::Global, a: ChatArgs) -> Result<()> {
    let cfg = a.sampling.config();
    cfg.validate()?;
    let mut l = load(global, &a.run)?;
    let template = l.template.take().ok_or_else(|| Error::msg("this model has no chat template; use `wgkv generate`"))?;
    let mut sampler = Sampler::new(cfg);
    let eog = l.tokenizer.eog_ids();
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // Ctrl-C sets the flag; the decode loop checks it after every token.
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .map_err(|e| Error::msg(format!("cannot install the Ctrl-C handler: {e}")))?;
    }
    l.model.cancel = Some(interrupted.clone());
    let tty = std::io::stdin().is_terminal();
    let mut editor = if tty { rustyline::DefaultEditor::new().ok() } else { None };
    let mut piped = std::io::stdin().lock().lines();
    let mut s = Session { system: a.system.clone(), messages: Vec::new(), fed: String::new(), last: None };
    if tty {
        eprintln!("wgkv chat — {} on {} (kv {}). {HELP}", l.model_name, l.model.gpu.describe(), l.model.kv.spec);
    }
    loop {
        interrupted.store(false, Ordering::SeqCst);
        let line = match editor.as_mut() {
            Some(ed) => match ed.readline("> ") {
                Ok(line) => {
                    let _ = ed.add_history_entry(line.as_str());
                    line
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            },
            None => match piped.next() {
                Some(Ok(line)) => line,
                Some(Err(e)) => return Err(Error::msg(format!("stdin: {e} (chat reads UTF-8 text, one message per line)"))),
                None => break,
            },
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(cmd) = line.strip_prefix('/') {
            let (name, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
            match name {
                "quit" | "exit" => break,
                "help" => println!("{HELP}"),
                "reset" => {
                    s.reset(&mut l.model);
                    println!("(conversation reset)");
                }
                "system" => {
                    s.system = if arg.trim().is_empty() { None } else { Some(arg.trim().to_string()) };
                    s.reset(&mut l.model);
                    println!("(system message set; conversation reset)");
                }
                "kv" => {
                    let kv = &l.model.kv;
                    let per_layer = kv.tokens_per_layer();
                    let layers = match per_layer.iter().all(|&n| n == per_layer[0]) {
                        true => format!("{} in each of {} layers", per_layer[0], per_layer.len()),
                        false => format!("{per_layer:?} per layer"),
                    };
                    println!(
                        "kv {}: {} tokens of {} ({:.2} MiB resident, {:.2} MiB allocated, {:.2} MiB read per decode step); tokens kept: {layers}",
                        kv.spec, kv.len, kv.capacity,
                        kv.bytes_resident() as f64 / 1048576.0, kv.bytes_allocated() as f64 / 1048576.0,
                        kv.bytes_read_per_step() as f64 / 1048576.0
                    );
                    if let Some(q) = &kv.quest {
                        match &kv.mustafar {
                            // Under Mustafar the pages are its compressed blocks; the window is always attended.
                            Some(m) => println!("{} [pages: mustafar's compressed blocks; its dense window is always attended]", q.describe(m.compressed())),
                            None => println!("{}", q.describe(kv.len)),
                        }
                    }
                    if let Some(m) = &kv.mustafar {
                        println!("{}", m.describe(kv.len - m.compressed()));
                    }
                    if let Some(st) = &kv.streaming {
                        println!(
                            "streaming: {} sinks + the most recent tokens in {} slots per layer; {} tokens run, {} evicted",
                            st.sinks, st.budget, kv.pos, kv.evicted
                        );
                    }
                    if let Some(sc) = &kv.scored {
                        println!("{}; {} tokens run, {} evicted per layer on average", sc.describe(), kv.pos, kv.evicted);
                    }
                }
                "stats" => match &s.last {
                    Some(st) => println!(
                        "last answer: prefill {} tokens at {:.1} t/s, decode {} tokens at {:.1} t/s",
                        st.prompt_tokens, st.prefill_tok_s(), st.gen_tokens, st.decode_tok_s()
                    ),
                    None => println!("no answer yet"),
                },
                _ => println!("unknown command /{name}; {HELP}"),
            }
            continue;
        }
        s.messages.push(Message { role: "user".into(), content: line.to_string() });
        let full = template.render(&s.history(), true)?;
        // Only the text after what the cache already holds is prefilled.
        let new_text = match full.strip_prefix(s.fed.as_str()) {
            Some(rest) if !s.fed.is_empty() => rest.to_string(),
            _ => {
                l.model.reset();
                s.fed.clear();
                full.clone()
            }
        };
        let ids = if s.fed.is_empty() { l.tokenizer.encode_prompt(&new_text)? } else { l.tokenizer.encode(&new_text, true)? };
        if l.model.kv.room().is_some_and(|room| ids.len() >= room) {
            println!(
                "(the {}-token context is full: {} tokens cached, {} new. /reset starts over; \
a larger --ctx or an eviction policy such as --kv streaming:budget=1024 keeps a chat going)",
                l.model.kv.capacity, l.model.kv.len, ids.len()
            );
            s.messages.pop();
            continue;
        }
        let mut dec = StreamDecoder::new();
        let tok = &l.tokenizer;
        let mut stdout = std::io::stdout().lock();
        let flag = interrupted.clone();
        let budget = l.model.kv.room().map_or(a.n, |room| a.n.min(room - ids.len()));
        let run = generate(&mut l.model, &mut sampler, &ids, budget, &eog, |id| {
            let piece = dec.push(tok, id);
            let ok = stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush()).is_ok();
            ok && !flag.load(Ordering::SeqCst)
        });
        let (answer, stop, stats) = match run {
            Err(Error::Interrupted) => {
                // Ctrl-C during the prompt: drop this message and the partly
                // filled cache; the next turn prefills the history again.
                drop(stdout);
                eprintln!("(stopped during the prompt; message dropped)");
                s.messages.pop();
                s.fed.clear();
                l.model.reset();
                continue;
            }
            other => other?,
        };
        let tail = dec.finish();
        let _ = writeln!(stdout, "{tail}");
        drop(stdout);
        match stop {
            Stop::Interrupted => eprintln!("(stopped)"),
            Stop::ContextFull => eprintln!("(context full: /reset, a larger --ctx, or an eviction --kv policy)"),
            _ => {}
        }
        let answer_text = l.tokenizer.decode(&answer);
        s.fed = format!("{new_prefix}{answer_text}", new_prefix = if s.fed.is_empty() { full } else { format!("{}{new_text}", s.fed) });
        s.messages.push(Message { role: "assistant".into(), content: answer_text });
        s.last = Some(stats);
    }
    Ok(())
}
