//! Typed access to a tag's attributes; every complaint names the line, the
//! tag and the attribute, the same way for every schema.

use super::escape::unescape_attr;
use super::tokenizer::{parse_u64, Tag};
use anyhow::{anyhow, Error, Result};

impl<'a> Tag<'a> {
    /// "<tag> has no KEY attribute".
    pub fn missing(&self, key: &[u8]) -> Error {
        anyhow!(
            "line {}: <{}> has no {} attribute",
            self.line,
            self.name_str(),
            String::from_utf8_lossy(key)
        )
    }

    /// "KEY="V" in <tag> is not a number".
    pub fn not_a_number(&self, key: &[u8], v: &[u8]) -> Error {
        anyhow!(
            "line {}: {}=\"{}\" in <{}> is not a number",
            self.line,
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(v),
            self.name_str()
        )
    }

    /// "unexpected <tag> PLACE" (or `</tag>`): a tag where the schema has
    /// no room for it.
    pub fn unexpected(&self, place: &str) -> Error {
        let name = self.name_str();
        let tag = if self.kind() == super::tokenizer::Kind::Close {
            format!("</{name}>")
        } else {
            format!("<{name}>")
        };
        anyhow!("line {}: unexpected {tag} {place}", self.line)
    }

    /// The raw value of attribute `key`, which must be there.
    pub fn required(&self, key: &str) -> Result<&'a [u8]> {
        self.attr(key.as_bytes())
            .ok_or_else(|| self.missing(key.as_bytes()))
    }

    /// `v`, the value of attribute `key`, as a number.
    pub fn number(&self, key: &str, v: &[u8]) -> Result<u64> {
        parse_u64(v).ok_or_else(|| self.not_a_number(key.as_bytes(), v))
    }

    /// Attribute `key` as a number; it must be there.
    pub fn num(&self, key: &str) -> Result<u64> {
        self.number(key, self.required(key)?)
    }

    /// Attribute `key` as a number, `default` when absent.
    pub fn num_or(&self, key: &str, default: u64) -> Result<u64> {
        match self.attr(key.as_bytes()) {
            Some(v) => self.number(key, v),
            None => Ok(default),
        }
    }

    /// Attribute `key` as a number, None when absent.
    pub fn num_opt(&self, key: &str) -> Result<Option<u64>> {
        self.attr(key.as_bytes())
            .map(|v| self.number(key, v))
            .transpose()
    }

    /// `v`, read from attribute `key`, narrowed to 32 bits.
    pub fn num32(&self, key: &str, v: u64) -> Result<u32> {
        u32::try_from(v).map_err(|_| anyhow!("line {}: {key}=\"{v}\" is too large", self.line))
    }

    /// Attribute `key` as text, entities decoded (invalid UTF-8 replaced);
    /// empty when absent.
    pub fn text(&self, key: &str) -> String {
        let raw = self.attr(key.as_bytes()).unwrap_or_default();
        String::from_utf8_lossy(&unescape_attr(raw)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::Tokenizer;

    #[test]
    fn typed_attributes_and_complaints() {
        let xml = "\n<t a=\"5\" b=\"x\" big=\"4294967296\" s=\"x &amp; &lt;y&gt;\"/>";
        let mut tokens = Tokenizer::new(xml.as_bytes());
        let t = tokens.next_tag().unwrap().unwrap();
        assert_eq!(t.num("a").unwrap(), 5);
        assert_eq!(t.num_or("c", 7).unwrap(), 7);
        assert_eq!(t.num_opt("c").unwrap(), None);
        assert_eq!(t.num_opt("a").unwrap(), Some(5));
        assert_eq!(t.text("s"), "x & <y>");
        assert_eq!(t.text("c"), "");
        assert_eq!(
            t.num("b").unwrap_err().to_string(),
            "line 2: b=\"x\" in <t> is not a number"
        );
        assert_eq!(
            t.num("c").unwrap_err().to_string(),
            "line 2: <t> has no c attribute"
        );
        let big = t.num("big").unwrap();
        assert_eq!(
            t.num32("big", big).unwrap_err().to_string(),
            "line 2: big=\"4294967296\" is too large"
        );
    }
}
