//! Progress bars on stderr for every long run (fetch, bench, pass key,
//! perplexity, the prefill of a long prompt). indicatif hides them when
//! stderr is not a terminal, so piped output and tests see none.

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

/// Prompts at least this long show a prefill bar in `generate` and `chat`.
pub const PREFILL_BAR_TOKENS: usize = 1024;

/// A prefill bar for a prompt of `n` tokens on `model` (none for short
/// prompts): the model reports each chunk; `done` clears it.
pub struct PrefillBar<'m> {
    model: &'m mut crate::model::Model,
    bar: Option<ProgressBar>,
}

impl<'m> PrefillBar<'m> {
    pub fn new(model: &'m mut crate::model::Model, n: usize) -> PrefillBar<'m> {
        let bar = (n >= PREFILL_BAR_TOKENS).then(|| {
            let b = bar(n as u64, "prefill {bar:30} {pos}/{len} tokens, {elapsed}");
            let report = b.clone();
            model.on_prefill = Some(Box::new(move |done, all| match done < all {
                true => report.set_position(done as u64),
                false => report.finish_and_clear(),
            }));
            b
        });
        PrefillBar { model, bar }
    }

    /// The model, to run the prompt on.
    pub fn model(&mut self) -> &mut crate::model::Model {
        self.model
    }
}

impl Drop for PrefillBar<'_> {
    fn drop(&mut self) {
        self.model.on_prefill = None;
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
