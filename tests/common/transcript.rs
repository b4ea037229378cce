//! Sample sessions in the docs, checked against what the real binaries print. A block in a markdown file is
//! marked by the line `<!-- transcript: NAME -->` just before it (an indented block, or a fenced one). A
//! test produces the session NAME from the real server and clients, and [`check`] compares the two after
//! normalising what rightly varies from run to run: timestamps, ports, durations, turn numbers, byte counts
//! and the open-file limit. What is compared is the session's story: each distinct event (a stage and what
//! it did) in the order it first happens. How many times a burst was read, or how many turns a slow reader
//! took to drain, varies with the machine; which stages acted, and in what order things first happened, does
//! not. The file shows the whole session, with runs of identical turns condensed ([`condense`]). `SOCKLAB_BLESS=1 cargo test --test transcripts` writes the
//! fresh sessions into the files instead, for a change that means to alter them.

use std::path::PathBuf;

/// The file under the crate root.
fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)
}

/// The lines of the block marked `name` in `text`, and where they lie (line indices, end exclusive).
fn find_block(text: &str, name: &str) -> Option<(usize, usize, Vec<String>)> {
    let marker = format!("<!-- transcript: {name} -->");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.trim() == marker)?;
    let mut start = at + 1;
    while start < lines.len() && lines[start].trim().is_empty() {
        start += 1;
    }
    if lines.get(start)?.starts_with("```") {
        let end = start
            + 1
            + lines[start + 1..]
                .iter()
                .position(|l| l.starts_with("```"))?;
        let body = lines[start + 1..end]
            .iter()
            .map(|l| l.to_string())
            .collect();
        return Some((start + 1, end, body));
    }
    let mut end = start;
    while end < lines.len() && (lines[end].starts_with("    ") || lines[end].is_empty()) {
        end += 1;
    }
    while end > start && lines[end - 1].is_empty() {
        end -= 1;
    }
    let body = lines[start..end]
        .iter()
        .map(|l| l.strip_prefix("    ").unwrap_or(l).to_string())
        .collect();
    Some((start, end, body))
}

/// What is compared of a session: every varying detail replaced by a placeholder, runs of identical
/// lines kept once.
pub fn normalise(lines: &[String]) -> Vec<String> {
    let mut turns: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let mut line = line.trim_end().to_string();
        // `[2026-12-01T21:34:15.123Z INFO  socklab::x]` → `[... INFO  socklab::x]`.
        if let Some(rest) = line.strip_prefix('[') {
            if let Some(space) = rest.find(' ') {
                if rest[..space].contains('T') && rest[..space].ends_with('Z') {
                    line = format!("[...{}", &rest[space..]);
                }
            }
        }
        // Turn numbers: renumbered from 1 in the order they appear.
        if let Some(at) = line.find("turn ") {
            let digits: String = line[at + 5..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                if !turns.contains(&digits) {
                    turns.push(digits.clone());
                }
                let n = turns.iter().position(|t| *t == digits).unwrap() + 1;
                line = format!("{}turn {n}{}", &line[..at], &line[at + 5 + digits.len()..]);
            }
        }
        line = replace_numbers_before(
            &line,
            &[" B", " ms", " µs", " s", " bytes", " passes", " of them"],
        );
        line = replace_after(&line, &["127.0.0.1:", "[::1]:"], "PORT");
        // How much a read asks for follows the room left under the high-water mark.
        line = replace_after(&line, &["(asked "], "N");
        line = replace_after(&line, &["at most ", "serving at most "], "N");
        if out.last() != Some(&line) {
            out.push(line);
        }
    }
    out
}

/// Replaces the number (digits, dots and commas) just before each of `units` with `N`.
fn replace_numbers_before(line: &str, units: &[&str]) -> String {
    let mut line = line.to_string();
    for unit in units {
        let mut from = 0;
        while let Some(at) = line[from..].find(unit).map(|i| i + from) {
            // A unit is a word: `10 shutdown` is not ten seconds.
            let ends_word = line[at + unit.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric());
            if !ends_word {
                from = at + unit.len();
                continue;
            }
            let start = line[..at]
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_ascii_digit() || *c == '.' || *c == ',')
                .last()
                .map(|(i, _)| i);
            match start {
                Some(start) if start < at => {
                    line.replace_range(start..at, "N");
                    from = start + 1 + unit.len();
                }
                _ => from = at + unit.len(),
            }
        }
    }
    line
}

