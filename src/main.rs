//! The `wgkv` command line.

use clap::Parser;
use clap::error::ErrorKind;

fn main() {
    // A closed stdout (`wgkv tokenize ... | head`) ends the process quietly,
    // as for any Unix filter, instead of failing a print.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    quiet_wayland_probe();
    let cli = match wgkv::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // clap's message without its usage block: one line, like every other error.
            let text = e.render().to_string();
            let first = text.trim().split("\n\n").next().unwrap_or("error: invalid arguments");
            eprintln!("wgkv: {} (see wgkv --help)", first.split_whitespace().collect::<Vec<_>>().join(" "));
            std::process::exit(2);
        }
    };
    if let Err(e) = wgkv::cli::run(cli) {
        eprintln!("wgkv: error: {e}");
        std::process::exit(1);
    }
}

/// Vulkan drivers probe for a Wayland compositor while wgpu lists adapters;
/// on a headless machine without `XDG_RUNTIME_DIR` libwayland then prints
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." for a
/// window wgkv never opens. With no runtime folder no compositor can be
/// reached, so the probe is pointed at an absolute socket path that does not
/// exist: it fails the same way, silently.
fn quiet_wayland_probe() {
    let unset = |k: &str| std::env::var_os(k).is_none_or(|v| v.is_empty());
    if unset("XDG_RUNTIME_DIR") && unset("WAYLAND_DISPLAY") && unset("WAYLAND_SOCKET") {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("WAYLAND_DISPLAY", "/nonexistent/wgkv-headless/wayland-0") };
    }
}
