//! Kernel launch builders: one function per kernel that fills its params
//! struct, binds its buffers and computes its grid. The model and the tests
//! both go through these, so a kernel's calling convention lives in one place.

pub mod attention;
pub mod attention_batch;
pub mod elementwise;
pub mod evict;
pub mod linear;
pub mod mustafar;
pub mod quest;
pub mod sample;
pub mod tuning;

/// The per-step uniform shared by position-dependent kernels (rope, KV
/// append, attention): written once per forward call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    /// Position of the first token of this call.
    pub pos: u32,
    /// Tokens in this call (1 for decode).
    pub n_tokens: u32,
    /// Cached tokens attended after this call's append (= pos + n_tokens for a dense cache).
    pub kv_len: u32,
    pub _pad: u32,
}

/// Every kernel specialisation the engine can create (for the naga
/// portability test): the union of each family's list.
pub fn all_specs() -> Vec<crate::kernels::Spec> {
    let mut v = Vec::new();
    v.extend(elementwise::specs());
    v.extend(linear::specs());
    v.extend(attention::specs());
    v.extend(attention_batch::specs());
    v.extend(sample::specs());
    v.extend(quest::specs());
    v.extend(mustafar::specs());
    v.extend(evict::specs());
    v
}
