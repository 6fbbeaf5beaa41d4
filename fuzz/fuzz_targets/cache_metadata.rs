//! Cache metadata images (sparse records, see pdt::fuzzing) through check, dump and repair.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pdt::fuzzing::cache_metadata(data));
