//! A safetensors file: JSON header and tensor data. See `wgkv_fuzz::safetensors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wgkv_fuzz::safetensors(data);
});
