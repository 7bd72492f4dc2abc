//! `wgkv chat`: multi-turn chat with the model's own template (or the one
//! `--chat-template FILE` gives). Each turn prefills only the new text (the
//! KV cache is kept across turns), answers stream token by token, Ctrl-C
//! stops the answer, not the program; `/save` and `/load` keep a
//! conversation with its cache. A model without a template (a base model)
//! gets plain completion: it says so in one line, then continues each line
//! typed as text.

use super::load::{Loaded, RunArgs, TemplateArgs, load_with};
use super::sampling::{MaxTokens, SamplingArgs, parse_max_tokens};
use super::saved::{self, Saved};
use crate::generate::{PrefillBar, Stats, Stop, StopText, generate};
use crate::model::Model;
use crate::sampler::Sampler;
use crate::template::{ChatTemplate, Message};
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// System message (default: the template's own, if any).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer; -1: until the model stops or the context is full.
    #[arg(short = 'n', long, default_value = "512", allow_negative_numbers = true, value_parser = parse_max_tokens)]
    pub n: MaxTokens,
    /// No speed line after each answer.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a conversation becomes the model's text.
enum Format {
    Chat(Box<ChatTemplate>),
    /// No chat template: the last line typed (and the answer to it) as plain text.
    Plain,
}

impl Format {
    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            Format::Chat(t) => t.render(messages, add_generation_prompt),
            Format::Plain => {
                let last = messages.iter().rposition(|m| m.role == "user").unwrap_or(messages.len());
                Ok(messages[last..].iter().filter(|m| m.role != "system").map(|m| m.content.as_str()).collect())
            }
        }
    }
}

const HELP: &str = "commands: /help, /reset (forget the conversation), /system TEXT (set the system message and reset; no TEXT clears it), \
/kv (cache policy and size), /stats (speed of the last answer), /save FILE and /load FILE (the conversation with its KV cache), /quit (or Ctrl-D)";

/// The messages a template renders: the system message, if any, then `messages`.
fn history(system: Option<&str>, messages: &[Message]) -> Vec<Message> {
    system.map(|s| Message::new("system", s)).into_iter().chain(messages.iter().cloned()).collect()
}

/// The conversation and what of it is already in the KV cache.
struct Session {
    system: Option<String>,
    messages: Vec<Message>,
    /// The exact text whose tokens are in the cache (rendered prompt + answers).
    fed: String,
    last: Option<Stats>,
    /// The model's sha256, computed on the first `/save` or `/load`.
    checksum: Option<String>,
}

impl Session {
    fn history(&self) -> Vec<Message> {
        history(self.system.as_deref(), &self.messages)
    }
    fn reset(&mut self, model: &mut Model) {
        self.messages.clear();
        self.fed.clear();
        model.reset();
    }
    fn checksum(&mut self, l: &Loaded) -> Result<String> {
        if self.checksum.is_none() {
            self.checksum = Some(crate::fetch::model_checksum(&l.path)?);
        }
        Ok(self.checksum.clone().unwrap_or_default())
    }
}

