//! Thin's metadata XML schema for `thin_dump`/`thin_restore` (and the text
//! form), as readers and writers of [`thin::ir`] event streams, over the
//! generic XML layer ([`crate::tools::xml`]).

mod fast;
mod human;
mod read;
mod write;

pub use human::HumanWriter;
pub use read::{parse, parse_in_background};
pub use write::XmlWriter;
