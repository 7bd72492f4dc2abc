//! A GGUF file: header, metadata getters, tensor data, re-write, config, tokenizer. See `wgkv_fuzz::gguf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wgkv_fuzz::gguf(data);
});
