//! era_dump XML (either form) through the parser and restore.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pdt::fuzzing::era_xml(data));
