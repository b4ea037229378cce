//! Keeps `docs/` true to the code: every file a chapter names must exist, every `Type::function` or function
//! named after a path must be defined in that file, every test named must exist, and every chapter linked from
//! `docs/README.md` must be there. A rename that forgets the docs fails here.
//!
//! And the other way round: every source file under `src/`, however deep, opens with a `//!` comment that
//! points at its chapter; the crate map in `src/lib.rs` lists every top-level module; every folder's `mod.rs`
//! says what each of its files is for. The docs stand on their own: nothing in them points outside the
//! repository.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (relative to the root), at any depth, in a stable order.
fn files_under(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), &mut out);
    out.sort();
    out
}

/// Every `.rs` file under `dir`, at any depth.
fn rust_files_under(dir: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect()
}

/// A path relative to the root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The opening `//!` block of a source file.
fn header(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
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

/// `src/server/`, `tests/common/`: a folder the docs name.
fn is_code_folder(span: &str) -> bool {
    ["src/", "tests/", "benches/"]
        .iter()
        .any(|p| span.starts_with(p))
        && span.ends_with('/')
        && !span.contains(' ')
}

/// Whether `text` holds `pattern` followed by something that cannot continue an identifier: `fn accept`
/// is not found in `fn accept_and_serve`.
fn has_word(text: &str, pattern: &str) -> bool {
    text.match_indices(pattern).any(|(at, _)| {
        text[at + pattern.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// Whether `file` defines `name` (the last segment of `Type::name`): a function, type, constant, field or
/// variant.
fn defines(source: &str, name: &str) -> bool {
    let last = name.rsplit("::").next().unwrap();
    [
        "fn ", "struct ", "enum ", "const ", "type ", "trait ", "mod ",
    ]
    .iter()
    .any(|kw| has_word(source, &format!("{kw}{last}")))
        || source.contains(&format!("pub {last}:"))
        || source.contains(&format!("    {last}:"))
        || source.contains(&format!("    {last},"))
        || source.contains(&format!("    {last} ="))
        || source.contains(&format!("    {last}("))
        || source.contains(&format!("    {last} {{"))
}

/// Whether `source` declares the type (or trait) `ty`, or implements something for it: where its
/// functions and fields can be.
fn is_home_of(source: &str, ty: &str) -> bool {
    ["struct ", "enum ", "trait ", "type ", "impl ", "for "]
        .iter()
        .any(|kw| has_word(source, &format!("{kw}{ty}")))
}

/// Every Rust source of the crate, its tests, benches and examples, at any depth.
fn sources() -> Vec<String> {
    ["src", "tests", "benches", "examples"]
        .iter()
        .flat_map(|dir| rust_files_under(dir))
        .map(|path| fs::read_to_string(path).unwrap())
        .collect()
}

/// `drive`, `Connection::drive`, `a_test_name`: what may stand for a definition.
fn looks_like_name(span: &str) -> bool {
    !span.is_empty()
        && span
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_identifier_path(span: &str) -> bool {
    span.contains("::")
        && span
            .split("::")
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && span.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// The chapters, and the README at the top of the repository (its layout table names paths too).
fn documents() -> Vec<(String, String)> {
    let mut out = chapters();
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    out.push(("the top README.md".to_string(), readme));
    out
}

#[test]
fn every_file_and_function_the_docs_name_exists() {
    let mut missing = Vec::new();
    let sources = sources();
    let all = sources.join("\n");
    for (chapter, text) in documents() {
        let spans = code_spans(&text);
        for (i, (span, after)) in spans.iter().enumerate() {
            if is_code_folder(span) {
                if !root().join(span).is_dir() {
                    missing.push(format!("{chapter}: folder {span}"));
                }
            } else if is_code_path(span) {
                let path = root().join(span);
                if !path.exists() {
                    missing.push(format!("{chapter}: file {span}"));
                    continue;
                }
                // `src/x.rs` `Type::name`: the name must be defined in that file.
                if let Some((name, _)) = spans.get(i + 1) {
                    let adjacent = after.trim().is_empty();
                    if adjacent && looks_like_name(name) {
                        let source = fs::read_to_string(&path).unwrap_or_default();
                        if !defines(&source, name) {
                            missing.push(format!("{chapter}: {name} in {span}"));
                        }
                    }
                }
            } else if let Some((file, _)) = spans.get(i + 1).filter(|(file, _)| {
                after.trim() == "in" && is_code_path(file) && looks_like_name(span)
            }) {
                // `name` in `tests/x.rs`, as the fault table writes it: the name must be defined in that file
                // (a missing file is reported where it is named).
                let source = fs::read_to_string(root().join(file)).unwrap_or_default();
                if !source.is_empty() && !defines(&source, span) {
                    missing.push(format!("{chapter}: {span} in {file}"));
                }
            } else if is_identifier_path(span) && !span.starts_with("Token") {
                // `Type::name` anywhere: if the crate, its tests or benches have a `Type`, the name must be
                // defined where `Type` is declared or implemented (a type of another crate is not checked).
                let ty = span.split("::").next().unwrap();
                let homes: Vec<&String> = sources.iter().filter(|s| is_home_of(s, ty)).collect();
                if !homes.is_empty() && !homes.iter().any(|s| defines(s, span)) {
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
            if named_as_test && is_fn_name && !all.contains(&format!("fn {span}(")) {
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

/// Every source file's opening `//!` block points back at the chapter that explains it, at any depth of `src/`.
#[test]
fn every_module_points_back_at_its_chapter() {
    let mut missing = Vec::new();
    for path in rust_files_under("src") {
        let source = fs::read_to_string(&path).unwrap();
        let points = header(&source)
            .split('`')
            .any(|span| span.starts_with("docs/") && root().join(span).exists());
        if !points {
            missing.push(shown(&path));
        }
    }
    assert!(
        missing.is_empty(),
        "these modules' //! header names no existing docs/ chapter: {missing:?}"
    );
}

#[test]
fn every_module_opens_with_its_role_and_the_crate_map_lists_it() {
    for path in rust_files_under("src") {
        let source = fs::read_to_string(&path).unwrap();
        assert!(
            source.starts_with("//!"),
            "{} does not open with a //! comment",
            shown(&path)
        );
    }
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let mut unlisted = Vec::new();
    for e in fs::read_dir(root().join("src")).unwrap().flatten() {
        let path = e.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            // `src/bin/` holds the binaries, not a module: the map names it by its path.
            if name == "bin" {
                if !lib.contains("`src/bin/`") {
                    unlisted.push("src/bin/ (as `src/bin/`)".to_string());
                }
                continue;
            }
        } else if path.extension().is_none_or(|x| x != "rs") || name == "lib" {
            continue;
        }
        if !lib.contains(&format!("[`{name}`]")) {
            unlisted.push(name);
        }
    }
    assert!(
        unlisted.is_empty(),
        "the map in src/lib.rs has no line for: {unlisted:?}"
    );
}

/// Whether `text` names the file or folder `name` of a folder: as a link [`name`], or as `name.rs` or
/// `name/` standing as a word of its own (not the tail of a longer name).
fn names_file(text: &str, name: &str) -> bool {
    if text.contains(&format!("[`{name}`]")) {
        return true;
    }
    [format!("{name}.rs"), format!("{name}/")]
        .iter()
        .any(|needle| {
            text.match_indices(needle.as_str()).any(|(at, _)| {
                text[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
            })
        })
}

/// A folder says what its files are for: the `//!` header of each folder's `mod.rs` names every file and
/// folder beside it.
#[test]
fn every_folder_says_what_each_of_its_files_is_for() {
    let mut folders: Vec<PathBuf> = files_under("src")
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "mod.rs"))
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    folders.dedup();
    assert!(
        folders.len() >= 3,
        "expected src/service/, src/server/ and more: {folders:?}"
    );
    let mut missing = Vec::new();
    for folder in folders {
        let module = fs::read_to_string(folder.join("mod.rs")).unwrap();
        let said = header(&module);
        for e in fs::read_dir(&folder).unwrap().flatten() {
            let path = e.path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let is_module = path.is_dir() || path.extension().is_some_and(|x| x == "rs");
            if !is_module || name == "mod" {
                continue;
            }
            if !names_file(&said, &name) {
                missing.push(format!("{}/mod.rs says nothing of {name}", shown(&folder)));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "folders whose mod.rs does not say what a file is for:\n{}",
        missing.join("\n")
    );
}

/// The docs stand on their own: a clone has no `../shared`, so nothing in `docs/` or the README may link
/// or point there.
#[test]
fn the_docs_point_at_nothing_outside_the_repository() {
    let mut files = files_under("docs");
    files.push(root().join("README.md"));
    let mut found = Vec::new();
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if ["../shared", "shared/seeds"]
                .iter()
                .any(|p| line.contains(p))
            {
                found.push(format!("{}:{}: {}", shown(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the docs point outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn names_file_wants_the_name_itself() {
    assert!(names_file("see [`upper`] for", "upper"));
    assert!(names_file("(`clock.rs`)", "clock"));
    assert!(names_file("in reactor/ the loop", "reactor"));
    assert!(!names_file("see `hello.rs`", "lo"));
    assert!(!names_file("[`conformance::check`]", "conformance"));
}