pub fn run(global: &super::Global, a: ChatArgs) -> Result<()> {
    let (cfg, random_seed) = a.sampling.config();
    cfg.validate()?;
    let mut l = load_with(global, &a.run, &a.template)?;
    let template = match l.template.take() {
        Some(t) => Format::Chat(Box::new(t)),
        None if a.system.is_some() => {
            return Err(Error::msg(format!("{} has no chat template, so --system has nowhere to go; give one with --chat-template FILE", l.model_name)));
        }
        None => {
            eprintln!("wgkv: {} has no chat template: each line is continued as plain text (give a template with --chat-template FILE)", l.model_name);
            Format::Plain
        }
    };
    let seed = cfg.seed;
    let mut sampler = Sampler::new(cfg);
    let eog = l.tokenizer.eog_ids();
    if a.sampling.ignore_eos {
        sampler.ban(&eog);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // Ctrl-C sets the flag; the decode loop checks it after every token.
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|e| Error::msg(format!("cannot install the Ctrl-C handler: {e}")))?;
    }
    l.model.cancel = Some(interrupted.clone());
    let tty = std::io::stdin().is_terminal();
    let dim = std::io::stderr().is_terminal();
    let mut editor = if tty { rustyline::DefaultEditor::new().ok() } else { None };
    let mut piped = std::io::stdin().lock().lines();
    let mut s = Session { system: a.system.clone(), messages: Vec::new(), fed: String::new(), last: None, checksum: None };
    if tty {
        eprintln!("wgkv chat — {} on {} (kv {}). {HELP}", l.model_name, l.model.gpu.describe(), l.model.kv.spec);
    }
    // A drawn seed is said once, with the first answer's speed line.
    let mut seed_note = (random_seed && a.sampling.temp > 0.0).then(|| format!("; seed {seed} (--seed {seed} repeats it)"));
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
            let arg = arg.trim();
            match name {
                "quit" | "exit" => break,
                "help" => println!("{HELP}"),
                "reset" => {
                    s.reset(&mut l.model);
                    println!("(conversation reset)");
                }
                "system" if matches!(template, Format::Plain) => println!("(no chat template: a system message has nowhere to go)"),
                "system" => {
                    s.system = (!arg.is_empty()).then(|| arg.to_string());
                    s.reset(&mut l.model);
                    match &s.system {
                        Some(_) => println!("(system message set; conversation reset)"),
                        None => println!("(system message cleared; conversation reset)"),
                    }
                }
                "kv" => print_kv(&l.model),
                "stats" => match &s.last {
                    Some(st) => println!(
                        "last answer: prefill {} tokens at {:.1} t/s, decode {} tokens at {:.1} t/s",
                        st.prompt_tokens,
                        st.prefill_tok_s(),
                        st.gen_tokens,
                        st.decode_tok_s()
                    ),
                    None => println!("no answer yet"),
                },
                "save" | "load" if arg.is_empty() => println!("usage: /{name} FILE"),
                "save" => match save(&mut s, &l, &template, arg) {
                    Ok(msg) => println!("{msg}"),
                    Err(e) => println!("(not saved: {e})"),
                },
                "load" => match load_saved(&mut s, &mut l, &template, arg) {
                    Ok(msg) => println!("{msg}"),
                    Err(e) => println!("(not loaded: {e})"),
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
                l.model.kv.capacity,
                l.model.kv.len,
                ids.len()
            );
            s.messages.pop();
            continue;
        }
        let mut dec = StreamDecoder::new();
        let mut cut = StopText::new(&a.sampling.stop);
        let tok = &l.tokenizer;
        let mut stdout = std::io::stdout().lock();
        let flag = interrupted.clone();
        // Every answer token but the last is fed to the cache: the answer
        // may fill what room is left after its prompt, no more.
        let room = l.model.kv.room().map(|room| room - ids.len());
        let budget = match (a.n.0, room) {
            (Some(n), Some(r)) => Some(n.min(r)),
            (n, r) => n.or(r),
        };
        let mut bar = PrefillBar::new(&mut l.model, ids.len());
        let run = generate(bar.model(), &mut sampler, &ids, budget, &eog, |id| {
            let shown = cut.push(&dec.push(tok, id));
            if stdout.write_all(shown.as_bytes()).and_then(|_| stdout.flush()).is_err() || flag.load(Ordering::SeqCst) {
                return Some(Stop::Interrupted);
            }
            cut.matched.then_some(Stop::StopString)
        });
        drop(bar);
        let g = match run {
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
        let tail = cut.finish(&dec.finish());
        let _ = writeln!(stdout, "{tail}");
        drop(stdout);
        // The room ran out before -n did: the context is what stopped it.
        let stop = match g.stop {
            Stop::Length if a.n.0 != budget => Stop::ContextFull,
            other => other,
        };
        match stop {
            Stop::Interrupted => eprintln!("(stopped)"),
            Stop::ContextFull => eprintln!(
                "(stopped: the {}-token context is full; /reset, a larger --ctx, or an eviction --kv policy such as streaming:budget=1024)",
                l.model.kv.capacity
            ),
            _ => {}
        }
        if !a.quiet {
            let st = &g.stats;
            let limit = if stop == Stop::Length { "; stopped at the -n limit" } else { "" };
            let line = format!(
                "[{} tokens at {:.1} t/s; prompt {} tokens at {:.1} t/s{limit}{}]",
                g.tokens.len(),
                st.decode_tok_s(),
                st.prompt_tokens,
                st.prefill_tok_s(),
                seed_note.take().unwrap_or_default()
            );
            if dim { eprintln!("\x1b[2m{line}\x1b[0m") } else { eprintln!("{line}") }
        }
        // The cache holds the answer's tokens but (unless it ended on an end
        // token) the last; what it holds is what the next turn builds on.
        let prefix = if s.fed.is_empty() { full } else { format!("{}{new_text}", s.fed) };
        s.fed = prefix + &l.tokenizer.decode(&g.tokens[..g.cached]);
        let answer = if cut.matched { cut.text.clone() } else { l.tokenizer.decode(&g.tokens) };
        s.messages.push(Message { role: "assistant".into(), content: answer });
        s.last = Some(g.stats);
    }
    Ok(())
}

