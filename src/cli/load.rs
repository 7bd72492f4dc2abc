//! What every model-running subcommand does first: resolve the model, open
//! the GPU, upload the weights, build the tokenizer and template.

use crate::fetch::resolve_model;
use crate::gpu::{Gpu, GpuOptions};
use crate::kv::KvSpec;
use crate::model::Model;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags shared by the commands that run the model.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// KV cache policy, e.g. `full` (see README: KV policies).
    #[arg(long, default_value = "full")]
    pub kv: String,
    /// Context size in tokens (KV cache capacity); default: the model's, capped at 8192.
    #[arg(long)]
    pub ctx: Option<usize>,
}

/// `--chat-template FILE`, for the commands that render a chat.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TemplateArgs {
    /// A Jinja chat template to use instead of the model's own (needed for a model without one).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
}

pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub model_name: String,
    /// The model's file or folder.
    pub path: PathBuf,
}

/// The GPU the command runs on. A device error that escapes the checks
/// (validation, out of memory, device lost) ends the run with one line
/// instead of wgpu's panic.
pub fn gpu(global: &super::Global) -> Result<Arc<Gpu>> {
    let opts = GpuOptions {
        backend: global.backend.clone(),
        adapter: global.adapter.clone(),
        force_f32: false,
        max_storage_binding: global.max_binding,
        memory: global.gpu_memory,
    };
    let gpu = Gpu::new(&opts)?;
    gpu.on_failure(
        |e| {
            eprintln!("wgkv: error: GPU: {e}");
            std::process::exit(2);
        },
        |reason, msg| {
            eprintln!("wgkv: error: the GPU device was lost ({reason}): {msg}");
            std::process::exit(3);
        },
    );
    Ok(gpu)
}

pub fn load(global: &super::Global, run: &RunArgs) -> Result<Loaded> {
    load_with(global, run, &TemplateArgs::default())
}

/// [`load`], with the chat template from `--chat-template FILE` when given.
pub fn load_with(global: &super::Global, run: &RunArgs, t: &TemplateArgs) -> Result<Loaded> {
    let spec = KvSpec::parse(&run.kv)?;
    let path = resolve_model(global.model.as_deref())?;
    let weights = Weights::open(&path)?;
    let tokenizer = tokenizer(&weights)?;
    let template = chat_template(&tokenizer, t.chat_template.as_deref())?;
    let ctx = run.ctx.unwrap_or(weights.cfg.max_seq.min(8192));
    if ctx > weights.cfg.max_seq {
        return Err(Error::msg(format!("--ctx {ctx} exceeds the model's context length {}", weights.cfg.max_seq)));
    }
    let gpu = gpu(global)?;
    let model = Model::load(gpu, &weights, ctx, spec)?;
    let model_name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    Ok(Loaded { model, tokenizer, template, model_name, path })
}

/// The chat template: `file` (a Jinja template) when given, else the model's
/// own, else none. A file that cannot be read or does not compile is one
/// line naming it.
pub fn chat_template(tok: &Tokenizer, file: Option<&Path>) -> Result<Option<ChatTemplate>> {
    let (bos, eos) = (tok.bos_text(), tok.eos_text());
    match file {
        Some(f) => {
            let name = f.display().to_string();
            let src = std::fs::read_to_string(f).map_err(|e| Error::io(format!("--chat-template {name}"), e))?;
            ChatTemplate::new(&src, bos, eos).map(Some).map_err(|e| Error::msg(format!("--chat-template {name}: {e}")))
        }
        None => tok.chat_template().map(|src| ChatTemplate::new(src, bos, eos)).transpose(),
    }
}

/// The tokenizer of a model file or folder without its weights: a GGUF's
/// metadata (so a file whose tensors cannot be loaded still tokenizes), or
/// the Hugging Face folder's tokenizer.json.
pub fn tokenizer_at(path: &Path) -> Result<Tokenizer> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if path.is_dir() {
        Tokenizer::from_hf_dir(path)
    } else if name == "config.json" || name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json") {
        Tokenizer::from_hf_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
    } else {
        Tokenizer::from_gguf(&crate::gguf::Gguf::open_metadata(path)?)
    }
}

/// The model's own tokenizer: from the GGUF metadata or the HF folder's tokenizer.json.
pub fn tokenizer(w: &Weights) -> Result<Tokenizer> {
    match (&w.gguf, &w.hf_dir) {
        (Some(g), _) => Tokenizer::from_gguf(g),
        (None, Some(dir)) => Tokenizer::from_hf_dir(dir),
        _ => Err(Error::msg(format!("{}: no tokenizer found", w.path.display()))),
    }
}
