//! `wgkv models [--json]`: the models `--model NAME` knows, with their size
//! and whether they are in the cache (`wgkv fetch NAME` puts one there).

use crate::Result;
use crate::fetch::{self, MODELS};
use crate::measure::fmt_bytes;

pub fn run(json: bool) -> Result<()> {
    let cache = fetch::cache_dir();
    let state = |m: &fetch::WheelModel| match fetch::cached(m, &cache) {
        Some(true) => "cached",
        // A file without a marker vouching for it is hashed when first used.
        Some(false) => "cached, unverified",
        None => "not cached",
    };
    if json {
        let list: Vec<serde_json::Value> = MODELS
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::json!({
                    "name": m.name,
                    "about": m.about,
                    "default": i == 0,
                    "bytes": m.size,
                    "parts": m.parts.len(),
                    "sha256": m.sha256,
                    "cached": fetch::cached(m, &cache).is_some(),
                    "verified": fetch::cached(m, &cache) == Some(true),
                    "path": cache.join(m.file_name),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "cache": cache, "models": list }));
        return Ok(());
    }
    let width = MODELS.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for (i, m) in MODELS.iter().enumerate() {
        let default = if i == 0 { " (default)" } else { "" };
        println!("{:<width$}  {:>10}  {:<18}  {}{default}", m.name, fmt_bytes(m.size), state(m), m.about);
    }
    println!("cache: {} (`wgkv fetch NAME` downloads a model; `--model NAME` fetches it on first use)", cache.display());
    Ok(())
}
