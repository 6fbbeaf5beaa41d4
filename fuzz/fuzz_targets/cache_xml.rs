//! cache_dump XML through the parser and restore.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pdt::fuzzing::cache_xml(data));
