//! Checkpoints as safetensors files that PyTorch reads with
//! `model.load_state_dict(safetensors.torch.load_file(path), strict=True)`.
//!
//! The module is generic: callers hand it named tensors (PyTorch state_dict names such as
//! `conv1.weight` or `batchnorm1.num_batches_tracked`) and get them back. Only the two dtypes
//! PyTorch writes for this model exist here: F32 (parameters, running statistics, optimizer
//! moments) and I64 (`num_batches_tracked`, a 0-d tensor with shape `[]`). Data is little-endian,
//! row-major, exactly as the safetensors format prescribes.
//!
//! Writes are atomic: the bytes go to a temporary file in the destination's directory, which is
//! fsynced and then renamed over the destination, so an interrupted save never replaces a good
//! file. Loads are strict: names, shapes and dtypes must match the expected table exactly and
//! every float must be finite; anything else is an error naming the file and the tensor.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::tensor::{SafeTensors, View};

pub(crate) mod files;
use files::{read_file, read_header, spec_bytes, write_temp, MAX_ANY_DATA};
pub use files::{sync_dir, temp_path, Prepared};

/// Element type of a checkpoint tensor (the two PyTorch uses for this model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I64,
}

impl Dtype {
    fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::I64 => safetensors::Dtype::I64,
        }
    }

    fn from_safetensors(dtype: safetensors::Dtype) -> Option<Dtype> {
        match dtype {
            safetensors::Dtype::F32 => Some(Dtype::F32),
            safetensors::Dtype::I64 => Some(Dtype::I64),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Same spelling as the safetensors header ("F32", "I64").
        f.write_str(match self {
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
        })
    }
}

/// The elements of one tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TensorData {
    pub fn dtype(&self) -> Dtype {
        match self {
            TensorData::F32(_) => Dtype::F32,
            TensorData::I64(_) => Dtype::I64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One tensor of a checkpoint. A scalar (0-d) tensor has `shape == []` and one element.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl NamedTensor {
    pub fn f32(name: impl Into<String>, shape: &[usize], data: Vec<f32>) -> Self {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::F32(data),
        }
    }

    pub fn i64(name: impl Into<String>, shape: &[usize], data: Vec<i64>) -> Self {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::I64(data),
        }
    }

    /// The f32 elements, or an error naming the tensor if it holds another dtype.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            other => bail!(
                "tensor `{}` has dtype {}, expected F32",
                self.name,
                other.dtype()
            ),
        }
    }

    /// The i64 elements, or an error naming the tensor if it holds another dtype.
    pub fn as_i64(&self) -> Result<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Ok(v),
            other => bail!(
                "tensor `{}` has dtype {}, expected I64",
                self.name,
                other.dtype()
            ),
        }
    }

    pub fn dtype(&self) -> Dtype {
        self.data.dtype()
    }
}

/// What `load_strict` expects to find under one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
}

