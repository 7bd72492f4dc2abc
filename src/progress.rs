//! Progress bars on stderr for every long run (fetch, bench, pass key,
//! perplexity, the prefill of a long prompt: `generate::PrefillBar`).
//! indicatif hides them when stderr is not a terminal, so piped output and
//! tests see none.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps drawn with indicatif's `template`
/// (e.g. `"bench {bar:30} {pos}/{len} runs, {elapsed} | {msg}"`).
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
