//! The --kv spec grammar and the cache options built from a spec. See `wgkv_fuzz::kv_spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wgkv_fuzz::kv_spec(data);
});
