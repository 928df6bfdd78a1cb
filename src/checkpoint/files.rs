//! The file side of checkpoints: temporary files renamed into place (`Prepared`), and
//! bounded reads of regular files only (a header of at most 16 MiB, then exactly the data
//! the header declares, never more than the caller allows).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Dtype, Spec};

/// A fully written and fsynced temporary file waiting to be renamed over its destination
/// (`commit`); dropped uncommitted, it is removed. Writing every file of a save first and
/// renaming after keeps a full disk from leaving a half-new save.
pub struct Prepared {
    path: PathBuf,
    tmp: PathBuf,
    done: bool,
}

impl Prepared {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temporary file over the destination and syncs the directory.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        if let Err(e) = fs::rename(&self.tmp, &self.path) {
            let _ = fs::remove_file(&self.tmp);
            return Err(e).with_context(|| format!("{}: cannot move {} into place", self.path.display(), self.tmp.display()));
        }
        sync_dir(&self.path);
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Persists renames in the directory of `path`. Best effort: not every platform can open a
/// directory.
pub fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The temporary file `save` writes before renaming: `.<file name>.tmp-<pid>` in the same
/// directory (same filesystem, so the rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

pub(crate) fn write_temp(path: &Path, bytes: &[u8]) -> Result<Prepared> {
    if path.file_name().is_none() {
        bail!("{}: not a file path", path.display());
    }
    if path.is_dir() {
        bail!("{}: is a directory; give a file name to save to", path.display());
    }
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        // Temporary files of killed saves (`.<name>.tmp-<pid>` of dead processes).
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        crate::fsutil::remove_stale_temps(dir, &name.to_string_lossy(), ".tmp-");
    }
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp).with_context(|| {
            format!(
                "{}: cannot create temporary file {}",
                path.display(),
                tmp.display()
            )
        })?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| {
                format!(
                    "{}: cannot write temporary file {}",
                    path.display(),
                    tmp.display()
                )
            })
    })();
    if let Err(e) = result {
        // Only remove what we created: a directory squatting on the temp name stays.
        if tmp.is_file() {
            let _ = fs::remove_file(&tmp);
        }
        return Err(e);
    }
    Ok(Prepared { path: path.to_path_buf(), tmp, done: false })
}

/// The most a safetensors header may be (the safetensors crate's own limit is 100 MB).
pub(super) const MAX_HEADER: u64 = 16 << 20;
/// The most data `load_any` reads (batch files and reference dumps of this model are far
/// smaller); `load_strict` is bounded by the expected tensors instead.
pub(super) const MAX_ANY_DATA: u64 = 1 << 30;

/// Opens a safetensors file and reads its header: (file, file length, header length, header
/// bytes, the data length the header declares). Errors name the file.
pub(super) fn read_header(path: &Path) -> Result<(fs::File, u64, u64, Vec<u8>, u64)> {
    use std::io::Read;
    let (mut file, len) = crate::fsutil::open_regular(path, "checkpoint")?;
    let bad = |why: String| anyhow::anyhow!("{}: not a valid safetensors file: {why}", path.display());
    if len < 8 {
        return Err(bad(format!("{len} bytes, shorter than the 8-byte header length")));
    }
    let mut n = [0u8; 8];
    file.read_exact(&mut n).with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > len - 8 {
        return Err(bad(format!("the header length {n} is more than the file's {} remaining bytes or the {MAX_HEADER}-byte limit", len - 8)));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(format!("the header is not JSON ({e})")))?;
    let Some(entries) = json.as_object() else { return Err(bad("the header is not a JSON object".into())) };
    let mut data_len = 0u64;
    for (name, v) in entries {
        if name == "__metadata__" {
            continue;
        }
        let end = v.get("data_offsets").and_then(|o| o.get(1)).and_then(|e| e.as_u64());
        let Some(end) = end else { return Err(bad(format!("tensor `{name}` has no valid data_offsets"))) };
        data_len = data_len.max(end);
    }
    Ok((file, len, n, header, data_len))
}

/// Reads a whole safetensors file, bounded: the length must be what its header declares,
/// and the declared data at most `max_data` bytes. Errors name the file.
pub(super) fn read_file(path: &Path, max_data: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let (file, len, n, header, data_len) = read_header(path)?;
    if data_len > max_data {
        bail!("{}: the header declares {data_len} bytes of tensor data, more than this file can hold ({max_data} bytes)", path.display());
    }
    let total = 8 + n + data_len;
    if len != total {
        let what = if len < total { "truncated" } else { "trailing bytes" };
        bail!("{}: not a valid safetensors file: the header declares {total} bytes in all, the file has {len} ({what})", path.display());
    }
    let mut bytes = Vec::with_capacity(total as usize);
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes.extend_from_slice(&header);
    file.take(data_len + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read checkpoint", path.display()))?;
    if bytes.len() as u64 != total {
        bail!("{}: the file changed while being read", path.display());
    }
    Ok(bytes)
}

/// Bytes of data `specs` take (plus nothing: padding is not allowed in safetensors).
pub(super) fn spec_bytes(specs: &[Spec]) -> u64 {
    specs
        .iter()
        .map(|s| {
            let n: u64 = s.shape.iter().map(|&d| d as u64).product();
            n * match s.dtype {
                Dtype::F32 => 4,
                Dtype::I64 => 8,
            }
        })
        .sum()
}

