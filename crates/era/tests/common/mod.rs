//! Test helpers for the era crate.
#![allow(dead_code)]

pub mod audit;
