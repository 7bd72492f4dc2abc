//! One error type for the crate; every message is a single line for the user.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Msg(String),
    #[error("{0}")]
    NoAdapter(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    /// The run's cancel flag (Ctrl-C) was set between two prefill chunks.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Error {
        Error::Msg(m.into())
    }
    pub fn format(path: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Format { path: path.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A name from the file, fit for a one-line error: control characters
/// escaped, at most 80 characters.
pub(crate) fn show(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().nth(80).is_some() {
        out.push_str("...");
    }
    out
}
