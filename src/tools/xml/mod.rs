//! The XML layer every client's tools share, knowing no schema: a streaming
//! tokenizer with typed attribute access and a fast path for fixed-layout
//! tags, a buffered writer that escapes attribute text, and the pipe that
//! parses on a second thread. Each client's schema (its tags, its events)
//! sits on top, in the client's folder.

mod attr;
pub mod base64;
mod escape;
pub mod fast;
mod pipe;
mod tokenizer;
mod writer;

pub use escape::{escape_attr, unescape_attr};
pub use pipe::{parse_in_background, parse_lines_in_background, Batcher};
pub use tokenizer::{parse_u64, Kind, Tag, Tokenizer};
pub use writer::XmlOut;