/// Replaces the digits right after each of `prefixes` with `with`.
fn replace_after(line: &str, prefixes: &[&str], with: &str) -> String {
    let mut line = line.to_string();
    for prefix in prefixes {
        let mut from = 0;
        while let Some(at) = line[from..].find(prefix).map(|i| i + from + prefix.len()) {
            let len = line[at..].chars().take_while(char::is_ascii_digit).count();
            if len > 0 {
                line.replace_range(at..at + len, with);
            }
            from = at;
        }
    }
    line
}

/// The marker line [`condense`] puts in place of turns like the one before it.
const MORE_TURNS: &str = "… more turns like the one above";

/// A session as a reader wants to see it: a run of turns that say the same (numbers aside) is shown once,
/// followed by a line saying more came, and a run of identical lines inside a turn once.
pub fn condense(lines: &[String]) -> Vec<String> {
    let key = |line: &String| strip_turn(&normalise(std::slice::from_ref(line))[0]);
    // Group the lines by turn (a line without a turn number is a turn of its own).
    let mut turns: Vec<Vec<String>> = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        let turn = turn_number(line);
        if turn.is_none() || turn != current {
            turns.push(Vec::new());
        }
        current = turn;
        let group = turns.last_mut().unwrap();
        if group.last().map(key) != Some(key(line)) {
            group.push(line.clone());
        }
    }
    let mut out = Vec::new();
    let mut last: Option<Vec<String>> = None;
    let mut repeated = false;
    for group in turns {
        let signature: Vec<String> = group.iter().map(key).collect();
        if turn_number(&group[0]).is_some() && last.as_ref() == Some(&signature) {
            if !repeated {
                out.push(MORE_TURNS.to_string());
                repeated = true;
            }
            continue;
        }
        repeated = false;
        last = Some(signature);
        out.extend(group);
    }
    out
}

fn turn_number(line: &str) -> Option<String> {
    let at = line.find("turn ")?;
    let digits: String = line[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// `turn 7 · 5 read …` → `5 read …`.
fn strip_turn(line: &str) -> String {
    match line.find(" · ") {
        Some(at) if line[..at].contains("turn ") => line[at + " · ".len()..].to_string(),
        _ => line.to_string(),
    }
}

/// What the comparison holds a session to: each distinct event, normalised, in the order it first happens.
/// Stage 1's line is left out: which readiness events one poll happens to gather (a read and a write
/// together, or one poll each) is the machine's timing, not the loop's logic.
pub fn story(lines: &[String]) -> Vec<String> {
    let mut story: Vec<String> = Vec::new();
    for line in normalise(lines) {
        let event = strip_turn(&line);
        if event.starts_with("1 poll") {
            continue;
        }
        if event != MORE_TURNS && !story.contains(&event) {
            story.push(event);
        }
    }
    story
}

/// Checks the block `name` of `file` against `actual` (or writes it there, condensed, with
/// `SOCKLAB_BLESS=1`).
pub fn check(file: &str, name: &str, actual: &[String]) {
    if let Err(e) = try_check(file, name, actual) {
        panic!("{e}");
    }
}

/// Produces a session with `run` and checks it; a session whose story differs is produced once more
/// before it counts as a difference. A session is a real run on a shared machine: a change in the loop's
/// logic differs every time, a scheduling hiccup does not come twice in a row.
pub fn check_session(file: &str, name: &str, mut run: impl FnMut() -> Vec<String>) {
    if try_check(file, name, &run()).is_err() {
        eprintln!("{file} {name}: the story differed; running the session once more");
        check(file, name, &run());
    }
}

fn try_check(file: &str, name: &str, actual: &[String]) -> Result<(), String> {
    let actual = condense(actual);
    let actual = &actual[..];
    let path = path(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let (start, end, expected) =
        find_block(&text, name).unwrap_or_else(|| panic!("{file} has no block marked {name}"));
    if std::env::var_os("SOCKLAB_BLESS").is_some() {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let indented = !lines[start - 1].starts_with("```");
        let fresh: Vec<String> = actual
            .iter()
            .map(|l| {
                if indented {
                    format!("    {l}")
                } else {
                    l.clone()
                }
            })
            .collect();
        lines.splice(start..end, fresh);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        eprintln!("blessed {file} {name}");
        return Ok(());
    }
    let (want, got) = (story(&expected), story(actual));
    if want != got {
        let diff: Vec<String> = want
            .iter()
            .map(|l| format!("- {l}"))
            .chain(got.iter().map(|l| format!("+ {l}")))
            .collect();
        return Err(format!(
            "{file}, block {name}, differs from what the binaries print now (normalised; - the file, + now):\n{}\n\n\
             this session, in full:\n{}\n\nto take it, run: SOCKLAB_BLESS=1 cargo test --test transcripts",
            diff.join("\n"),
            actual.join("\n")
        ));
    }
    Ok(())
}
