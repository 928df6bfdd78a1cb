//! IDX files (the MNIST format): gunzip, md5 and parsing with full validation.
//!
//! Layout (big-endian): images = magic 2051, count, rows, cols, then count·rows·cols
//! pixel bytes; labels = magic 2049, count, then count label bytes. Functions here know
//! nothing about paths: callers add the file name as error context.

use super::spec::{FileKind, FileSpec};
use anyhow::{bail, ensure, Result};
use md5::{Digest, Md5};
use std::io::{ErrorKind, Read};

pub const IMAGE_MAGIC: u32 = 2051;
pub const LABEL_MAGIC: u32 = 2049;
pub const ROWS: usize = 28;
pub const COLS: usize = 28;
/// Pixels per image (28·28).
pub const PIXELS: usize = ROWS * COLS;
const IMAGE_HEADER: usize = 16;
const LABEL_HEADER: usize = 8;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when the bytes start with the gzip magic (IDX data starts with 0x00 0x00).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses gzip data (all members). Says whether it is truncated or corrupt.
pub fn gunzip(gz: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(gz.len().saturating_mul(5));
    match flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => bail!(
            "gzip data is truncated: the {} compressed bytes end before the gzip stream does \
             (an interrupted download or copy?)",
            gz.len()
        ),
        Err(e) => bail!("gzip data is corrupt ({e})"),
    }
}

/// Lower-case hex md5 of the bytes.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn check_magic(found: u32, kind: FileKind) -> Result<()> {
    let (want, what, other, other_what) = match kind {
        FileKind::Images => (IMAGE_MAGIC, "images", LABEL_MAGIC, "labels"),
        FileKind::Labels => (LABEL_MAGIC, "labels", IMAGE_MAGIC, "images"),
    };
    if found == want {
        return Ok(());
    }
    let hint = if found == other {
        format!(" (this is an IDX {other_what} file)")
    } else {
        String::new()
    };
    bail!("wrong magic number {found} (0x{found:08x}), expected {want} for IDX {what}{hint}")
}

fn check_length(got: usize, header: usize, count: usize, item: usize, what: &str) -> Result<()> {
    let want = count.checked_mul(item).and_then(|n| n.checked_add(header));
    let Some(want) = want else {
        bail!("header claims an impossible {count} {what}")
    };
    if got == want {
        return Ok(());
    }
    let diff = if got < want {
        format!("{} bytes missing: truncated", want - got)
    } else {
        format!("{} bytes too many", got - want)
    };
    bail!(
        "wrong length: the header says {count} {what}, so the IDX data should be {want} bytes, \
         but it is {got} bytes ({diff})"
    )
}

/// Parses IDX images: magic 2051, 28×28, exact length. Returns (count, pixels).
pub fn parse_images(mut idx: Vec<u8>) -> Result<(usize, Vec<u8>)> {
    ensure!(
        idx.len() >= IMAGE_HEADER,
        "too short for IDX images: {} bytes, the header alone is {IMAGE_HEADER} bytes",
        idx.len()
    );
    check_magic(be_u32(&idx, 0), FileKind::Images)?;
    let count = be_u32(&idx, 4) as usize;
    let (rows, cols) = (be_u32(&idx, 8), be_u32(&idx, 12));
    ensure!(
        rows as usize == ROWS && cols as usize == COLS,
        "images are {rows}×{cols}, expected {ROWS}×{COLS}"
    );
    check_length(idx.len(), IMAGE_HEADER, count, PIXELS, "images of 28×28")?;
    idx.drain(..IMAGE_HEADER);
    Ok((count, idx))
}

/// Parses IDX labels: magic 2049, exact length, every label in 0..=9.
pub fn parse_labels(mut idx: Vec<u8>) -> Result<Vec<u8>> {
    ensure!(
        idx.len() >= LABEL_HEADER,
        "too short for IDX labels: {} bytes, the header alone is {LABEL_HEADER} bytes",
        idx.len()
    );
    check_magic(be_u32(&idx, 0), FileKind::Labels)?;
    let count = be_u32(&idx, 4) as usize;
    check_length(idx.len(), LABEL_HEADER, count, 1, "labels")?;
    idx.drain(..LABEL_HEADER);
    if let Some((i, &label)) = idx.iter().enumerate().find(|&(_, &l)| l > 9) {
        bail!("label {label} at index {i} is out of range (labels are 0–9)");
    }
    Ok(idx)
}

/// One file's content after every check passed.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// Pixels (count·784) for images, one byte per example for labels.
    pub data: Vec<u8>,
    pub count: usize,
    /// md5 of the decompressed IDX bytes.
    pub md5: String,
    /// Whether `md5` was compared with the spec (false when the spec has none).
    pub md5_checked: bool,
    pub was_gzip: bool,
}

/// Checks the bytes of one file as found on disk (gzip or raw IDX) against its spec:
/// gunzip, IDX structure, the expected count (if given), then the md5 (if the spec has one).
pub fn decode(on_disk: Vec<u8>, spec: &FileSpec, expected_count: Option<usize>) -> Result<Decoded> {
    ensure!(!on_disk.is_empty(), "the file is empty");
    let was_gzip = is_gzip(&on_disk);
    let idx = if was_gzip { gunzip(&on_disk)? } else { on_disk };
    let md5 = md5_hex(&idx);
    let (count, data) = match spec.kind {
        FileKind::Images => parse_images(idx)?,
        FileKind::Labels => {
            let labels = parse_labels(idx)?;
            (labels.len(), labels)
        }
    };
    if let Some(want) = expected_count {
        let what = if spec.kind == FileKind::Images {
            "images"
        } else {
            "labels"
        };
        ensure!(count == want, "holds {count} {what}, expected {want}");
    }
    if let Some(want) = spec.md5 {
        ensure!(
            md5.eq_ignore_ascii_case(want),
            "checksum mismatch: the md5 of the decompressed IDX data is {md5}, expected {want}"
        );
    }
    Ok(Decoded {
        data,
        count,
        md5,
        md5_checked: spec.md5.is_some(),
        was_gzip,
    })
}
