//! Cache's metadata XML schema for `cache_dump`/`cache_restore`, as readers
//! and writers of [`cache::ir`] event streams, over the generic XML layer
//! ([`crate::tools::xml`]).

mod read;
mod write;

pub use read::{parse, parse_in_background};
pub use write::XmlWriter;
