//! The `wgkv` command line.

use clap::Parser;

fn main() {
    let cli = wgkv::cli::Cli::parse();
    if let Err(e) = wgkv::cli::run(cli) {
        eprintln!("wgkv: error: {e}");
        std::process::exit(1);
    }
}