impl Spec {
    pub fn new(name: impl Into<String>, shape: &[usize], dtype: Dtype) -> Self {
        Spec {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// The spec a given tensor satisfies (handy to build the expected table from live state).
    pub fn of(tensor: &NamedTensor) -> Self {
        Spec {
            name: tensor.name.clone(),
            shape: tensor.shape.clone(),
            dtype: tensor.dtype(),
        }
    }
}

/// Where the optimizer state that belongs to a model checkpoint lives:
/// `dir/model.safetensors` → `dir/model.optim.safetensors`.
/// A path without a `.safetensors` extension gets `.optim.safetensors` appended to its file name.
pub fn optimizer_path(model_path: &Path) -> PathBuf {
    let file_name = model_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file_name.strip_suffix(".safetensors").unwrap_or(&file_name);
    model_path.with_file_name(format!("{stem}.optim.safetensors"))
}

/// Borrowed little-endian byte view handed to the safetensors serializer.
struct Bytes<'a> {
    dtype: safetensors::Dtype,
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl View for &Bytes<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn le_bytes(data: &TensorData) -> Vec<u8> {
    match data {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Checks a tensor about to be saved; `path` names the file in the error message.
fn check_tensor_to_save(path: &Path, t: &NamedTensor) -> Result<()> {
    let want: usize = t.shape.iter().product();
    if t.data.len() != want {
        bail!(
            "{}: cannot save tensor `{}`: shape {:?} needs {} elements, data has {}",
            path.display(),
            t.name,
            t.shape,
            want,
            t.data.len()
        );
    }
    if t.name.is_empty() || t.name == "__metadata__" {
        bail!(
            "{}: cannot save a tensor named `{}` (reserved or empty)",
            path.display(),
            t.name
        );
    }
    // A non-finite checkpoint would be refused by `load_strict`; refusing it here keeps a
    // diverged run from replacing the last good file.
    check_finite(path, t)
}

fn check_finite(path: &Path, t: &NamedTensor) -> Result<()> {
    if let TensorData::F32(v) = &t.data {
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            let what = if x.is_nan() {
                "NaN".to_string()
            } else {
                format!("{x}")
            };
            bail!(
                "{}: tensor `{}` holds {} at index {}",
                path.display(),
                t.name,
                what,
                i
            );
        }
    }
    Ok(())
}

/// Serializes `tensors` (+ string metadata) as safetensors and atomically replaces `path`.
///
/// The file is first written to `.<name>.tmp-<pid>` next to `path`, fsynced, and renamed over
/// `path`; on any failure the temporary file is removed and `path` is left as it was.
pub fn save(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    prepare(path, tensors, metadata)?.commit()
}

/// Serializes and writes `tensors` to the temporary file of `path` without replacing `path`.
pub fn prepare(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<Prepared> {
    write_temp(path, &to_bytes(path, tensors, metadata)?)
}

/// The safetensors bytes of `tensors` (+ string metadata), as `save` writes them (the page's
/// download); `path` names the file in error messages.
pub fn to_bytes(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut seen = BTreeSet::new();
    for t in tensors {
        check_tensor_to_save(path, t)?;
        if !seen.insert(t.name.as_str()) {
            bail!(
                "{}: cannot save: tensor `{}` appears twice",
                path.display(),
                t.name
            );
        }
    }
    let views: Vec<Bytes> = tensors
        .iter()
        .map(|t| Bytes {
            dtype: t.dtype().to_safetensors(),
            shape: &t.shape,
            bytes: le_bytes(&t.data),
        })
        .collect();
    let info: Option<HashMap<String, String>> = (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    safetensors::serialize(tensors.iter().map(|t| t.name.as_str()).zip(views.iter()), info)
        .with_context(|| format!("{}: cannot serialize checkpoint", path.display()))
}

/// Parses (and validates: header, offsets, total length) a safetensors buffer; also returns the
/// string metadata, which `SafeTensors` itself does not expose.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, BTreeMap<String, String>)> {
    let invalid = |e| anyhow::anyhow!("{}: not a valid safetensors file: {e}", path.display());
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    Ok((
        st,
        meta.metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    ))
}

/// Decodes one tensor view into owned data; only F32 and I64 are accepted.
fn decode(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<NamedTensor> {
    let raw = view.data();
    let data = match Dtype::from_safetensors(view.dtype()) {
        Some(Dtype::F32) => TensorData::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4-byte chunk")))
                .collect(),
        ),
        Some(Dtype::I64) => TensorData::I64(
            raw.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")))
                .collect(),
        ),
        None => bail!(
            "{}: tensor `{name}` has dtype {}, only F32 and I64 are supported",
            path.display(),
            view.dtype()
        ),
    };
    Ok(NamedTensor {
        name: name.to_string(),
        shape: view.shape().to_vec(),
        data,
    })
}

/// Loads exactly the tensors in `expected`, in that order, plus the file's metadata.
///
/// Errors (each naming the file and the tensor): a missing tensor, an unexpected extra tensor,
/// a shape or dtype different from the spec (no conversion is attempted), a non-finite float.
/// A file that is absent, truncated or not safetensors is an error naming the file.
pub fn load_strict(
    path: &Path,
    expected: &[Spec],
) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    // Names, dtypes and shapes from the header first: clear errors, and only then a read
    // bounded by the expected tensors.
    let (_, _, _, header, _) = read_header(path)?;
    check_header(path, &header, expected)?;
    let bytes = read_file(path, spec_bytes(expected))?;
    decode_expected(path, &bytes, expected)
}

/// `load_strict` of a file already in memory (the page's upload); `path` names it in errors.
pub fn load_strict_bytes(path: &Path, bytes: &[u8], expected: &[Spec]) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    check_header(path, header_of_bytes(path, bytes)?, expected)?;
    decode_expected(path, bytes, expected)
}

/// The header's tensors are exactly `expected`, with their dtypes and shapes.
fn check_header(path: &Path, header: &[u8], expected: &[Spec]) -> Result<()> {
    let json: serde_json::Value = serde_json::from_slice(header)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let entries = json.as_object().cloned().unwrap_or_default();
    let present: BTreeSet<&str> = entries.keys().map(String::as_str).filter(|n| *n != "__metadata__").collect();
    let wanted: BTreeSet<&str> = expected.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|s| !present.contains(s.name.as_str()))
        .map(|s| format!("`{}`", s.name))
        .collect();
    let extra: Vec<String> = present
        .iter()
        .filter(|n| !wanted.contains(*n))
        .map(|n| format!("`{n}`"))
        .collect();
    // Report both lists at once: a renamed tensor shows up as one missing + one unexpected.
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing tensor {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        problems.push(format!("unexpected tensor {}", extra.join(", ")));
    }
    if !problems.is_empty() {
        bail!("{}: {}", path.display(), problems.join("; "));
    }
    for spec in expected {
        let e = &entries[&spec.name];
        let dtype = e.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        if dtype != spec.dtype.to_string() {
            bail!("{}: tensor `{}` has dtype {dtype}, expected {}", path.display(), spec.name, spec.dtype);
        }
        let shape: Option<Vec<usize>> =
            e.get("shape").and_then(|s| s.as_array()).and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        match shape {
            Some(shape) if shape == spec.shape => {}
            Some(shape) => bail!("{}: tensor `{}` has shape {:?}, expected {:?}", path.display(), spec.name, shape, spec.shape),
            None => bail!("{}: not a valid safetensors file: tensor `{}` has no valid shape", path.display(), spec.name),
        }
    }
    Ok(())
}

/// The `expected` tensors of a whole file's bytes, each checked again as decoded.
fn decode_expected(path: &Path, bytes: &[u8], expected: &[Spec]) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let (st, metadata) = parse(path, bytes)?;

