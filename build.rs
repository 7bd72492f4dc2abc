//! Records the git commit the binary was built from (`WGKV_GIT_COMMIT`), so
//! benchmark records say which code produced them: the short hash, with
//! "-dirty" when tracked files differ from it; "unknown" when git or the
//! repository is missing (a source tarball, a vendored copy).

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = commit != "unknown"
        && Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| !o.stdout.is_empty());
    let stamp = if dirty { format!("{commit}-dirty") } else { commit };
    println!("cargo:rustc-env=WGKV_GIT_COMMIT={stamp}");
    println!("cargo:rerun-if-changed=build.rs");
    // Edits to the sources and the index change the dirty mark.
    for dir in ["src", "shaders", "Cargo.toml", ".git/index"] {
        if Path::new(dir).exists() {
            println!("cargo:rerun-if-changed={dir}");
        }
    }
    // HEAD changes on checkout; the branch's ref file changes on commit.
    // Only existing files are named: cargo re-runs the script on every build
    // for a path that does not exist.
    let head = Path::new(".git/HEAD");
    if head.is_file() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        let text = std::fs::read_to_string(head).unwrap_or_default();
        if let Some(r) = text.trim().strip_prefix("ref: ") {
            let path = Path::new(".git").join(r);
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
