//! Plain-Rust CPU versions of every kernel and of the whole forward pass.
//! Used by tests and `eval --reference`, never by the GPU path.

pub mod attention;
pub mod elementwise;
pub mod evict;
pub mod forward;
pub mod kivi;
pub mod kvquant;
pub mod linear;
pub mod mustafar;
pub mod quest;
pub mod sample;
