//! The engine's modules form layers that only call downward (lib.rs): every
//! `crate::module` a library file names is on a lower layer than its own.
//! Test code (`mod tests`, `tests.rs`, `test_util.rs`) may reach anywhere.

use std::path::{Path, PathBuf};

/// Layer of each top-level module; a module may name only lower layers
/// (or itself). Modules on the same layer do not know each other.
const LAYERS: &[(&str, u32)] = &[
    ("checksum", 0),
    ("error", 0),
    ("progress", 0),
    ("io", 1),
    ("block_manager", 2),
    ("tm_ops", 3),
    ("superblock", 3),
    ("btree", 4),
    ("array", 5),
    ("space_map", 5),
    ("pack", 5),
    ("bitset", 6),
    ("transaction_manager", 7),
    ("build", 7),
    ("check", 7),
    ("live", 8),
    ("audit", 8),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("reading the source tree") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules a piece of source names as `crate::m` or `crate::{m, ..}`
/// (lower-case names only: `crate::{Block, Result}` are root items).
fn named_modules(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![rest]
        };
        for n in names {
            let n = n.trim();
            let ident: String = n
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if ident.starts_with(|c: char| c.is_ascii_lowercase()) && ident != "self" {
                out.push(ident);
            }
        }
    }
    out
}

#[test]
fn library_files_only_name_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if rel == Path::new("lib.rs") || name == "tests.rs" || name == "test_util.rs" {
            continue;
        }
        let own = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("a module name");
        let own_layer = layer(&own).unwrap_or_else(|| panic!("{own} has no layer in LAYERS"));
        let text = std::fs::read_to_string(&f).expect("reading a source file");
        let library = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or("");
        for m in named_modules(library) {
            if m == own {
                continue;
            }
            match layer(&m) {
                Some(l) if l < own_layer => {}
                _ => wrong.push(format!("{} names crate::{m}", rel.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or sideways imports:\n{}",
        wrong.join("\n")
    );
}
