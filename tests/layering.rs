//! The crate's module graph stays a one-way stack: no cycles between
//! top-level modules, and production code never imports the CPU reference.
//!
//! Reads `src/**/*.rs` as text, so it needs no GPU and no model. An edge
//! `a -> b` is any `crate::b` path (in a `use`, a `use crate::{b, ..}` group,
//! or inline) in a file under `src/a.rs` or `src/a/`; comments and string
//! literals are skipped, `super::` / `self::` paths are taken to stay inside
//! their top-level module, and `crate::Error` / `crate::Result` (the root's
//! `pub use error::{..}`) count as `error`. `src/lib.rs` and `src/main.rs` are
//! the roots and are not scanned. Unit tests in `src/` count as production:
//! comparisons with the reference belong in `tests/`.
//!
//! The allowed directions, one layer per line, lowest first. A module may
//! import only modules of the layers above its own line (none of its own),
//! so data flows one way; a new module gets a line (or joins one) here, and
//! an import against this order means a type sits in the wrong module.
//!
//! | layer | modules | may import |
//! |---|---|---|
//! | 0 | `error`, `progress` | nothing: the one error type and `show` (names fit for one-line messages); stderr progress bars |
//! | 1 | `quant`, `mapped`, `fetch`, `template`, `sampler`, `arch` | `error` (`arch`: the families' recipes, plain tables) |
//! | 2 | `kernels` | shader registry, pipeline cache, `Dispatch`: `quant` |
//! | 3 | `gpu` | every version-sensitive wgpu call; owns a `kernels::Registry` |
//! | 4 | `ops` | launch builders: `gpu`, `kernels`, `quant` |
//! | 5 | `gguf`, `safetensors` | file parsers over `mapped` bytes |
//! | 6 | `config`, `tokenizer` | read `gguf` metadata |
//! | 7 | `weights` | `config`, the parsers |
//! | 8 | `reference`, `kv` | the CPU reference (tests only) and the KV policies: neither imports the other |
//! | 9 | `memory`, `profile` | device budget and error scopes; per-kernel timing |
//! | 10 | `model` | the forward |
//! | 11 | `generate`, `measure` | loops and reports over a `Model` |
//! | 12 | `serve` | the OpenAI-compatible HTTP server over `model` and `generate` |
//! | 13 | `cli` | everything below |
//!
//! On top of the table: nothing outside `src/reference/` may import
//! `reference` (its module doc: "never by the GPU path"), whatever its layer.
//! Where production needs an item the reference also has (Mustafar's block
//! size, `keep_count`, StreamingLLM's kept slots), each keeps its own copy
//! and `copies_agree_with_the_reference` below checks that they agree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["error", "progress"],
    &["quant", "mapped", "fetch", "template", "sampler", "arch"],
    &["kernels"],
    &["gpu"],
    &["ops"],
    &["gguf", "safetensors"],
    &["config", "tokenizer"],
    &["weights"],
    &["reference", "kv"],
    &["memory", "profile"],
    &["model"],
    &["generate", "measure"],
    &["serve"],
    &["cli"],
];

/// One import: `from` uses `to` at `file:line`.
#[derive(Clone, Debug)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `text` with comments and the contents of string and char literals
/// replaced by spaces (newlines kept, so line numbers stay).
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(i) == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#')))
            && (i == 0 || !is_ident(c[i - 1]) || (c[i - 1] == 'b' && (i == 1 || !is_ident(c[i - 2]))))
        {
            // A raw string: r"..", r#".."#, ...
            i += 1;
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                blank(&mut out, c[i]);
                i += 1;
            }
            i += 1 + hashes;
        } else if at(i) == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                blank(&mut out, at(i));
                i += 1;
            }
            i += 1;
        } else if at(i) == '\'' && (at(i + 1) == '\\' || (at(i + 1) != '\'' && at(i + 2) == '\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime ('a) stays code.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_'
}

fn ident_at(s: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < s.len() && is_ident(s[i]) {
        i += 1;
    }
    (s[start..i].iter().collect(), i)
}

fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The first path segments after every `crate::` in `code`, with their line:
/// `crate::a::b` gives `a`; `crate::{a::b, c, d::{e}}` gives `a`, `c`, `d`.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let s: Vec<char> = code.chars().collect();
    let line_of = |i: usize| 1 + s[..i].iter().filter(|&&c| c == '\n').count();
    let mut out = Vec::new();
    let mut i = 0;
    const KEY: [char; 7] = ['c', 'r', 'a', 't', 'e', ':', ':'];
    while let Some(off) = s[i..].windows(7).position(|w| w == KEY) {
        let start = i + off;
        i = start + 7;
        if start > 0 && is_ident(s[start - 1]) {
            continue; // e.g. `my_crate::`
        }
        let j = skip_ws(&s, i);
        if s.get(j) == Some(&'{') {
            // A group: take the first segment of each top-level item.
            let mut k = j + 1;
            let mut depth = 1;
            let mut expect = true;
            while k < s.len() && depth > 0 {
                match s[k] {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => expect = true,
                    ch if depth == 1 && expect && is_ident(ch) => {
                        let (name, end) = ident_at(&s, k);
                        out.push((name, line_of(k)));
                        expect = false;
                        k = end;
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
            i = k;
        } else {
            let (name, _) = ident_at(&s, j);
            if !name.is_empty() {
                out.push((name, line_of(j)));
            }
        }
    }
    out
}

/// The crate's top-level modules and the root's re-exported names (`Error` ->
/// `error`), from `src/lib.rs`.
fn roots() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let lib = code_only(&std::fs::read_to_string(src_dir().join("lib.rs")).unwrap());
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for stmt in lib.split(';') {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let words: &[&str] = match words.first() {
            Some(&"pub") => &words[1..],
            _ => &words,
        };
        match words {
            ["mod", name] => {
                modules.insert(name.to_string());
            }
            ["use", rest @ ..] => {
                let rest = rest.concat();
                if let Some((module, names)) = rest.split_once("::") {
                    let module = module.trim_start_matches("self::").trim_start_matches("crate::");
                    for n in names.trim_matches(|c| c == '{' || c == '}').split(',') {
                        let n = n.rsplit(" as ").next().unwrap().trim();
                        if !n.is_empty() {
                            reexports.insert(n.to_string(), module.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (modules, reexports)
}

/// Every import between top-level modules under `src`.
fn edges(src: &Path) -> Vec<Edge> {
    let (modules, reexports) = roots();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let from = match rel.components().next().unwrap().as_os_str().to_str().unwrap() {
            "lib.rs" | "main.rs" => continue,
            first => first.trim_end_matches(".rs").to_string(),
        };
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        for (name, line) in crate_paths(&code) {
            let to = match reexports.get(&name) {
                Some(m) => m.clone(),
                None if modules.contains(&name) => name,
                None => panic!("src/{}:{line}: `crate::{name}` is neither a module nor a re-export of src/lib.rs", rel.display()),
            };
            if to != from {
                out.push(Edge { from: from.clone(), to, at: format!("src/{}:{line}", rel.display()) });
            }
        }
    }
    out
}

/// The cycles of the graph: per strongly connected component of more than
/// one module, a shortest closed walk `a -> b -> .. -> a` through its first
/// module, and the component's modules.
fn cycles(edges: &[Edge]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().insert(&e.to);
        next.entry(&e.to).or_default();
    }
    let reaches = |a: &str, b: &str| {
        let mut seen = BTreeSet::from([a]);
        let mut todo = vec![a];
        while let Some(x) = todo.pop() {
            for &y in &next[x] {
                if y == b {
                    return true;
                }
                if seen.insert(y) {
                    todo.push(y);
                }
            }
        }
        false
    };
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &a in next.keys() {
        if done.contains(a) || !reaches(a, a) {
            continue;
        }
        let component: BTreeSet<&str> = next.keys().copied().filter(|&b| b == a || (reaches(a, b) && reaches(b, a))).collect();
        done.extend(&component);
        // A shortest cycle through `a` inside the component (breadth first).
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([a]);
        'search: while let Some(x) = queue.pop_front() {
            for &y in &next[x] {
                if !component.contains(y) {
                    continue;
                }
                if y == a {
                    let mut walk = vec![x];
                    while *walk.last().unwrap() != a {
                        walk.push(prev[walk.last().unwrap()]);
                    }
                    walk.reverse();
                    walk.push(a);
                    out.push((walk.iter().map(|m| m.to_string()).collect(), component.iter().map(|m| m.to_string()).collect()));
                    break 'search;
                }
                if !prev.contains_key(y) && y != a {
                    prev.insert(y, x);
                    queue.push_back(y);
                }
            }
        }
    }
    out
}

fn evidence(edges: &[Edge], from: &str, to: &str) -> String {
    let at: Vec<&str> = edges.iter().filter(|e| e.from == from && e.to == to).map(|e| e.at.as_str()).collect();
    format!("{from} -> {to} ({}{})", at.iter().take(3).copied().collect::<Vec<_>>().join(", "), if at.len() > 3 { ", .." } else { "" })
}

#[test]
fn no_cycles_between_top_level_modules() {
    let edges = edges(&src_dir());
    let found = cycles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|(c, component)| {
            let steps: Vec<String> = c.windows(2).map(|p| evidence(&edges, &p[0], &p[1])).collect();
            format!("cycle {} (in the knot {{{}}}):\n    {}", c.join(" -> "), component.join(", "), steps.join("\n    "))
        })
        .collect();
    assert!(report.is_empty(), "{} cycle(s) between top-level modules:\n{}", report.len(), report.join("\n"));
}

#[test]
fn production_code_does_not_import_the_reference() {
    let bad: Vec<String> = edges(&src_dir())
        .into_iter()
        .filter(|e| e.to == "reference" && e.from != "reference")
        .map(|e| format!("{} ({} imports reference)", e.at, e.from))
        .collect();
    assert!(bad.is_empty(), "production code imports the CPU reference (move the item into the production module that owns it):\n  {}", bad.join("\n  "));
}

#[test]
fn imports_follow_the_layer_table() {
    let (modules, _) = roots();
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut bad: BTreeSet<String> = BTreeSet::new();
    for m in modules.iter().filter(|m| layer(m).is_none()) {
        bad.insert(format!("module {m} of src/lib.rs has no line in LAYERS"));
    }
    for m in LAYERS.iter().flat_map(|l| l.iter()).filter(|m| !modules.contains(**m)) {
        bad.insert(format!("LAYERS names {m}, which src/lib.rs does not declare"));
    }
    let edges = edges(&src_dir());
    for e in &edges {
        if let (Some(a), Some(b)) = (layer(&e.from), layer(&e.to))
            && b >= a
        {
            bad.insert(format!("{} ({} is layer {a}, {} layer {b})", evidence(&edges, &e.from, &e.to), e.from, e.to));
        }
    }
    assert!(bad.is_empty(), "imports against the layer table at the top of tests/layering.rs:\n  {}", bad.into_iter().collect::<Vec<_>>().join("\n  "));
}

/// The KV policy's three axes (`src/kv/storage/`, `eviction/`,
/// `selection/`) meet only through `kv/seam.rs` and the cache in `kv/`:
/// no file of one axis names another axis's module or types, so a new
/// storage is written without reading the eviction or selection code.
#[test]
fn kv_axes_do_not_know_each_other() {
    let axes: [(&str, &[&str]); 3] = [
        ("storage", &["Storage", "Slots", "Mustafar", "MustafarOptions"]),
        ("eviction", &["Eviction", "Streaming", "StreamingOptions", "Scored", "ScoredOptions"]),
        ("selection", &["Selection", "Quest", "QuestOptions"]),
    ];
    let mut bad = Vec::new();
    for (axis, _) in axes {
        let mut files = Vec::new();
        rust_files(&src_dir().join("kv").join(axis), &mut files);
        assert!(!files.is_empty(), "src/kv/{axis}/ has files");
        for f in files {
            let code = code_only(&std::fs::read_to_string(&f).unwrap());
            let words: BTreeSet<&str> = code.split(|c: char| !is_ident(c)).collect();
            for (other, types) in axes.iter().filter(|(o, _)| *o != axis) {
                let named = types.iter().filter(|t| words.contains(**t)).copied().collect::<Vec<_>>();
                if code.contains(&format!("{other}::")) || !named.is_empty() {
                    bad.push(format!("{} names the {other} axis ({named:?})", f.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_scanner_sees_imports() {
    // Groups, inline paths, re-exports; comments and strings do not count.
    let code = code_only(
        "use crate::{a::b, c, d::{e, f}};\n// crate::x\nlet s = \"crate::y\"; let r = r#\"crate::z\"#;\nfn f<'a>(x: &'a u8) -> char { crate::g::h(); '\"' }\n/* crate::w */ $crate::m::n!();",
    );
    let got: Vec<(String, usize)> = crate_paths(&code);
    let want = [("a", 1), ("c", 1), ("d", 1), ("g", 4), ("m", 5)];
    assert_eq!(got, want.map(|(n, l)| (n.to_string(), l)).to_vec());
    let e = |from: &str, to: &str| Edge { from: from.into(), to: to.into(), at: String::new() };
    let found = cycles(&[e("a", "b"), e("b", "c"), e("c", "a"), e("c", "d"), e("d", "e")]);
    assert_eq!(found, vec![(vec!["a", "b", "c", "a"].into_iter().map(String::from).collect(), vec!["a", "b", "c"].into_iter().map(String::from).collect())]);
    assert!(cycles(&[e("a", "b"), e("b", "c"), e("a", "c")]).is_empty());
}

/// Production's own copies of what the reference also defines.
#[test]
fn copies_agree_with_the_reference() {
    use wgkv::reference::{evict as re, mustafar as rm};
    assert_eq!(wgkv::ops::mustafar::T, rm::T, "Mustafar's block size");
    for d in [1, 8, 63, 64, 65, 96, 128] {
        assert_eq!(wgkv::ops::mustafar::v_tiles(d), rm::v_tiles(d), "v_tiles({d})");
        for s in [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99] {
            assert_eq!(wgkv::ops::mustafar::keep_count(d, s), rm::keep_count(d, s), "keep_count({d}, {s})");
        }
    }
    for len in 0..40 {
        for target in 0..40 {
            for sinks in 0..6 {
                assert_eq!(
                    wgkv::kv::eviction::streaming::streaming_keep(len, target, sinks),
                    re::streaming_keep(len, target, sinks),
                    "streaming_keep({len}, {target}, {sinks})"
                );
            }
        }
    }
}
