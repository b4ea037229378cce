//! Keeps `docs/` true to the code: every file a chapter names must exist, every `Type::function` or function
//! named after a path must be defined in that file, every test named must exist, and every chapter linked from
//! `docs/README.md` must be there. A rename that forgets the docs fails here.
//!
//! And the other way round: every source file under `src/`, however deep, opens with a `//!` comment that
//! points at its chapter; the crate map in `src/lib.rs` lists every top-level module; every folder's `mod.rs`
//! says what each of its files is for (a service's file is said for by its line in `services!`). The docs
//! stand on their own: nothing in them points outside the repository. And the library's unsafe code is all
//! in the OS layer, `src/sys/`.
//!
//! No list of the services is kept by hand without a check (issue 25): a list meant to name every service is
//! marked `<!-- services -->` and must name each one in `Service::ALL`, and any other sentence that names three
//! or more, or a choice of them (`upper|echo`), fails until it is marked or names fewer. A new service fails
//! here until every marked list names it.

use std::fs;
use std::path::{Path, PathBuf};

use socklab::service::Service;

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

/// Where the code is: the crate's folders, the fuzz crate's, and the build script.
const CODE_FOLDERS: [&str; 4] = ["src/", "tests/", "benches/", "fuzz/"];

fn is_code_path(span: &str) -> bool {
    span == "build.rs"
        || CODE_FOLDERS.iter().any(|p| span.starts_with(p))
            && [".rs", ".sh", ".md"].iter().any(|e| span.ends_with(e))
            && !span.contains(' ')
}

