//! Thin metadata images (sparse records, see pdt::fuzzing) through check and dump.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pdt::fuzzing::thin_metadata(data));