fn print_kv(model: &Model) {
    for line in model.kv.report().lines {
        println!("{line}");
    }
}

/// `/save FILE`: the messages, and the cache where its policy allows.
fn save(s: &mut Session, l: &Loaded, template: &Format, path: &str) -> Result<String> {
    let kv = &l.model.kv;
    // The cached text is a prefix of the rendered conversation: its length says it.
    let rendered = template.render(&s.history(), false)?;
    let (cache, bytes) = match kv.can_save() && !s.fed.is_empty() && rendered.starts_with(&s.fed) {
        true => {
            let (st, b) = kv.save(&l.model.gpu)?;
            (Some(st), b)
        }
        false => (None, Vec::new()),
    };
    let saved = Saved {
        wgkv_version: env!("CARGO_PKG_VERSION").to_string(),
        model: l.model_name.clone(),
        model_sha256: s.checksum(l)?,
        kv: kv.spec.to_string(),
        ctx: kv.ctx,
        system: s.system.clone(),
        messages: s.messages.clone(),
        fed_len: if cache.is_some() { s.fed.len() } else { 0 },
        cache,
    };
    let size = saved::write(path, &saved, &bytes)?;
    let what = match (&saved.cache, kv.can_save()) {
        (Some(_), _) => format!("and {} of KV cache", crate::measure::fmt_bytes(bytes.len() as u64)),
        (None, true) => "(no cache yet)".to_string(),
        (None, false) => format!("without the cache ({} keeps no saved cache: /load prefills the messages again)", kv.spec),
    };
    Ok(format!("(saved {} messages {what} to {path}, {})", saved.messages.len(), crate::measure::fmt_bytes(size)))
}

/// `/load FILE`: a conversation `/save` wrote with this model; its cache is
/// restored when it was saved under this run's policy and context.
fn load_saved(s: &mut Session, l: &mut Loaded, template: &Format, path: &str) -> Result<String> {
    let (saved, bytes) = saved::read(path)?;
    let sum = s.checksum(l)?;
    if saved.model_sha256 != sum {
        return Err(Error::msg(format!("{path} was saved with another model ({}); this chat runs {}", saved.model, l.model_name)));
    }
    let spec = l.model.kv.spec.to_string();
    if saved.cache.is_some() && (saved.kv != spec || saved.ctx != l.model.kv.ctx) {
        return Err(Error::msg(format!(
            "{path} holds a cache saved under --kv {} --ctx {}; run chat with those to load it (this run: --kv {spec} --ctx {})",
            saved.kv, saved.ctx, l.model.kv.ctx
        )));
    }
    let rendered = template.render(&history(saved.system.as_deref(), &saved.messages), false)?;
    let fed = match rendered.get(..saved.fed_len) {
        Some(fed) if saved.cache.is_some() => fed.to_string(),
        None if saved.cache.is_some() => return Err(Error::format(path, "its cached length is past the conversation's text")),
        _ => String::new(),
    };
    match &saved.cache {
        Some(st) => l.model.kv.restore(&l.model.gpu, st, &bytes)?,
        None => l.model.reset(),
    }
    s.system = saved.system;
    s.messages = saved.messages;
    s.fed = fed;
    let how = if saved.cache.is_some() { format!("with its cache of {} tokens", l.model.kv.len) } else { "(the next turn prefills them)".into() };
    Ok(format!("(loaded {} messages {how} from {path})", s.messages.len()))
}
