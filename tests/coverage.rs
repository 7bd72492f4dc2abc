//! Fails when a registered kernel has no test: every `Kernel` variant must be
//! named (`Kernel::<Variant>`) in a kernel test file, where the test asserts
//! that the dispatch it checks really is that kernel.

use std::path::Path;
use wgkv::kernels::Kernel;

#[test]
fn every_registered_kernel_is_tested() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("kernel_") && name.ends_with(".rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    let missing: Vec<String> = Kernel::ALL
        .iter()
        .map(|k| format!("{k:?}"))
        .filter(|v| {
            let pat = format!("Kernel::{v}");
            // The name must be followed by a non-identifier character (so `Kernel::Attn` does not count for `Kernel::AttnDecode`).
            !text.match_indices(&pat).any(|(i, _)| {
                text[i + pat.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric() && c != '_')
            })
        })
        .collect();
    assert!(missing.is_empty(), "kernels without a test in tests/kernel_*.rs: {missing:?}");
}

#[test]
fn every_kernel_has_its_shader_file() {
    for k in Kernel::ALL {
        let src = k.source();
        assert!(src.contains("fn main"), "shaders/{}.wgsl has no entry point `main`", k.name());
    }
}
