//! `wgkv tokenize TEXT [--json]`: the ids the model sees (special tokens in
//! the text are parsed; no BOS is added unless the model asks for one). Only
//! the tokenizer is read, not the weights.

use crate::Result;

pub fn run(global: &super::Global, text: &str, json: bool) -> Result<()> {
    let path = crate::fetch::resolve_model(global.model.as_deref())?;
    let tok = super::load::tokenizer_at(&path)?;
    let ids = tok.encode_prompt(text)?;
    if json {
        let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_piece(i)).collect();
        let mut o = serde_json::json!({ "ids": ids, "pieces": pieces });
        let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        crate::measure::record::Stamp::new(None, &name).merge_into(&mut o);
        println!("{o}");
    } else {
        for id in ids {
            println!("{id:>6} -> {:?}", tok.id_to_piece(id));
        }
    }
    Ok(())
}
