//! The README and docs/ against the program: every option a command's `--help` lists is in
//! docs/usage.md's row for that command, every option the README or that table names exists,
//! the README's usage line lists exactly the global options, the README stays short, and every
//! relative link (and its #anchor) points at something that is there. No GPU needed.
//!
//! The numbers the README quotes are checked where they are made: the dispatch count by
//! tests/bench.rs, the results table by tests/results.rs, the test count and the sample log by
//! .ci/run (scripts/check-readme.sh).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const COMMANDS: [&str; 9] = ["train", "eval", "predict", "step", "summary", "bench", "data", "adapters", "serve"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `--long-option` in `text` (a `--` that starts a word, then a letter).
fn flags(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-');
        if starts_word && b[i] == b'-' && b[i + 1] == b'-' && b[i + 2].is_ascii_lowercase() {
            let mut j = i + 2;
            while j < b.len() && (b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'-') {
                j += 1;
            }
            out.insert(text[i..j].trim_end_matches('-').to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The options `wgsl-cnn <args> --help` lists (its option lines only, not its prose).
fn help_flags(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn")).args(args).arg("--help").output().expect("run wgsl-cnn --help");
    assert!(out.status.success(), "wgsl-cnn {args:?} --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut set = BTreeSet::new();
    // An option line: "  -h, --help  …" or "      --lr <LR>  …"; its option is the first `--` word.
    for line in text.lines().map(str::trim_start).filter(|l| l.starts_with('-')) {
        let first = line.split_whitespace().map(|w| w.trim_end_matches(',')).find(|w| w.starts_with("--"));
        set.extend(first.map(flags).unwrap_or_default());
    }
    set.remove("--help");
    set.remove("--version");
    set
}

/// The options every command takes (clap's global ones).
fn global_flags() -> BTreeSet<String> {
    let mut sets = COMMANDS.iter().map(|c| help_flags(&[c]));
    let first = sets.next().unwrap();
    sets.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
}

/// The rows of the Markdown tables in `doc` whose first cell starts with a command in
/// backticks, as (command, row); each command once.
fn command_rows(doc: &str, name: &str) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = line[3..].split(['`', ' ']).next().unwrap();
        if let Some(cmd) = COMMANDS.iter().find(|c| **c == first) {
            assert!(!rows.iter().any(|(c, _)| c == cmd), "{name}: two rows for `{cmd}`");
            rows.push((*cmd, line.to_string()));
        }
    }
    rows
}

#[test]
fn every_option_of_every_command_is_in_the_usage_table() {
    let doc = read("docs/usage.md");
    let rows = command_rows(&doc, "docs/usage.md");
    let globals = global_flags();
    assert!(globals.contains("--backend") && globals.contains("--data-dir"), "global options: {globals:?}");
    let mut problems = Vec::new();
    for cmd in COMMANDS {
        let Some((_, row)) = rows.iter().find(|(c, _)| *c == cmd) else {
            problems.push(format!("`{cmd}` has no row in docs/usage.md's commands table"));
            continue;
        };
        let help = help_flags(&[cmd]);
        let named = flags(row);
        for f in help.difference(&globals).filter(|f| !named.contains(*f)) {
            problems.push(format!("`{cmd} --help` lists {f}, docs/usage.md's row does not"));
        }
        for f in named.difference(&help) {
            problems.push(format!("docs/usage.md's `{cmd}` row names {f}, which `{cmd} --help` does not list"));
        }
    }
    // The global options' paragraph names each of them.
    let global_text = doc.split_once("Global options").map(|(_, t)| t.split("\n\n").next().unwrap()).expect("docs/usage.md: no \"Global options\" paragraph");
    for f in globals.difference(&flags(global_text)) {
        problems.push(format!("docs/usage.md's global options paragraph does not name {f}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_names_only_options_that_exist() {
    let readme = read("README.md");
    let rows = command_rows(&readme, "README.md");
    assert_eq!(rows.len(), COMMANDS.len(), "README's commands table should have a row per command");
    let mut problems = Vec::new();
    for (cmd, row) in &rows {
        let help = help_flags(&[cmd]);
        for f in flags(row).difference(&help) {
            problems.push(format!("README's `{cmd}` row names {f}, which `{cmd} --help` does not list"));
        }
    }
    // The usage line: ``` then `wgsl-cnn [--backend …] … [COMMAND]`, the global options exactly.
    let usage = readme.split("```\nwgsl-cnn [").nth(1).and_then(|t| t.split("```").next()).expect("README: no usage block");
    let globals = global_flags();
    let named = flags(usage);
    assert_eq!(named, globals, "README's usage line should list the global options exactly");
    for f in flags(&readme).difference(&help_flags(&["train"]).union(&all_command_flags()).cloned().collect()) {
        if !ALSO_ALLOWED.contains(&f.as_str()) {
            problems.push(format!("README names {f}, which no command's --help lists"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Options of other programs the README quotes (cargo's).
const ALSO_ALLOWED: [&str; 1] = ["--release"];

fn all_command_flags() -> BTreeSet<String> {
    COMMANDS.iter().flat_map(|c| help_flags(&[c])).collect()
}

#[test]
fn the_readme_is_short() {
    let lines = read("README.md").lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; the depth goes to docs/ (at most 300 here)");
}

/// GitHub's anchor for a heading: lower case, spaces to '-', other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_lowercase().next().unwrap()),
            _ => None,
        })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            set.insert(anchor(line.trim_start_matches('#')));
        }
    }
    set
}

#[test]
fn relative_links_and_anchors_resolve() {
    let mut docs: Vec<PathBuf> = vec![repo().join("README.md"), repo().join("scripts/README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "md")).collect();
    in_docs.sort();
    assert!(in_docs.len() >= 8, "docs/ should hold the depth the README leaves out");
    docs.extend(in_docs);
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(repo()).unwrap().display().to_string();
        for target in text.split("](").skip(1).map(|t| &t[..t.find(')').unwrap_or(t.len())]) {
            if target.starts_with("http://") || target.starts_with("https://") || target.contains(' ') {
                continue;
            }
            checked += 1;
            let (path, hash) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() { doc.clone() } else { doc.parent().unwrap().join(path) };
            if !file.exists() {
                problems.push(format!("{name}: the link ({target}) points at nothing"));
                continue;
            }
            if !hash.is_empty() && file.extension().is_some_and(|x| x == "md") && !anchors(&std::fs::read_to_string(&file).unwrap()).contains(hash) {
                problems.push(format!("{name}: the link ({target}) names a heading that is not there"));
            }
        }
    }
    assert!(checked >= 20, "only {checked} links checked: the link scan is broken");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_they_should() {
    assert_eq!(flags("`--batch-size 100`, --lr, a--b, ---y, --Z"), ["--batch-size", "--lr"].map(String::from).into());
    assert_eq!(anchor("gpu-check.sh — a one-shot check on a real GPU"), "gpu-checksh--a-one-shot-check-on-a-real-gpu");
    assert_eq!(anchor("After training: predict, curves, mistakes"), "after-training-predict-curves-mistakes");
    assert_eq!(anchor("`predict`"), "predict");
}
