//! A chat template and messages from the input, rendered. See `wgkv_fuzz::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wgkv_fuzz::template(data);
});
