#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| exhook_fuzz::replies(data));
