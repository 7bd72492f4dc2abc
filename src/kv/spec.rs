//! The `--kv SPEC` grammar: `SPEC := PART ('+' PART)*`,
//! `PART := NAME [':' key=value (',' key=value)*]`, at most one part of each
//! kind (eviction, storage, selection), or `full` alone.

use crate::{Error, Result};

/// A token budget: absolute tokens per layer on average, or a share of the context.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    Tokens(usize),
    Percent(f32),
}

impl Budget {
    /// Tokens for a context of `ctx` tokens (at least 1).
    pub fn tokens(self, ctx: usize) -> usize {
        match self {
            Budget::Tokens(n) => n,
            Budget::Percent(p) => ((ctx as f64 * p as f64 / 100.0).round() as usize).max(1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Eviction,
    Storage,
    Selection,
    Full,
}

/// One parsed part: its name, kind and `key=value` options in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub name: String,
    pub kind: Kind,
    pub options: Vec<(String, String)>,
}

/// A parsed `--kv` spec.
#[derive(Clone, Debug, PartialEq)]
pub struct KvSpec {
    pub parts: Vec<Part>,
}

const EVICTION: &[&str] = &["streaming", "h2o", "snapkv", "pyramidkv", "knorm", "vatp", "dynamickv"];
const STORAGE: &[&str] = &["mustafar", "q8", "q4", "kivi"];
const SELECTION: &[&str] = &["quest"];

/// Keys each part accepts.
fn allowed_keys(name: &str) -> &'static [&'static str] {
    match name {
        "mustafar" => &["k", "v", "window"],
        "quest" => &["budget", "page", "dense_layers", "group", "width"],
        "streaming" => &["budget", "sinks", "alloc"],
        "full" => &[],
        "q8" | "q4" => &["rot"],
        "kivi" => &["bits", "group", "residual", "sinks"],
        _ => &["budget", "alloc", "window", "kernel", "pool", "sinks", "recent"],
    }
}

impl KvSpec {
    pub fn full() -> KvSpec {
        KvSpec { parts: vec![Part { name: "full".into(), kind: Kind::Full, options: vec![] }] }
    }

    pub fn parse(text: &str) -> Result<KvSpec> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::msg("empty --kv spec (try `full`)"));
        }
        // Parts and options are echoed in errors: keep those one line.
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(Error::msg(format!("--kv spec has a control character {c:?}")));
        }
        let mut parts: Vec<Part> = Vec::new();
        for raw in text.split('+') {
            let raw = raw.trim();
            let (name, opts) = match raw.split_once(':') {
                Some((n, o)) => (n.trim(), Some(o)),
                None => (raw, None),
            };
            let name = name.to_ascii_lowercase();
            let kind = if name == "full" {
                Kind::Full
            } else if EVICTION.contains(&name.as_str()) {
                Kind::Eviction
            } else if STORAGE.contains(&name.as_str()) {
                Kind::Storage
            } else if SELECTION.contains(&name.as_str()) {
                Kind::Selection
            } else {
                return Err(Error::msg(format!(
                    "unknown --kv part '{name}' (known: full, {}, {}, {})",
                    EVICTION.join(", "),
                    STORAGE.join(", "),
                    SELECTION.join(", ")
                )));
            };
            let mut options = Vec::new();
            if let Some(opts) = opts {
                for kv in opts.split(',') {
                    let Some((k, v)) = kv.split_once('=') else {
                        return Err(Error::msg(format!("--kv part '{name}': option '{kv}' is not key=value")));
                    };
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                    if !allowed_keys(&name).contains(&k.as_str()) {
                        return Err(Error::msg(format!("--kv part '{name}' has no option '{k}' (options: {})", allowed_keys(&name).join(", "))));
                    }
                    if options.iter().any(|(o, _)| *o == k) {
                        return Err(Error::msg(format!("--kv part '{name}': option '{k}' given twice")));
                    }
                    options.push((k, v));
                }
            }
            if let Some(p) = parts.iter().find(|p| p.kind == kind || p.kind == Kind::Full || kind == Kind::Full) {
                return Err(Error::msg(format!("--kv parts '{}' and '{name}' conflict: at most one part of each kind, and `full` stands alone", p.name)));
            }
            parts.push(Part { name, kind, options });
        }
        let spec = KvSpec { parts };
        for p in &spec.parts {
            for (k, _) in &p.options {
                if k == "budget" {
                    p.budget()?;
                }
            }
        }
        Ok(spec)
    }

    pub fn part(&self, kind: Kind) -> Option<&Part> {
        self.parts.iter().find(|p| p.kind == kind)
    }

    pub fn is_full(&self) -> bool {
        self.parts.iter().all(|p| p.kind == Kind::Full)
    }
}

impl Part {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn budget(&self) -> Result<Option<Budget>> {
        let Some(v) = self.get("budget") else { return Ok(None) };
        let bad = || Error::msg(format!("--kv part '{}': budget '{v}' is not a token count or a percentage like 10%", self.name));
        if let Some(p) = v.strip_suffix('%') {
            let p: f32 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            Ok(Some(Budget::Percent(p)))
        } else {
            let n: usize = v.parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            Ok(Some(Budget::Tokens(n)))
        }
    }
}

impl std::fmt::Display for KvSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| {
                if p.options.is_empty() {
                    p.name.clone()
                } else {
                    let o: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{}:{}", p.name, o.join(","))
                }
            })
            .collect();
        write!(f, "{}", parts.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_design_example() {
        let s = KvSpec::parse("vatp:budget=512,alloc=dynamic+mustafar:k=0.5,v=0.5+quest:budget=128").unwrap();
        assert_eq!(s.parts.len(), 3);
        assert_eq!(s.part(Kind::Eviction).unwrap().budget().unwrap(), Some(Budget::Tokens(512)));
        assert_eq!(s.part(Kind::Storage).unwrap().get("v"), Some("0.5"));
        assert_eq!(s.to_string(), "vatp:budget=512,alloc=dynamic+mustafar:k=0.5,v=0.5+quest:budget=128");
        assert_eq!(KvSpec::parse("h2o:budget=10%").unwrap().parts[0].budget().unwrap(), Some(Budget::Percent(10.0)));
        assert_eq!(Budget::Percent(10.0).tokens(2048), 205);
        let q = KvSpec::parse("snapkv:budget=25%+q4+quest:budget=256").unwrap();
        assert_eq!(q.part(Kind::Storage).unwrap().name, "q4");
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for (spec, needle) in [
            ("", "empty"),
            ("lru", "unknown --kv part 'lru'"),
            ("h2o+snapkv", "conflict"),
            ("full+quest", "conflict"),
            ("quest:budget", "not key=value"),
            ("quest:bugdet=3", "no option 'bugdet'"),
            ("h2o:budget=0", "budget '0'"),
            ("h2o:budget=150%", "budget '150%'"),
            ("h2o:budget=abc", "budget 'abc'"),
            ("quest:budget=1,budget=2", "given twice"),
            ("quest:page=1\n2", "control character '\\n'"),
            ("q8:bits=2", "no option 'bits'"),
            ("mustafar+q4", "conflict"),
            ("kivi+q8", "conflict"),
            ("kivi:rot=1", "no option 'rot'"),
        ] {
            let e = KvSpec::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec:?}: {e}");
        }
    }
}
