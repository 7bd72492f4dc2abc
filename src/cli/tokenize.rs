//! `wgkv tokenize TEXT [--json]`: the ids the model sees (special tokens in
//! the text are parsed; no BOS is added unless the model asks for one).

use crate::weights::Weights;
use crate::Result;

pub fn run(global: &super::Global, text: &str, json: bool) -> Result<()> {
    let path = crate::fetch::resolve_model(global.model.as_deref())?;
    let w = Weights::open(&path)?;
    let tok = super::load::tokenizer(&w)?;
    let ids = tok.encode_prompt(text)?;
    if json {
        let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_piece(i)).collect();
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else {
        for id in ids {
            println!("{id:>6} -> {:?}", tok.id_to_piece(id));
        }
    }
    Ok(())
}
