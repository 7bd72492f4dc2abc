//! Running the `wgkv` binary from CLI tests, and the one-clear-error-line rule.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Run `wgkv args` with `stdin` (None: empty) and collect its output.
pub fn wgkv_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    wgkv_with_stdin_bytes(args, stdin.unwrap_or("").as_bytes())
}

/// `wgkv ARGS` with `stdin` (any bytes) piped in.
pub fn wgkv_with_stdin_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgkv"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let mut child = cmd.spawn().expect("run wgkv");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin); // a process that exits early closes the pipe
    drop(input);
    child.wait_with_output().unwrap()
}

/// Run `wgkv args` with empty stdin.
pub fn wgkv(args: &[&str]) -> Output {
    wgkv_with_stdin(args, None)
}

/// Exit non-zero with exactly one line on stderr that contains `needle`, and no panic.
#[track_caller]
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("wgkv: error: "), "{err}");
    assert!(lines[0].contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
