//! Test helpers for the cache crate.
#![allow(dead_code)]

pub mod audit;
