//! Reading the thin metadata XML of `thin_dump` (either established tool's).

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;

/// One tag: name, attributes, and whether it closes (`</x>`).
pub struct Tag {
    pub name: String,
    pub attrs: HashMap<String, String>,
    pub closing: bool,
    pub line: usize,
}

impl Tag {
    pub fn get(&self, key: &str) -> Result<u64> {
        let v = self
            .attrs
            .get(key)
            .ok_or_else(|| anyhow!("line {}: <{}> has no {key} attribute", self.line, self.name))?;
        v.parse()
            .map_err(|_| anyhow!("line {}: {key}=\"{v}\" is not a number", self.line))
    }

    pub fn get_or(&self, key: &str, default: u64) -> Result<u64> {
        if self.attrs.contains_key(key) {
            self.get(key)
        } else {
            Ok(default)
        }
    }
}

/// Splits a document into tags (text between tags is ignored).
pub fn tags(text: &str) -> Result<Vec<Tag>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            line += 1;
        }
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let end = text[i..]
            .find('>')
            .map(|e| i + e)
            .ok_or_else(|| anyhow!("line {line}: unterminated tag"))?;
        let body = &text[i + 1..end];
        line += body.matches('\n').count();
        i = end + 1;
        if body.starts_with('?') || body.starts_with('!') {
            continue;
        }
        let closing = body.starts_with('/');

        let body = body.trim_start_matches('/').trim_end_matches('/');
        let mut parts = body.splitn(2, char::is_whitespace);
        let name = parts.next().unwrap_or_default().to_string();
        let mut attrs = HashMap::new();
        let mut rest = parts.next().unwrap_or_default().trim();
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .with_context(|| format!("line {line}: bad attribute in <{name}>"))?;
            let key = rest[..eq].trim().to_string();
            let after = rest[eq + 1..].trim_start();
            let quote = after
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'')
                .with_context(|| format!("line {line}: unquoted attribute {key}"))?;
            let close = after[1..]
                .find(quote)
                .with_context(|| format!("line {line}: unterminated attribute {key}"))?;
            attrs.insert(key, after[1..1 + close].to_string());
            rest = after[close + 2..].trim_start();
        }
        if name.is_empty() {
            bail!("line {line}: empty tag");
        }
        out.push(Tag {
            name,
            attrs,
            closing,
            line,
        });
    }
    Ok(out)
}
