//! A GGUF vocabulary or a tokenizer.json folder from the input, then encode / decode. See `wgkv_fuzz::tokenizer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wgkv_fuzz::tokenizer(data);
});
