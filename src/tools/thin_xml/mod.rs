//! The thin metadata XML of `thin_dump`/`thin_restore` (and the text form),
//! as readers and writers of [`thin::ir`] event streams.

mod fast;
mod pipe;
mod read;
mod tags;
mod write;

pub use pipe::parse_in_background;
pub use read::parse;
pub use write::{Counted, HumanWriter, XmlWriter};
