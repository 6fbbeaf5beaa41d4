//! era metadata (sparse records) through check, dump, invalidate and repair.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pdt::fuzzing::era_metadata(data));
