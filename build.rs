//! Records the git commit the binary was built from (`WGKV_GIT_COMMIT`), so
//! benchmark records say which code produced them. "unknown" when git or the
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
    println!("cargo:rustc-env=WGKV_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
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
