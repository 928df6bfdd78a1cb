//! A data directory as users have it: the official files, a cut of them (like
//! `assets/mnist-subset`), or damaged files to repair.
//!
//! Files with the official counts must have the official md5s. Other consistent sizes load
//! with a note that they are not the official data set; a directory may list its own md5s in
//! [`CHECKSUMS_FILE`] (`<md5 of the decompressed IDX bytes>  <file name>` per line), which
//! are then checked too.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::idx;
use super::mnist::{load_with, locate, Mnist, DEFAULT_DATA_DIR};
use crate::text::thousands;
use super::spec::{DatasetSpec, FileSpec, SplitSpec};

/// The optional checksum list of a data directory.
pub const CHECKSUMS_FILE: &str = "IDX-MD5SUMS";

/// What to run when a file is damaged.
pub fn repair_hint(dir: &Path) -> String {
    let arg = if dir == Path::new(DEFAULT_DATA_DIR) {
        String::new()
    } else {
        format!(" --data-dir {}", dir.display())
    };
    format!("if the file is damaged, `wgsl-cnn data --repair{arg}` moves it aside and downloads it again")
}

/// The md5s listed in `dir/IDX-MD5SUMS`, by file stem (a name may carry `.gz`). None when
/// the directory has no list.
pub fn checksum_list(dir: &Path) -> Result<Option<Vec<(String, String)>>> {
    let path = dir.join(CHECKSUMS_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = crate::fsutil::read_bounded(&path, "checksum list", 64 << 10)?;
    let text = String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))?;
    parse_checksums(&text, &path.display().to_string()).map(Some)
}

/// The md5s of a checksum list's text, by file stem; `place` names the list in errors.
pub fn parse_checksums(text: &str, place: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(md5), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{place}: line {} is not `<md5>  <file name>`", i + 1);
        };
        if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{place}: line {}: `{md5}` is not an md5 (32 hex digits)", i + 1);
        }
        let stem = name.trim_start_matches('*').trim_end_matches(".gz");
        out.push((stem.to_string(), md5.to_ascii_lowercase()));
    }
    Ok(out)
}

/// Loads `dir` against `spec`: any consistent size (structure fully checked), the official
/// md5 wherever a file has the official count, the directory's own list elsewhere.
pub fn load_dir(dir: &Path, spec: &DatasetSpec) -> Result<Mnist> {
    let mut mnist = load_with(dir, &spec.unchecked())?;
    let list = checksum_list(dir)?;
    verify_md5s(&mut mnist, spec, list.as_deref(), &dir.display().to_string(), &format!("; {}", repair_hint(dir)))?;
    Ok(mnist)
}

/// Checks loaded files: both splits hold examples, and the md5s match: the official one
/// wherever a file has the official count, `list`'s elsewhere (with a note that the data is
/// not the official set). `place` names where the files are; `hint` ends a mismatch's message.
pub fn verify_md5s(mnist: &mut Mnist, spec: &DatasetSpec, list: Option<&[(String, String)]>, place: &str, hint: &str) -> Result<()> {
    for (what, n, f) in [("training", mnist.train.count, 0), ("test", mnist.test.count, 2)] {
        if n == 0 {
            bail!("{}: holds no {what} examples (the IDX header's count is 0)", mnist.report.files[f].path.display());
        }
    }
    let splits: [(&SplitSpec, usize); 2] = [(&spec.train, mnist.train.count), (&spec.test, mnist.test.count)];
    let mut official = true;
    let mut listed = 0;
    for (i, file) in mnist.report.files.iter_mut().enumerate() {
        let (split, count) = splits[i / 2];
        let fspec: &FileSpec = if i % 2 == 0 { &split.images } else { &split.labels };
        let from_list = list.and_then(|l| l.iter().find(|(s, _)| s == fspec.stem)).map(|(_, m)| m.as_str());
        let want = match (split.count, fspec.md5) {
            (Some(c), Some(m)) if c == count => Some((m, "the official md5")),
            _ => {
                official &= split.count.is_none();
                from_list.map(|m| (m, CHECKSUMS_FILE))
            }
        };
        if let Some((want, source)) = want {
            if !file.md5.eq_ignore_ascii_case(want) {
                bail!(
                    "{}: checksum mismatch: the md5 of the decompressed IDX data is {}, {source} is {want}{hint}",
                    file.path.display(),
                    file.md5,
                );
            }
            file.md5_checked = true;
            listed += (source == CHECKSUMS_FILE) as usize;
        }
    }
    if !official {
        let checked = if listed > 0 { format!("; md5s from {CHECKSUMS_FILE} verified") } else { String::new() };
        mnist.report.notes.push(format!(
            "{place} holds {} training and {} test examples: not the official {}{checked}",
            thousands(mnist.train.count as u64),
            thousands(mnist.test.count as u64),
            spec.name
        ));
    }
    mnist.report.dataset = spec.name;
    Ok(())
}

/// `wgsl-cnn data --repair`: moves every present file that fails its checks aside (to
/// `<name>.bad-<unix time>`), so that the download that follows fetches it again. Returns
/// the moved files.
pub fn move_bad_files_aside(dir: &Path, spec: &DatasetSpec) -> Result<Vec<PathBuf>> {
    let list = checksum_list(dir).ok().flatten().unwrap_or_default();
    let mut moved = Vec::new();
    for (split, file) in [(&spec.train, spec.train.images), (&spec.train, spec.train.labels), (&spec.test, spec.test.images), (&spec.test, spec.test.labels)] {
        let Some(path) = locate(dir, file.stem) else { continue };
        let plain = FileSpec { md5: None, ..file };
        let bad = match idx::decode_file(&path, &plain, None) {
            Err(e) => Some(format!("{e:#}")),
            Ok(d) => {
                let want = match split.count {
                    Some(c) if c == d.count => file.md5.map(str::to_string),
                    _ => list.iter().find(|(s, _)| s == file.stem).map(|(_, m)| m.clone()),
                };
                want.filter(|w| !w.eq_ignore_ascii_case(&d.md5)).map(|w| format!("md5 {} instead of {w}", d.md5))
            }
        };
        if let Some(why) = bad {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let aside = path.with_file_name(format!("{name}.bad-{secs}"));
            std::fs::rename(&path, &aside)
                .with_context(|| format!("cannot move {} aside to {}", path.display(), aside.display()))?;
            eprintln!("{} is damaged ({why}); moved it to {}", path.display(), aside.display());
            moved.push(aside);
        }
    }
    Ok(moved)
}
