//! The harness the integration tests share: running our tools and Debian's
//! (the oracle), parsing a dump, blank images, damage, the qemu guest.
//! Each test file uses what it needs of this.
#![allow(dead_code)]

pub mod cache;
pub mod damage;
pub mod damage_cases;
pub mod dump;
pub mod era;
pub mod exec_model;
pub mod kernel;
pub mod kernel_host;
pub mod log_writes;
pub mod nbd;
pub mod oracle;
pub mod pool;
pub mod rng;
pub mod tool;
