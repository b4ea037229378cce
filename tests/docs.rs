//! Keeps `docs/` true to the code: every file a chapter names must exist, every `Type::function` or function
//! named after a path must be defined in that file, every test named must exist, and every chapter linked from
//! `docs/README.md` must be there. A rename that forgets the docs fails here.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chapters() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The spans between backticks, in order, each with the text that follows it up to the next backtick.
fn code_spans(text: &str) -> Vec<(String, String)> {
    let parts: Vec<&str> = text.split('`').collect();
    parts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(i, span)| {
            (
                span.to_string(),
                parts.get(i + 1).copied().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn is_code_path(span: &str) -> bool {
    ["src/", "tests/", "benches/"]
        .iter()
        .any(|p| span.starts_with(p))
        && [".rs", ".sh"].iter().any(|e| span.ends_with(e))
        && !span.contains(' ')
}

/// Whether `file` defines `name` (the last segment of `Type::name`): a function, type, constant or field.
fn defines(source: &str, name: &str) -> bool {
    let last = name.rsplit("::").next().unwrap();
    [
        "fn ", "struct ", "enum ", "const ", "type ", "trait ", "mod ",
    ]
    .iter()
    .any(|kw| source.contains(&format!("{kw}{last}")))
        || source.contains(&format!("pub {last}:"))
        || source.contains(&format!("    {last}:"))
        || source.contains(&format!("    {last},"))
        || source.contains(&format!("    {last} ="))
        || source.contains(&format!("    {last}("))
}

fn all_sources() -> String {
    let mut all = String::new();
    for dir in ["src", "src/bin", "tests", "tests/common", "benches"] {
        let Ok(entries) = fs::read_dir(root().join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "rs") {
                all.push_str(&fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    all
}

fn is_identifier_path(span: &str) -> bool {
    span.contains("::")
        && span
            .split("::")
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && span.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

#[test]
fn every_file_and_function_the_docs_name_exists() {
    let mut missing = Vec::new();
    let sources = all_sources();
    for (chapter, text) in chapters() {
        let spans = code_spans(&text);
        for (i, (span, after)) in spans.iter().enumerate() {
            if is_code_path(span) {
                let path = root().join(span);
                if !path.exists() {
                    missing.push(format!("{chapter}: file {span}"));
                    continue;
                }
                // `src/x.rs` `Type::name`: the name must be defined in that file.
                if let Some((name, _)) = spans.get(i + 1) {
                    let adjacent = after.trim().is_empty();
                    let looks_like_name = !name.contains('/')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                    if adjacent && looks_like_name && !name.is_empty() {
                        let source = fs::read_to_string(&path).unwrap_or_default();
                        if !defines(&source, name) {
                            missing.push(format!("{chapter}: {name} in {span}"));
                        }
                    }
                }
            } else if is_identifier_path(span)
                && !span.starts_with("Token")
                && !defines(&sources, span)
            {
                // `Type::name` anywhere: defined somewhere in the crate, its tests or benches.
                let ty = span.split("::").next().unwrap();
                let known_type = sources.contains(&format!("struct {ty}"))
                    || sources.contains(&format!("enum {ty}"));
                if known_type {
                    missing.push(format!("{chapter}: {span}"));
                }
            }
        }
        // "test `name`" and "tests `a`, `b`": the test functions must exist.
        for (i, (span, _)) in spans.iter().enumerate() {
            let before = text.split('`').nth(2 * i).unwrap_or("");
            let tail = before.trim_end();
            let named_as_test = tail.ends_with("test") || tail.ends_with("tests");
            let is_fn_name = span
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if named_as_test && is_fn_name && !sources.contains(&format!("fn {span}(")) {
                missing.push(format!("{chapter}: test {span}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs name things the code does not have:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_chapter_linked_from_the_index_exists() {
    let index = fs::read_to_string(root().join("docs/README.md")).unwrap();
    let mut missing = Vec::new();
    for piece in index.split("](").skip(1) {
        let target = piece.split(')').next().unwrap();
        if !target.contains("://") && !Path::new(&root().join("docs").join(target)).exists() {
            missing.push(target.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/README.md links to missing chapters: {missing:?}"
    );
}

/// Every source file's opening `//!` block points back at the chapter that explains it.
#[test]
fn every_module_points_back_at_its_chapter() {
    let mut missing = Vec::new();
    for dir in ["src", "src/bin", "src/stress"] {
        for e in fs::read_dir(root().join(dir)).unwrap().flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let source = fs::read_to_string(&path).unwrap();
            let header: String = source
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            let points = header
                .split('`')
                .any(|span| span.starts_with("docs/") && root().join(span).exists());
            if !points {
                missing.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these modules' //! header names no existing docs/ chapter: {missing:?}"
    );
}

#[test]
fn every_module_opens_with_its_role_and_the_crate_map_lists_it() {
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    for e in fs::read_dir(root().join("src")).unwrap().flatten() {
        let path = e.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|x| x != "rs") || name == "lib" {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap();
        assert!(
            source.starts_with("//!"),
            "src/{name}.rs does not open with a //! comment"
        );
        assert!(
            lib.contains(&format!("[`{name}`]")),
            "the map in src/lib.rs has no line for {name}"
        );
    }
}
