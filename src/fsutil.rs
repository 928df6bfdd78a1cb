//! File access that cannot hang or exhaust memory on hostile input: only regular files are
//! opened (a FIFO would block `open` forever, `/dev/zero` never ends), every read is bounded
//! by what the file can legitimately hold, and temporary files of dead processes are removed.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Opens `path` for reading if it is a regular file (a symlink to one is fine). `what` names
/// the file's role in errors ("checkpoint", "data file"). Returns the file and its length.
pub fn open_regular(path: &Path, what: &str) -> Result<(File, u64)> {
    // stat first: opening a FIFO blocks until a writer appears.
    let meta = fs::metadata(path).with_context(|| format!("{}: cannot read {what}", path.display()))?;
    if !meta.is_file() {
        bail!("{}: cannot read {what}: {}, not a regular file", path.display(), kind(&meta.file_type()));
    }
    let file = File::open(path).with_context(|| format!("{}: cannot open {what}", path.display()))?;
    // The name may have been swapped between stat and open.
    let meta = file.metadata().with_context(|| format!("{}: cannot read {what}", path.display()))?;
    if !meta.is_file() {
        bail!("{}: cannot read {what}: not a regular file", path.display());
    }
    Ok((file, meta.len()))
}

fn kind(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "it is a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "it is a device";
        }
        if t.is_socket() {
            return "it is a socket";
        }
    }
    if t.is_dir() {
        "it is a directory"
    } else {
        "it is a special file"
    }
}

/// Reads a whole regular file of at most `max` bytes; longer ones are an error naming `max`.
pub fn read_bounded(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, what)?;
    if len > max {
        bail!("{}: the {what} is {len} bytes, more than it can legitimately be ({max} bytes)", path.display());
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("{}: cannot read {what}", path.display()))?;
    if out.len() as u64 > max {
        bail!("{}: the {what} grew past {max} bytes while being read", path.display());
    }
    Ok(out)
}

/// Whether process `pid` is alive (Linux: /proc; elsewhere every process counts as alive,
/// so nothing is removed).
fn alive(pid: u32) -> bool {
    let proc_dir = Path::new("/proc");
    !proc_dir.join("self").exists() || proc_dir.join(pid.to_string()).exists()
}

/// Removes temporary files `.<name><marker><pid>…` in `dir` left by processes that no
/// longer run (killed saves or downloads of `name`). Returns how many were removed. Best effort.
pub fn remove_stale_temps(dir: &Path, name: &str, marker: &str) -> usize {
    let prefix = format!(".{name}{marker}");
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if !file.starts_with(&prefix) {
            continue;
        }
        let Some(pid) = stale_pid(&file, marker) else { continue };
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if is_file && pid != std::process::id() && !alive(pid) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a hidden temp name `.<anything><marker><pid>[-<n>]`.
fn stale_pid(name: &str, marker: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let tail = &name[name.rfind(marker)? + marker.len()..];
    let digits = tail.split('-').next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::stale_pid;

    #[test]
    fn temp_names_give_their_pid() {
        assert_eq!(stale_pid(".train-images-idx3-ubyte.gz.part-123-4", ".part-"), Some(123));
        assert_eq!(stale_pid(".model.safetensors.tmp-77", ".tmp-"), Some(77));
        assert_eq!(stale_pid("model.safetensors", ".tmp-"), None);
        assert_eq!(stale_pid(".x.tmp-abc", ".tmp-"), None);
    }
}