    let mut out = Vec::with_capacity(expected.len());
    for spec in expected {
        let view = st.tensor(&spec.name).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot read tensor `{}`: {e}",
                path.display(),
                spec.name
            )
        })?;
        let dtype = view.dtype();
        if Dtype::from_safetensors(dtype) != Some(spec.dtype) {
            bail!(
                "{}: tensor `{}` has dtype {}, expected {}",
                path.display(),
                spec.name,
                dtype,
                spec.dtype
            );
        }
        if view.shape() != spec.shape.as_slice() {
            bail!(
                "{}: tensor `{}` has shape {:?}, expected {:?}",
                path.display(),
                spec.name,
                view.shape(),
                spec.shape
            );
        }
        let t = decode(path, &spec.name, &view)?;
        check_finite(path, &t)?;
        out.push(t);
    }
    Ok((out, metadata))
}

/// Loads every tensor of a file (sorted by name), for tools that inspect checkpoints or
/// reference dumps. Values are returned as stored: non-finite floats are not rejected here.
/// Dtypes other than F32 and I64 are an error naming the tensor and the file.
pub fn load_any(path: &Path) -> Result<Vec<NamedTensor>> {
    load_any_bytes(path, &read_file(path, MAX_ANY_DATA)?)
}

/// `load_any` of a file already in memory; `path` names it in errors.
pub fn load_any_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<NamedTensor>> {
    let (st, _) = parse(path, bytes)?;
    let mut names = st.names();
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| {
            let view = st.tensor(name).map_err(|e| {
                anyhow::anyhow!("{}: cannot read tensor `{name}`: {e}", path.display())
            })?;
            decode(path, name, &view)
        })
        .collect()
}

/// The string metadata (`__metadata__`) of a safetensors file, without decoding tensors.
/// Reads only the header (bounded by its own limit).
pub fn load_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let (_, _, _, header, _) = read_header(path)?;
    metadata_of_header(path, &header)
}

/// `load_metadata` of a file already in memory; `path` names it in errors.
pub fn metadata_of_bytes(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    metadata_of_header(path, header_of_bytes(path, bytes)?)
}

/// The JSON header of a safetensors file's bytes.
fn header_of_bytes<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let n = bytes.get(..8).map(|n| u64::from_le_bytes(n.try_into().expect("8 bytes")));
    let header = n.and_then(|n| bytes.get(8..8usize.checked_add(usize::try_from(n).ok()?)?));
    header.ok_or_else(|| anyhow::anyhow!("{}: not a valid safetensors file: {} bytes, too short for its header", path.display(), bytes.len()))
}

fn metadata_of_header(path: &Path, header: &[u8]) -> Result<BTreeMap<String, String>> {
    let json: serde_json::Value = serde_json::from_slice(header)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    if let Some(meta) = json.get("__metadata__") {
        let Some(meta) = meta.as_object() else {
            bail!("{}: not a valid safetensors file: `__metadata__` is not an object", path.display());
        };
        for (k, v) in meta {
            let Some(v) = v.as_str() else {
                bail!("{}: not a valid safetensors file: metadata `{k}` is not a string", path.display());
            };
            out.insert(k.clone(), v.to_string());
        }
    }
    Ok(out)
}
