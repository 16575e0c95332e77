//! Tidy: the codebase's shape rules, checked on every test run (TigerBeetle's `tidy.zig`
//! is the model). A rule that only a reviewer remembers is a rule that erodes; each one
//! here fails with the file and line that break it.
//!
//! - no non-test source file over [`MAX_FILE_LINES`] lines (a file's `#[cfg(test)]`
//!   module does not count): a file a newcomer can hold in their head;
//! - no function over [`MAX_FN_LINES`] lines, tests included: a function is one step;
//! - the runtime crate does not depend on axum, hyper, clap or serde_json (the operator
//!   plane and the binaries own HTTP, JSON and flags); the disk crate does not depend on
//!   tokio (storage is synchronous by design);
//! - every library crate's `lib.rs` has a `//! # Layout` section naming each of its
//!   modules.
//!
//! Only direct dependencies are checked: the runtime reaches hyper through the OTLP
//! exporter, and that is telemetry's business.

use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

/// Library crates: each has a `src/lib.rs` with a Layout section.
const LIBRARY_CRATES: &[&str] =
    &["core", "transports", "nodes/disk", "nodes/telemetry", "nodes/runtime", "nodes/operator", "nodes/app", "chaos"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("chaos sits in the workspace root").to_path_buf()
}

/// Every `.rs` file under the `src/` and `tests/` folders of the workspace's crates.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn all_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in LIBRARY_CRATES {
        for sub in ["src", "tests", "benches", "examples"] {
            sources(&root().join(krate).join(sub), &mut files);
        }
    }
    files.sort();
    files
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Lines before the file's test module (`#[cfg(test)]` at the start of a line).
fn non_test_lines(text: &str) -> usize {
    text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count()
}

/// `(line, name, length)` of every function: from its `fn` line to the first line after
/// it that closes a brace at the same indentation. Formatting is rustfmt's, so the
/// indentation of the closing brace is the function's.
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let Some(name) = fn_name(t) else { continue };
        // A declaration without a body (in a trait) ends in `;` before any `{`.
        let opens = lines[i..].iter().position(|l| l.contains('{'));
        let ends_decl = lines[i..].iter().position(|l| l.trim_end().ends_with(';'));
        if opens.is_none() || ends_decl.is_some_and(|d| d < opens.unwrap_or(usize::MAX)) {
            continue;
        }
        // A one-line body (`fn f() { x }`) closes on its own line.
        if t.trim_end().ends_with('}') && t.contains('{') {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        if let Some(len) =
            lines[i + 1..].iter().position(|l| l.trim_end() == close || l.starts_with(&(close.clone() + " ")))
        {
            found.push((i + 1, name, len + 2));
        }
    }
    found
}

/// The function a line declares, if it does (`pub async fn name(`, `fn name<T>(`).
fn fn_name(t: &str) -> Option<String> {
    let mut rest = t;
    for prefix in ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe ", "extern \"C\" "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(name[..end].to_string())
}

#[test]
fn no_source_file_is_over_the_limit() {
    let mut long = Vec::new();
    for f in all_sources().iter().filter(|f| rel(f).contains("/src/")) {
        let n = non_test_lines(&fs::read_to_string(f).expect("readable source"));
        if n > MAX_FILE_LINES {
            long.push(format!("{}: {n} lines before its tests (limit {MAX_FILE_LINES}): split it", rel(f)));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn no_function_is_over_the_limit() {
    let mut long = Vec::new();
    for f in all_sources() {
        for (line, name, len) in functions(&fs::read_to_string(&f).expect("readable source")) {
            if len > MAX_FN_LINES {
                long.push(format!("{}:{line}: fn {name} is {len} lines (limit {MAX_FN_LINES}): split it", rel(&f)));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// The names in the `[dependencies]` table of a crate's Cargo.toml (the target-specific
/// tables too; not dev-dependencies).
fn dependencies(krate: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join(krate).join("Cargo.toml")).expect("the crate's Cargo.toml");
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
        } else if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                deps.push(name.trim().split('.').next().unwrap_or_default().to_string());
            }
        }
    }
    deps
}

#[test]
fn the_runtime_knows_no_http_json_or_flags_and_the_disk_no_tokio() {
    let runtime = dependencies("nodes/runtime");
    assert!(runtime.iter().any(|d| d == "tokio"), "the dependency reader finds the runtime's tokio: {runtime:?}");
    for banned in ["axum", "hyper", "hyper-util", "clap", "serde_json"] {
        assert!(
            !runtime.iter().any(|d| d == banned),
            "nodes/runtime depends on {banned}: that belongs to the operator plane or the app"
        );
    }
    let disk = dependencies("nodes/disk");
    assert!(disk.iter().any(|d| d == "crc32fast"), "the dependency reader finds the disk's crc32fast: {disk:?}");
    assert!(
        !disk.iter().any(|d| d == "tokio"),
        "nodes/disk depends on tokio: storage is synchronous, the runtime owns the async side"
    );
}

#[test]
fn every_library_names_its_modules_in_a_layout_section() {
    let mut missing = Vec::new();
    for krate in LIBRARY_CRATES {
        let path = root().join(krate).join("src/lib.rs");
        let text = fs::read_to_string(&path).expect("lib.rs");
        let doc: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("//!")).collect();
        let Some(at) = doc.iter().position(|l| l.trim() == "# Layout") else {
            missing.push(format!("{}: no `//! # Layout` section", rel(&path)));
            continue;
        };
        let layout = doc[at..].join("\n");
        for line in text.lines() {
            let decl = line.trim_start().strip_prefix("pub ").unwrap_or(line.trim_start());
            let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) else { continue };
            if !layout.contains(&format!("`{name}`")) {
                missing.push(format!("{}: module `{name}` is not named in the Layout section", rel(&path)));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_function_reader_measures_what_it_should() {
    let text = "fn short() {\n    x();\n}\n\npub async fn long() {\n    a();\n    b();\n}\n\ntrait T {\n    fn decl(&self);\n}\n";
    let fns = functions(text);
    assert_eq!(fns, vec![(1, "short".to_string(), 3), (5, "long".to_string(), 4)]);
    assert_eq!(non_test_lines("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
}
