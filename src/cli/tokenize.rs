//! `wgkv tokenize TEXT [--json]`: the ids the model sees (special tokens in
//! the text are parsed; no BOS is added unless the model asks for one).

use crate::Result;
use crate::weights::Weights;

pub fn run(global: &super::Global, text: &str, json: bool) -> Result<()> {
    let path = crate::fetch::resolve_model(global.model.as_deref())?;
    let w = Weights::open(&path)?;
    let tok = super::load::tokenizer(&w)?;
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