/// `src/server/`, `tests/common/`: a folder the docs name.
fn is_code_folder(span: &str) -> bool {
    CODE_FOLDERS.iter().any(|p| span.starts_with(p)) && span.ends_with('/') && !span.contains(' ')
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

/// The modules a `mod.rs` lists in its `services!` call (`Upper => upper::Upper,`), in order: `src/service/`'s.
/// That line is the service's whole registration, and it says what the file is for.
fn listed_in_services(module: &str) -> Vec<String> {
    let Some(start) = module.find("\nservices! {") else {
        return Vec::new();
    };
    let call = &module[start + 1..];
    let call = &call[..call.find("\n}").unwrap_or(call.len())];
    call.lines()
        .filter_map(|line| line.split_once("=>"))
        .filter_map(|(_, path)| path.trim().split_once("::"))
        .map(|(module, _)| module.trim().to_string())
        .collect()
}

/// A folder says what its files are for: the `//!` header of each folder's `mod.rs` names every file and
/// folder beside it, but for a service's, which its line in the `services!` call stands for (issue 25: a
/// learner adding a service had to edit the module comment too, and chapter 10 did not say so).
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
        let services = listed_in_services(&module);
        for e in fs::read_dir(&folder).unwrap().flatten() {
            let path = e.path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let is_module = path.is_dir() || path.extension().is_some_and(|x| x == "rs");
            if !is_module || name == "mod" || services.contains(&name) {
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

/// The library's unsafe code is all in the OS layer, where each block says why it is sound (clippy's
/// `undocumented_unsafe_blocks`, denied in Cargo.toml, checks the saying), and in the one driver that must
/// share memory with the kernel while an operation is under way: `--mode uring` (`src/server/uring/`).
#[test]
fn every_unsafe_block_of_the_library_is_in_the_os_layer() {
    let mut found = Vec::new();
    for path in rust_files_under("src") {
        if path.starts_with(root().join("src/sys"))
            || path.starts_with(root().join("src/server/uring"))
        {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if ["unsafe {", "unsafe fn", "unsafe impl"]
                .iter()
                .any(|u| code.contains(u))
            {
                found.push(format!("{}:{}: {}", shown(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "unsafe code outside src/sys/:\n{}",
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

// ---- Lists of the services (issue 25) ----
//
// A list kept by hand goes stale when a service is added: chapter 7 once said "three services" after a
// fourth, and the README's `--service` row fell behind the code. So a list meant to name every service is
// marked, and the mark is checked against `Service::ALL`; and a sentence that looks like such a list
// (three or more services, a choice of them, a count of them) fails until it is marked or names fewer.

/// The mark that says "this names every service": on a line of its own right before what it marks (a
/// paragraph, a bulleted list, a table, a fenced block), or inside the one line it marks (a table row,
/// where a line of its own would end the table).
const SERVICES_MARK: &str = "<!-- services -->";

/// Whether a line carries the mark in its text, not as code (`` `<!-- services -->` `` names the mark).
fn carries_mark(line: &str) -> bool {
    line.split('`')
        .step_by(2)
        .any(|text| text.contains(SERVICES_MARK))
}

/// Every service: its name on the command line and its module (`http-floor`, `http_floor`), in order.
fn services() -> Vec<(String, String)> {
    let registry = fs::read_to_string(root().join("src/service/mod.rs")).unwrap();
    let modules = listed_in_services(&registry);
    assert_eq!(
        modules.len(),
        Service::ALL.len(),
        "the services! call as read from src/service/mod.rs: {modules:?}"
    );
    Service::ALL
        .iter()
        .map(|s| s.name().to_string())
        .zip(modules)
        .collect()
}

/// The service a word stands for, if any: `upper`, `http-floor`, `http_floor.rs`, `src/service/http/`.
fn service_of<'a>(word: &str, services: &'a [(String, String)]) -> Option<&'a str> {
    let word = word.trim();
    let word = word.strip_prefix("src/service/").unwrap_or(word);
    let word = word
        .strip_suffix(".rs")
        .or_else(|| word.strip_suffix('/'))
        .unwrap_or(word);
    services
        .iter()
        .find(|(name, module)| word == name || word == module)
        .map(|(name, _)| name.as_str())
}

/// What a piece of the docs names.
#[derive(Debug, Default)]
struct Named {
    /// The services it names, each once, in order.
    services: Vec<String>,
    /// Each choice that offers a service (`upper|echo|hello`), as its words.
    choices: Vec<Vec<String>>,
    /// `--service X` or `--expect X` where `X` is no service.
    unknown: Vec<String>,
}

/// What `text` names: in prose, its code spans (`upper`, `--service upper`, `upper\|echo`, `upper.rs`); in
/// a fenced block, only choices (`--expect upper|echo`), since code names things for other reasons.
fn named(text: &str, code: bool, services: &[(String, String)]) -> Named {
    let words: Vec<String> = if code {
        text.split_whitespace()
            .map(|w| w.trim_matches(|c| "[](){},;".contains(c)).to_string())
            .filter(|w| w.contains('|'))
            .collect()
    } else {
        code_spans(text).into_iter().map(|(span, _)| span).collect()
    };
    let mut out = Named::default();
    let add = |out: &mut Named, service: &str| {
        if !out.services.iter().any(|s| s == service) {
            out.services.push(service.to_string());
        }
    };
    for word in words {
        let word = word.replace("\\|", "|");
        let (flag, value) = match word.split_once(' ') {
            Some((flag, value)) if flag.starts_with("--") => (flag, value.trim()),
            _ => ("", word.as_str()),
        };
        if value.contains('|') {
            let parts: Vec<String> = value.split('|').map(|p| p.trim().to_string()).collect();
            let offered: Vec<&str> = parts
                .iter()
                .filter_map(|p| service_of(p, services))
                .collect();
            if !offered.is_empty() {
                for service in offered {
                    add(&mut out, service);
                }
                out.choices.push(parts);
            }
        } else if let Some(service) = service_of(value, services) {
            add(&mut out, service);
        } else if ["--service", "--expect"].contains(&flag)
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            out.unknown.push(word.clone());
        }
    }
    out
}

/// The sentences of a run of prose, each with the line it starts on: cut after `.`, `!` or `?` followed by
/// white space, outside code spans.
fn sentences(text: &str, first_line: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut push = |from: usize, to: usize| {
        let sentence = &text[from..to];
        if !sentence.trim().is_empty() {
            let lead = sentence.len() - sentence.trim_start().len();
            let line = first_line + text[..from + lead].matches('\n').count();
            out.push((line, sentence.trim().to_string()));
        }
    };
    let mut start = 0;
    let mut in_code = false;
    for (at, c) in text.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '.' | '!' | '?'
                if !in_code
                    && text[at + 1..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace) =>
            {
                push(start, at + 1);
                start = at + 1;
            }
            _ => {}
        }
    }
    push(start, text.len());
    out
}

/// The cells of a table row; a `\|` inside a cell does not end it.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut previous = ' ';
    for c in row.chars() {
        if c == '|' && previous != '\\' {
            out.push(std::mem::take(&mut cell));
        } else {
            cell.push(c);
        }
        previous = c;
    }
    out.push(cell);
    out.retain(|c| !c.trim().is_empty());
    out
}

/// A document cut for the list checks: what a mark covers, and everything else in statements (a sentence,
/// a heading, a table cell, a fenced block), each with the line it starts on and whether it is code.
#[derive(Debug, Default)]
struct Cut {
    marked: Vec<(usize, String, bool)>,
    statements: Vec<(usize, String, bool)>,
    /// Marks with nothing right after them.
    stray: Vec<usize>,
}

fn cut_for_lists(text: &str) -> Cut {
    let lines: Vec<&str> = text.lines().collect();
    let is_fence = |line: &str| line.trim_start().starts_with("```");
    let mut cut = Cut::default();
    let mut mark: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() == SERVICES_MARK || line.trim().is_empty() {
            if let Some(stray) = mark.take() {
                cut.stray.push(stray);
            }
            if line.trim() == SERVICES_MARK {
                mark = Some(i + 1);
            }
            i += 1;
            continue;
        }
        if is_fence(line) {
            let end = (i + 1..lines.len())
                .find(|&j| is_fence(lines[j]))
                .unwrap_or(lines.len());
            let piece = (i + 1, lines[i + 1..end].join("\n"), true);
            if mark.take().is_some() {
                cut.marked.push(piece);
            } else {
                cut.statements.push(piece);
            }
            i = end + 1;
            continue;
        }
        // A block: the lines up to a blank line, a fence or a mark.
        let end = (i..lines.len())
            .find(|&j| {
                lines[j].trim().is_empty() || is_fence(lines[j]) || lines[j].trim() == SERVICES_MARK
            })
            .unwrap_or(lines.len());
        if mark.take().is_some() {
            cut.marked.push((i + 1, lines[i..end].join("\n"), false));
            i = end;
            continue;
        }
        let mut prose = String::new();
        let mut prose_line = i + 1;
        for (j, line) in lines.iter().enumerate().take(end).skip(i) {
            let t = line.trim_start();
            let item = t.starts_with("- ")
                || t.starts_with("* ")
                || t.split_once(". ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            let alone = carries_mark(line) || t.starts_with('#') || t.starts_with('|');
            if item || alone {
                cut.statements.extend(
                    sentences(&prose, prose_line)
                        .into_iter()
                        .map(|(l, s)| (l, s, false)),
                );
                prose.clear();
            }
            if carries_mark(line) {
                cut.marked.push((j + 1, line.to_string(), false));
            } else if t.starts_with('|') {
                cut.statements
                    .extend(cells(t).into_iter().map(|cell| (j + 1, cell, false)));
            } else if t.starts_with('#') {
                cut.statements.push((j + 1, t.to_string(), false));
            } else {
                if prose.is_empty() {
                    prose_line = j + 1;
                } else {
                    prose.push('\n');
                }
                prose.push_str(line);
            }
        }
        cut.statements.extend(
            sentences(&prose, prose_line)
                .into_iter()
                .map(|(l, s)| (l, s, false)),
        );
        i = end;
    }
    cut.stray.extend(mark);
    cut
}

/// `three services`, `5 services`: a count that goes stale.
fn counts_the_services(text: &str) -> Option<String> {
    const NUMBERS: [&str; 11] = [
        "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    ];
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words
        .windows(2)
        .find(|w| {
            w[1] == "services"
                && (NUMBERS.contains(&w[0].as_str()) || w[0].chars().all(|c| c.is_ascii_digit()))
        })
        .map(|w| w.join(" "))
}

fn quoted(names: &[impl AsRef<str>]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with the lists of services in one document, and how many marked lists it has.
fn list_problems(
    document: &str,
    text: &str,
    services: &[(String, String)],
) -> (usize, Vec<String>) {
    let cut = cut_for_lists(text);
    let mut problems: Vec<String> = cut
        .stray
        .iter()
        .map(|line| {
            format!("{document}:{line}: a {SERVICES_MARK} mark with no list right after it")
        })
        .collect();
    let all: Vec<&str> = services.iter().map(|(name, _)| name.as_str()).collect();
    for (line, piece, code) in &cut.marked {
        let named = named(piece, *code, services);
        let missing: Vec<&str> = all
            .iter()
            .copied()
            .filter(|s| !named.services.iter().any(|n| n == s))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{document}:{line}: the list marked {SERVICES_MARK} does not name {}",
                quoted(&missing)
            ));
        }
        for choice in &named.choices {
            let unknown: Vec<&String> = choice
                .iter()
                .filter(|w| service_of(w, services).is_none())
                .collect();
            let absent: Vec<&str> = all
                .iter()
                .copied()
                .filter(|s| !choice.iter().any(|w| service_of(w, services) == Some(*s)))
                .collect();
            if !unknown.is_empty() {
                problems.push(format!(
                    "{document}:{line}: the choice `{}` offers {}, which is no service",
                    choice.join("|"),
                    quoted(&unknown)
                ));
            }
            if !absent.is_empty() {
                problems.push(format!(
                    "{document}:{line}: the choice `{}` is without {}",
                    choice.join("|"),
                    quoted(&absent)
                ));
            }
        }
        for word in &named.unknown {
            problems.push(format!("{document}:{line}: `{word}` names no service"));
        }
    }
    for (line, statement, code) in &cut.statements {
        let named = named(statement, *code, services);
        let choice = named.choices.iter().find(|c| {
            c.iter()
                .filter(|w| service_of(w, services).is_some())
                .count()
                >= 2
        });
        if let Some(choice) = choice {
            problems.push(format!(
                "{document}:{line}: `{}` is a list of services kept by hand: mark it {SERVICES_MARK}, so that \
                 a new service fails until it is added",
                choice.join("|")
            ));
        } else if !code && named.services.len() >= 3 {
            problems.push(format!(
                "{document}:{line}: one sentence names {}: a list goes stale when a service is added. Name \
                 fewer, or mark the list {SERVICES_MARK} and name every service",
                quoted(&named.services)
            ));
        } else if let Some(count) = counts_the_services(statement).filter(|_| !code) {
            problems.push(format!(
                "{document}:{line}: \"{count}\" goes stale when a service is added: say \"every service\", or \
                 mark a list"
            ));
        }
    }
    (cut.marked.len(), problems)
}

/// No hand-kept list of the services goes stale (issue 25): every list marked `<!-- services -->` in the
/// README and `docs/` names every service in `Service::ALL` (and offers no other as one), and no unmarked
/// sentence names three or more, offers a choice of them, or counts them. Adding a service fails here
/// until each marked list names it.
#[test]
fn every_list_of_the_services_is_marked_and_names_each_one() {
    let services = services();
    let mut documents: Vec<(String, String)> = chapters()
        .into_iter()
        .map(|(name, text)| (format!("docs/{name}"), text))
        .collect();
    documents.push((
        "README.md".to_string(),
        fs::read_to_string(root().join("README.md")).unwrap(),
    ));
    let mut marked = 0;
    let mut problems = Vec::new();
    for (document, text) in &documents {
        let (lists, found) = list_problems(document, text, &services);
        marked += lists;
        problems.extend(found);
    }
    assert!(
        problems.is_empty(),
        "lists of the services in the docs:\n{}",
        problems.join("\n")
    );
    // The README's and chapter 9's `--service` rows and chapter 7's UDP paragraph, at least.
    assert!(
        marked >= 3,
        "only {marked} lists are marked {SERVICES_MARK}"
    );
}

#[test]
fn the_list_check_sees_what_it_looks_for() {
    let services: Vec<(String, String)> = [
        ("upper", "upper"),
        ("echo", "echo"),
        ("hello", "hello"),
        ("http-floor", "http_floor"),
    ]
    .iter()
    .map(|(n, m)| (n.to_string(), m.to_string()))
    .collect();
    let check = |text: &str| list_problems("t.md", text, &services).1;
    // A marked list names every service: one added (`http-floor` here) fails until the list names it.
    let stale = "Intro.\n\n<!-- services -->\n`upper`, `echo` and `hello` answer datagrams.\n";
    let found = check(stale);
    assert!(
        found.len() == 1 && found[0].starts_with("t.md:4: ") && found[0].contains("`http-floor`"),
        "{found:?}"
    );
    assert_eq!(
        check("<!-- services -->\n`upper`, `echo` and `hello` answer datagrams; `http-floor.rs` does not.\n"),
        Vec::<String>::new()
    );
    // A table row carries its mark inside; a marked choice offers every service and nothing else.
    let row = "| `--service upper\\|echo\\|hello` <!-- services --> | `upper` | what a request becomes |\n";
    assert!(check(row)
        .iter()
        .any(|p| p.contains("is without `http-floor`")));
    let row = "| `--service upper\\|echo\\|hello\\|http-floor\\|shout` <!-- services --> | x |\n";
    assert!(check(row).iter().any(|p| p.contains("offers `shout`")));
    let marked = "<!-- services -->\n```text\nclient [--expect upper|echo|hello|http-floor]\n```\n";
    assert_eq!(check(marked), Vec::<String>::new());
    // Unmarked: two names to a sentence pass; three, a choice of two, or a count fail.
    assert_eq!(
        check("Both `upper` and `echo` answer bytes. `hello` frames lines.\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        check("`upper`, `echo` and\n`hello` answer datagrams.\n").len(),
        1
    );
    assert_eq!(
        check("| `--expect upper\\|echo` | `upper` | x |\n").len(),
        1
    );
    assert_eq!(
        check("```text\nclient [--expect upper|echo]\n```\n").len(),
        1
    );
    assert_eq!(check("- The three services differ.\n").len(), 1);
    assert_eq!(
        check("One file each: `upper.rs`, `echo.rs`, `src/service/http_floor.rs`.\n").len(),
        1
    );
    // A table's cells are statements of their own.
    assert_eq!(
        check("| `--expect` | `upper` | `echo`, or `hello` |\n"),
        Vec::<String>::new()
    );
    // A mark with nothing right after it is a mistake; a mark shown as code is no mark.
    assert_eq!(check("<!-- services -->\n\nText.\n").len(), 1);
    assert_eq!(
        check("Mark a list `<!-- services -->`: `upper` and `echo`.\n"),
        Vec::<String>::new()
    );
}
