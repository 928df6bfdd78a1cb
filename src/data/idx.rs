//! IDX files (the MNIST format): gunzip, md5 and parsing with full validation, streamed
//! and bounded by what the header promises.
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

/// The most examples an IDX file may hold (EMNIST's largest split has 0.7 M): bounds the
/// memory a hostile header can ask for (784 MB of images).
pub const MAX_COUNT: usize = 1_000_000;
/// How far past the promised length a gzip stream is read to say how many bytes too many.
const MAX_EXCESS_COUNTED: u64 = 64 << 20;

/// Checks the bytes of one file as found on disk (gzip or raw IDX) against its spec:
/// gunzip, IDX structure, the expected count (if given), then the md5 (if the spec has one).
pub fn decode(on_disk: Vec<u8>, spec: &FileSpec, expected_count: Option<usize>) -> Result<Decoded> {
    let len = on_disk.len() as u64;
    decode_from(&mut on_disk.as_slice(), len, spec, expected_count)
}

/// [`decode`] of a file, streamed: never holds more than the header promises (at most
/// [`MAX_COUNT`] examples), so a gzip bomb or a huge sparse file stops at that bound.
pub fn decode_file(path: &std::path::Path, spec: &FileSpec, expected_count: Option<usize>) -> Result<Decoded> {
    let (file, len) = crate::fsutil::open_regular(path, "data file")?;
    decode_from(&mut std::io::BufReader::new(file), len, spec, expected_count)
}

/// Reads exactly `buf.len()` bytes; Ok(false) at a clean or early end of data.
fn fill(r: &mut dyn Read, buf: &mut [u8], gz: bool, on_disk: u64) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e, gz, on_disk)),
        }
    }
    Ok(got)
}

fn read_error(e: std::io::Error, gz: bool, on_disk: u64) -> anyhow::Error {
    match (gz, e.kind()) {
        (true, ErrorKind::UnexpectedEof) => anyhow::anyhow!(
            "gzip data is truncated: the {on_disk} compressed bytes end before the gzip stream does \
             (an interrupted download or copy?)"
        ),
        (true, _) => anyhow::anyhow!("gzip data is corrupt ({e})"),
        (false, _) => anyhow::anyhow!("cannot read the file ({e})"),
    }
}

/// Reads up to `payload` bytes (fewer at an early end), growing the vector as the data
/// arrives (a header's promise is not trusted with memory up front) and fallibly: memory the
/// system refuses is an error naming `what` and the size, not an abort.
fn read_payload(r: &mut dyn Read, payload: usize, gz: bool, on_disk: u64, what: &str) -> Result<Vec<u8>> {
    let mut data: Vec<u8> = Vec::new();
    while data.len() < payload {
        let room = payload - data.len();
        let grow = data.capacity().max(64 << 20).min(room);
        data.try_reserve_exact(grow).map_err(|_| crate::memlimit::refused(&format!("{what} ({payload} bytes in all)"), grow as u64))?;
        let start = data.len();
        data.resize(start + grow, 0);
        let got = fill(r, &mut data[start..], gz, on_disk)?;
        data.truncate(start + got);
        if got < grow {
            break;
        }
    }
    Ok(data)
}

fn decode_from(src: &mut dyn Read, on_disk: u64, spec: &FileSpec, expected_count: Option<usize>) -> Result<Decoded> {
    ensure!(on_disk > 0, "the file is empty");
    let mut magic = [0u8; 2];
    let n = fill(src, &mut magic, false, on_disk)?;
    let was_gzip = n == 2 && is_gzip(&magic);
    let mut chained = magic[..n].chain(src);
    let mut gz_reader;
    let r: &mut dyn Read = if was_gzip {
        gz_reader = flate2::read::MultiGzDecoder::new(chained);
        &mut gz_reader
    } else {
        &mut chained
    };
    let (header_len, item, what) = match spec.kind {
        FileKind::Images => (IMAGE_HEADER, PIXELS, "images of 28×28"),
        FileKind::Labels => (LABEL_HEADER, 1, "labels"),
    };
    let mut header = vec![0u8; header_len];
    let got = fill(r, &mut header, was_gzip, on_disk)?;
    let kind = if spec.kind == FileKind::Images { "images" } else { "labels" };
    ensure!(
        got == header_len,
        "too short for IDX {kind}: {got} bytes, the header alone is {header_len} bytes"
    );
    check_magic(be_u32(&header, 0), spec.kind)?;
    let count = be_u32(&header, 4) as usize;
    if spec.kind == FileKind::Images {
        let (rows, cols) = (be_u32(&header, 8), be_u32(&header, 12));
        ensure!(
            rows as usize == ROWS && cols as usize == COLS,
            "images are {rows}×{cols}, expected {ROWS}×{COLS}"
        );
    }
    ensure!(
        count <= MAX_COUNT,
        "the header claims {count} {what}, more than the {MAX_COUNT} this program accepts"
    );
    let payload = count * item;
    let want = (header_len + payload) as u64;
    if !was_gzip && on_disk != want {
        // The length is known without reading: refuse a wrong one before reading it.
        check_length(on_disk as usize, header_len, count, item, what)?;
    }
    let data = read_payload(r, payload, was_gzip, on_disk, &format!("the {count} {what} its header announces"))?;
    if data.len() < payload {
        check_length(header_len + data.len(), header_len, count, item, what)?;
    }
    // Anything after the promised bytes: count it (up to a bound) for the message.
    let extra = std::io::copy(&mut r.take(MAX_EXCESS_COUNTED), &mut std::io::sink())
        .map_err(|e| read_error(e, was_gzip, on_disk))?;
    if extra >= MAX_EXCESS_COUNTED {
        bail!(
            "wrong length: the header says {count} {what}, so the IDX data should be {want} bytes, \
             but it goes on for more than {MAX_EXCESS_COUNTED} bytes after that"
        );
    }
    if extra > 0 {
        check_length(header_len + payload + extra as usize, header_len, count, item, what)?;
    }
    let mut hasher = Md5::new();
    hasher.update(&header);
    hasher.update(&data);
    let md5: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if spec.kind == FileKind::Labels {
        if let Some((i, &label)) = data.iter().enumerate().find(|&(_, &l)| l > spec.max_label) {
            bail!("label {label} at index {i} is out of range (labels are 0–{})", spec.max_label);
        }
    }
    if let Some(want) = expected_count {
        ensure!(count == want, "holds {count} {kind}, expected {want}");
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
