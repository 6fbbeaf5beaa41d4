//! The tools of the multi-call binary `pdt`, as a library: for the binary
//! itself, for the fuzz targets and for tests.

pub mod fuzzing;
pub mod tools;
