// The per-call step uniform (src/ops/mod.rs `Step`), prepended to every kernel:
// pos = position of the call's first token, n_tokens = tokens in the call,
// kv_len = cached slots attended after the call's append.
struct Step { pos: u32, n_tokens: u32, kv_len: u32, _pad: u32 }
