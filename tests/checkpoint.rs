//! Checkpoint files: PyTorch-compatible safetensors, strict loading, atomic saving.
//!
//! Every test works in its own fresh directory under the system temp dir and removes it at the end.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use wgsl_cnn::checkpoint::{
    load_any, load_metadata, load_strict, optimizer_path, save, temp_path, Dtype, NamedTensor,
    Spec, TensorData,
};
use wgsl_cnn::rng::Rng;

/// A fresh, empty directory unique to this process and call; removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("wgsl-cnn-ckpt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
    /// Names of everything in the directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The seed LeNet-5's state_dict, exactly as PyTorch names and shapes it.
fn lenet_specs() -> Vec<Spec> {
    let mut s = vec![
        Spec::new("conv1.weight", &[20, 1, 5, 5], Dtype::F32),
        Spec::new("conv1.bias", &[20], Dtype::F32),
    ];
    s.extend(batchnorm_specs("batchnorm1", 20));
    s.push(Spec::new("conv2.weight", &[50, 20, 5, 5], Dtype::F32));
    s.push(Spec::new("conv2.bias", &[50], Dtype::F32));
    s.extend(batchnorm_specs("batchnorm2", 50));
    s.push(Spec::new("fc1.weight", &[500, 800], Dtype::F32));
    s.push(Spec::new("fc1.bias", &[500], Dtype::F32));
    s.push(Spec::new("fc2.weight", &[10, 500], Dtype::F32));
    s.push(Spec::new("fc2.bias", &[10], Dtype::F32));
    s
}

fn batchnorm_specs(prefix: &str, c: usize) -> Vec<Spec> {
    let mut s: Vec<Spec> = ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .map(|p| Spec::new(format!("{prefix}.{p}"), &[c], Dtype::F32))
        .collect();
    // PyTorch stores the counter as a 0-d int64 tensor.
    s.push(Spec::new(
        format!("{prefix}.num_batches_tracked"),
        &[],
        Dtype::I64,
    ));
    s
}

/// Random tensors matching `specs`; floats include negatives, tiny and huge magnitudes.
fn random_tensors(specs: &[Spec], seed: u64) -> Vec<NamedTensor> {
    let mut rng = Rng::new(seed);
    specs
        .iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let data = match s.dtype {
                Dtype::F32 => {
                    let mut v = rng.uniform_vec(n, -1.0, 1.0);
                    // Exercise bit patterns beyond [-1, 1]: subnormal, -0.0, large values.
                    if n >= 3 {
                        v[0] = f32::MIN_POSITIVE / 4.0;
                        v[1] = -0.0;
                        v[2] = 3.4e38;
                    }
                    TensorData::F32(v)
                }
                Dtype::I64 => TensorData::I64((0..n).map(|_| rng.next_u64() as i64).collect()),
            };
            NamedTensor {
                name: s.name.clone(),
                shape: s.shape.clone(),
                data,
            }
        })
        .collect()
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_bits_equal(got: &NamedTensor, want: &NamedTensor) {
    assert_eq!(got.name, want.name);
    assert_eq!(got.shape, want.shape, "shape of `{}`", want.name);
    match (&got.data, &want.data) {
        (TensorData::F32(g), TensorData::F32(w)) => {
            assert_eq!(g.len(), w.len(), "length of `{}`", want.name);
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "`{}`[{i}]: got {a:e}, want {b:e}",
                    want.name
                );
            }
        }
        (TensorData::I64(g), TensorData::I64(w)) => assert_eq!(g, w, "values of `{}`", want.name),
        _ => panic!(
            "`{}`: dtype changed from {} to {}",
            want.name,
            want.dtype(),
            got.dtype()
        ),
    }
}

/// Writes a file with the safetensors crate directly (any dtype, any values), bypassing `save`.
fn write_raw(path: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `load_strict` must fail, and the message must name the file and contain every `needle`.
fn expect_rejected(path: &Path, specs: &[Spec], needles: &[&str]) -> String {
    let err = match load_strict(path, specs) {
        Ok(_) => panic!(
            "{} was accepted, expected an error containing {needles:?}",
            path.display()
        ),
        Err(e) => format!("{e:#}"),
    };
    let file_name = path.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&*file_name),
        "error does not name the file {file_name}: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error does not contain {n:?}: {err}");
    }
    err
}

#[test]
fn round_trip_is_bit_exact_and_follows_expected_order() {
    let seed = 0xC0FFEE;
    let dir = TempDir::new("roundtrip");
    let path = dir.join("model.safetensors");
    let specs = lenet_specs();
    let tensors = random_tensors(&specs, seed);
    let metadata = meta(&[("epoch", "3"), ("seed", "42"), ("format", "pt")]);
    save(&path, &tensors, &metadata).unwrap();

    // Ask for the tensors in a different order than they were saved (reversed).
    let reversed: Vec<Spec> = specs.iter().rev().cloned().collect();
    let (loaded, got_meta) = load_strict(&path, &reversed).unwrap();
    assert_eq!(loaded.len(), specs.len(), "seed {seed}");
    for (got, want) in loaded.iter().zip(tensors.iter().rev()) {
        assert_bits_equal(got, want);
    }
    assert_eq!(got_meta, metadata, "metadata changed in the round trip");
    assert_eq!(load_metadata(&path).unwrap(), metadata);

    // load_any sees the same tensors, sorted by name.
    let all = load_any(&path).unwrap();
    let mut sorted = tensors.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(all.len(), sorted.len());
    for (got, want) in all.iter().zip(&sorted) {
        assert_bits_equal(got, want);
    }

    // Saving again over the file replaces it with the new content.
    let tensors2 = random_tensors(&specs, seed + 1);
    save(&path, &tensors2, &BTreeMap::new()).unwrap();
    let (loaded2, meta2) = load_strict(&path, &specs).unwrap();
    for (got, want) in loaded2.iter().zip(&tensors2) {
        assert_bits_equal(got, want);
    }
    assert!(
        meta2.is_empty(),
        "metadata should be empty after saving none: {meta2:?}"
    );
    assert_eq!(
        dir.listing(),
        vec!["model.safetensors"],
        "a successful save left other files"
    );
}

#[test]
fn optimizer_state_lives_next_to_the_model_file() {
    let dir = TempDir::new("optim");
    let model = dir.join("model.safetensors");
    let optim = optimizer_path(&model);
    assert_eq!(optim, dir.join("model.optim.safetensors"));
    assert_eq!(
        optimizer_path(Path::new("ckpt")),
        PathBuf::from("ckpt.optim.safetensors")
    );
    assert_eq!(
        optimizer_path(Path::new("a/b.bin")),
        PathBuf::from("a/b.bin.optim.safetensors")
    );

    // Adam moments for every float parameter + resume metadata, through save/load_strict.
    let params: Vec<Spec> = lenet_specs()
        .into_iter()
        .filter(|s| s.dtype == Dtype::F32)
        .collect();
    let specs: Vec<Spec> = ["m", "v"]
        .iter()
        .flat_map(|k| {
            params
                .iter()
                .map(move |p| Spec::new(format!("adam.{k}.{}", p.name), &p.shape, Dtype::F32))
        })
        .collect();
    let tensors = random_tensors(&specs, 7);
    let metadata = meta(&[("step", "1200"), ("epoch", "2"), ("seed", "1")]);
    save(&optim, &tensors, &metadata).unwrap();
    let (loaded, got_meta) = load_strict(&optim, &specs).unwrap();
    for (got, want) in loaded.iter().zip(&tensors) {
        assert_bits_equal(got, want);
    }
    assert_eq!(got_meta, metadata);
    assert_eq!(dir.listing(), vec!["model.optim.safetensors"]);
}

#[test]
fn missing_tensor_is_rejected_by_name() {
    let dir = TempDir::new("missing");
    let path = dir.join("model.safetensors");
    let specs = lenet_specs();
    let mut tensors = random_tensors(&specs, 11);
    tensors.retain(|t| t.name != "fc2.bias" && t.name != "batchnorm1.num_batches_tracked");
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(
        &path,
        &specs,
        &["missing", "`fc2.bias`", "`batchnorm1.num_batches_tracked`"],
    );
}

#[test]
fn extra_tensor_is_rejected_by_name() {
    let dir = TempDir::new("extra");
    let path = dir.join("model.safetensors");
    let specs = lenet_specs();
    let mut tensors = random_tensors(&specs, 12);
    tensors.push(NamedTensor::f32("fc3.weight", &[2, 3], vec![0.5; 6]));
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(&path, &specs, &["unexpected", "`fc3.weight`"]);

    // A renamed tensor (a typo in one name) is reported as both missing and unexpected.
    let mut tensors = random_tensors(&specs, 22);
    tensors
        .iter_mut()
        .find(|t| t.name == "batchnorm2.running_var")
        .unwrap()
        .name = "batchnorm2.running_variance".into();
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(
        &path,
        &specs,
        &[
            "missing tensor `batchnorm2.running_var`",
            "unexpected tensor `batchnorm2.running_variance`",
        ],
    );
}

#[test]
fn wrong_shape_is_rejected_with_both_shapes() {
    let dir = TempDir::new("shape");
    let path = dir.join("model.safetensors");
    let specs = lenet_specs();
    let mut tensors = random_tensors(&specs, 13);
    let fc1 = tensors.iter_mut().find(|t| t.name == "fc1.weight").unwrap();
    fc1.shape = vec![500, 799];
    fc1.data = TensorData::F32(vec![0.25; 500 * 799]);
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(
        &path,
        &specs,
        &["tensor `fc1.weight` has shape [500, 799], expected [500, 800]"],
    );

    // Same element count, different shape: [1] stored where PyTorch has a 0-d scalar.
    let mut tensors = random_tensors(&specs, 14);
    tensors
        .iter_mut()
        .find(|t| t.name == "batchnorm2.num_batches_tracked")
        .unwrap()
        .shape = vec![1];
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(
        &path,
        &specs,
        &["`batchnorm2.num_batches_tracked` has shape [1], expected []"],
    );
}

#[test]
fn wrong_dtype_is_rejected_without_conversion() {
    let dir = TempDir::new("dtype");
    let path = dir.join("model.safetensors");

    // F64 bias written with the safetensors crate directly.
    let specs = vec![
        Spec::new("conv1.weight", &[2, 2], Dtype::F32),
        Spec::new("conv1.bias", &[3], Dtype::F32),
    ];
    let f64_bytes: Vec<u8> = [0.1f64, 0.2, 0.3]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_raw(
        &path,
        &[
            (
                "conv1.weight",
                safetensors::Dtype::F32,
                vec![2, 2],
                f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
            ),
            ("conv1.bias", safetensors::Dtype::F64, vec![3], f64_bytes),
        ],
    );
    expect_rejected(
        &path,
        &specs,
        &["tensor `conv1.bias` has dtype F64, expected F32"],
    );
    // load_any supports F32/I64 only and names the offending tensor.
    let err = format!("{:#}", load_any(&path).unwrap_err());
    assert!(
        err.contains("`conv1.bias`") && err.contains("F64") && err.contains("model.safetensors"),
        "{err}"
    );

    // The I64 counter saved as F32: refused, not converted.
    let specs = lenet_specs();
    let mut tensors = random_tensors(&specs, 15);
    let nbt = tensors
        .iter_mut()
        .find(|t| t.name == "batchnorm1.num_batches_tracked")
        .unwrap();
    nbt.data = TensorData::F32(vec![600.0]);
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(
        &path,
        &specs,
        &["tensor `batchnorm1.num_batches_tracked` has dtype F32, expected I64"],
    );

    // And an F32 parameter saved as I64.
    let mut tensors = random_tensors(&specs, 16);
    let bias = tensors.iter_mut().find(|t| t.name == "fc2.bias").unwrap();
    bias.data = TensorData::I64(vec![1; 10]);
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    expect_rejected(
        &path,
        &specs,
        &["tensor `fc2.bias` has dtype I64, expected F32"],
    );
}

#[test]
fn non_finite_values_are_rejected_with_index() {
    let dir = TempDir::new("nonfinite");
    let specs = vec![
        Spec::new("conv1.weight", &[2, 2], Dtype::F32),
        Spec::new("conv1.bias", &[5], Dtype::F32),
    ];
    let cases: [(f32, usize, &str); 3] = [
        (f32::NAN, 3, "holds NaN at index 3"),
        (f32::INFINITY, 0, "holds inf at index 0"),
        (f32::NEG_INFINITY, 4, "holds -inf at index 4"),
    ];
    for (k, (bad, index, needle)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{k}.safetensors"));
        let mut bias = vec![0.5f32; 5];
        bias[*index] = *bad;
        // `save` refuses non-finite data, so write the file directly.
        write_raw(
            &path,
            &[
                (
                    "conv1.weight",
                    safetensors::Dtype::F32,
                    vec![2, 2],
                    f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
                ),
                (
                    "conv1.bias",
                    safetensors::Dtype::F32,
                    vec![5],
                    f32_bytes(&bias),
                ),
            ],
        );
        expect_rejected(&path, &specs, &["`conv1.bias`", needle]);
    }
}

#[test]
fn save_refuses_non_finite_and_keeps_the_old_file() {
    let dir = TempDir::new("savenan");
    let path = dir.join("model.safetensors");
    let good = vec![NamedTensor::f32("w", &[3], vec![1.0, 2.0, 3.0])];
    save(&path, &good, &BTreeMap::new()).unwrap();
    let before = fs::read(&path).unwrap();

    let bad = vec![NamedTensor::f32("w", &[3], vec![1.0, f32::NAN, 3.0])];
    let err = format!("{:#}", save(&path, &bad, &BTreeMap::new()).unwrap_err());
    assert!(
        err.contains("`w` holds NaN at index 1") && err.contains("model.safetensors"),
        "{err}"
    );
    // Data length that does not match the shape is refused too.
    let bad = vec![NamedTensor::f32("w", &[2, 2], vec![1.0, 2.0, 3.0])];
    let err = format!("{:#}", save(&path, &bad, &BTreeMap::new()).unwrap_err());
    assert!(
        err.contains("`w`") && err.contains("[2, 2]") && err.contains("model.safetensors"),
        "{err}"
    );
    // Duplicate names would make the file ambiguous.
    let bad = vec![
        NamedTensor::f32("w", &[1], vec![1.0]),
        NamedTensor::f32("w", &[1], vec![2.0]),
    ];
    let err = format!("{:#}", save(&path, &bad, &BTreeMap::new()).unwrap_err());
    assert!(err.contains("`w` appears twice"), "{err}");

    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "a refused save modified the existing file"
    );
    assert_eq!(dir.listing(), vec!["model.safetensors"]);
}

#[test]
fn garbage_truncated_and_missing_files_are_rejected_by_file_name() {
    let dir = TempDir::new("garbage");
    let specs = lenet_specs();

    let missing = dir.join("does-not-exist.safetensors");
    expect_rejected(&missing, &specs, &["cannot read"]);
    assert!(format!("{:#}", load_any(&missing).unwrap_err()).contains("does-not-exist.safetensors"));

    let garbage = dir.join("garbage.safetensors");
    fs::write(&garbage, b"this is a text file, not a checkpoint at all\n").unwrap();
    expect_rejected(&garbage, &specs, &["not a valid safetensors file"]);

    let empty = dir.join("empty.safetensors");
    fs::write(&empty, b"").unwrap();
    expect_rejected(&empty, &specs, &["not a valid safetensors file"]);

    // A header length that claims more bytes than the file has; and a non-JSON header.
    let lying = dir.join("lying.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    fs::write(&lying, &bytes).unwrap();
    expect_rejected(&lying, &specs, &["not a valid safetensors file"]);
    let nonjson = dir.join("nonjson.safetensors");
    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"\xff\xfe[[[[[[");
    fs::write(&nonjson, &bytes).unwrap();
    expect_rejected(&nonjson, &specs, &["not a valid safetensors file"]);

    // Truncations of a good file at several points: in the length prefix, in the header, in the data.
    let good = dir.join("good.safetensors");
    save(&good, &random_tensors(&specs, 17), &BTreeMap::new()).unwrap();
    let full = fs::read(&good).unwrap();
    let header_len = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    for cut in [
        4,
        8,
        8 + header_len / 2,
        8 + header_len + 1,
        full.len() / 2,
        full.len() - 1,
    ] {
        let path = dir.join(format!("truncated-{cut}.safetensors"));
        fs::write(&path, &full[..cut]).unwrap();
        expect_rejected(&path, &specs, &["not a valid safetensors file"]);
        assert!(
            load_any(&path).is_err(),
            "load_any accepted a file truncated at {cut}"
        );
    }
    // Trailing bytes after the data are not a valid file either.
    let long = dir.join("long.safetensors");
    let mut bytes = full.clone();
    bytes.extend_from_slice(&[0; 4]);
    fs::write(&long, &bytes).unwrap();
    expect_rejected(&long, &specs, &["not a valid safetensors file"]);
}

#[test]
fn failed_save_onto_a_directory_leaves_it_and_no_temp_file() {
    let dir = TempDir::new("atomic-dir");
    // The destination is an existing (non-empty) directory: the final rename must fail.
    let path = dir.join("model.safetensors");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep.txt"), b"keep").unwrap();
    let tensors = random_tensors(&lenet_specs(), 18);
    let err = format!("{:#}", save(&path, &tensors, &BTreeMap::new()).unwrap_err());
    assert!(
        err.contains("model.safetensors"),
        "error does not name the file: {err}"
    );
    assert!(path.is_dir(), "destination directory was replaced");
    assert_eq!(fs::read(path.join("keep.txt")).unwrap(), b"keep");
    assert_eq!(
        dir.listing(),
        vec!["model.safetensors"],
        "a temp file was left behind"
    );
}

#[test]
fn failed_write_keeps_the_old_file_intact() {
    let dir = TempDir::new("atomic-file");
    let path = dir.join("model.safetensors");
    let specs = lenet_specs();
    let old = random_tensors(&specs, 19);
    save(&path, &old, &meta(&[("epoch", "1")])).unwrap();
    let before = fs::read(&path).unwrap();

    // Make the temporary file impossible to create (a directory squats on its name), so the
    // write fails before the rename; the good file must survive untouched.
    let tmp = temp_path(&path);
    assert_eq!(
        tmp.parent(),
        path.parent(),
        "temp file must be in the destination's directory"
    );
    fs::create_dir(&tmp).unwrap();
    let new = random_tensors(&specs, 20);
    let err = format!(
        "{:#}",
        save(&path, &new, &meta(&[("epoch", "2")])).unwrap_err()
    );
    assert!(
        err.contains("model.safetensors"),
        "error does not name the file: {err}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the old checkpoint was modified by a failed save"
    );
    let (loaded, m) = load_strict(&path, &specs).unwrap();
    assert_eq!(m, meta(&[("epoch", "1")]));
    for (got, want) in loaded.iter().zip(&old) {
        assert_bits_equal(got, want);
    }
    assert!(tmp.is_dir(), "save removed something it did not create");
    fs::remove_dir(&tmp).unwrap();

    // With the obstruction gone, the next save succeeds and leaves only the checkpoint.
    save(&path, &new, &meta(&[("epoch", "2")])).unwrap();
    let (loaded, _) = load_strict(&path, &specs).unwrap();
    for (got, want) in loaded.iter().zip(&new) {
        assert_bits_equal(got, want);
    }
    assert_eq!(dir.listing(), vec!["model.safetensors"]);
}

#[test]
fn header_matches_what_pytorch_safetensors_expects() {
    let dir = TempDir::new("golden");
    let path = dir.join("model.safetensors");
    let specs = lenet_specs();
    let mut tensors = random_tensors(&specs, 21);
    tensors
        .iter_mut()
        .find(|t| t.name == "batchnorm1.num_batches_tracked")
        .unwrap()
        .data = TensorData::I64(vec![600]);
    save(&path, &tensors, &meta(&[("format", "pt")])).unwrap();

    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header length {n} not 8-byte aligned");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let obj = header.as_object().unwrap();
    assert_eq!(
        obj.len(),
        specs.len() + 1,
        "header keys: {:?}",
        obj.keys().collect::<Vec<_>>()
    );
    assert_eq!(header["__metadata__"], serde_json::json!({"format": "pt"}));

    let data = &bytes[8 + n..];
    let mut covered = 0usize;
    for s in &specs {
        let entry = &header[&s.name];
        let (dtype, size) = match s.dtype {
            Dtype::F32 => ("F32", 4),
            Dtype::I64 => ("I64", 8),
        };
        assert_eq!(entry["dtype"], dtype, "`{}`: {entry}", s.name);
        assert_eq!(
            entry["shape"],
            serde_json::json!(s.shape),
            "`{}`: {entry}",
            s.name
        );
        let offs = entry["data_offsets"].as_array().unwrap();
        let (a, b) = (
            offs[0].as_u64().unwrap() as usize,
            offs[1].as_u64().unwrap() as usize,
        );
        let elems: usize = s.shape.iter().product();
        assert_eq!(b - a, elems * size, "`{}` byte span", s.name);
        covered += b - a;
    }
    assert_eq!(
        covered,
        data.len(),
        "tensors do not tile the data section exactly"
    );

    // The 0-d int64 counter: dtype "I64", shape [] (not [1]), one little-endian element.
    let nbt = &header["batchnorm1.num_batches_tracked"];
    assert_eq!(nbt["dtype"], serde_json::json!("I64"));
    assert_eq!(nbt["shape"], serde_json::json!([]));
    let offs: Vec<usize> = nbt["data_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(offs[1] - offs[0], 8);
    assert_eq!(&data[offs[0]..offs[1]], &600i64.to_le_bytes());

    // A float parameter's bytes are its f32 values, little-endian, row-major.
    let fc2b = tensors
        .iter()
        .find(|t| t.name == "fc2.bias")
        .unwrap()
        .as_f32()
        .unwrap()
        .to_vec();
    let offs: Vec<usize> = header["fc2.bias"]["data_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(&data[offs[0]..offs[1]], f32_bytes(&fc2b).as_slice());

    // The reference implementation agrees: the safetensors crate parses it and sees the same table.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shapes: HashMap<String, Vec<usize>> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    for s in &specs {
        assert_eq!(shapes[&s.name], s.shape, "`{}`", s.name);
    }
}

/// A file written by PyTorch 2.15 + safetensors 0.8 (Python) with
/// `save_file({"batchnorm1.weight": tensor([1.0, 0.5, -2.0]), "batchnorm1.bias": tensor([0.0, 0.25, -0.125]),
///   "batchnorm1.running_mean": tensor([0.1, -0.2, 0.3]), "batchnorm1.running_var": tensor([1.5, 2.0, 0.75]),
///   "batchnorm1.num_batches_tracked": tensor(7, dtype=torch.long), "fc2.bias": tensor([3.0, -1e-3])}, path)`.
fn pytorch_written_file() -> Vec<u8> {
    let header = br#"{"batchnorm1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"batchnorm1.bias":{"dtype":"F32","shape":[3],"data_offsets":[8,20]},"batchnorm1.running_mean":{"dtype":"F32","shape":[3],"data_offsets":[20,32]},"batchnorm1.running_var":{"dtype":"F32","shape":[3],"data_offsets":[32,44]},"batchnorm1.weight":{"dtype":"F32","shape":[3],"data_offsets":[44,56]},"fc2.bias":{"dtype":"F32","shape":[2],"data_offsets":[56,64]}}    "#;
    let data = b"\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3e\x00\x00\x00\xbe\xcd\xcc\xcc\x3d\xcd\xcc\x4c\xbe\x9a\x99\x99\x3e\x00\x00\xc0\x3f\x00\x00\x00\x40\x00\x00\x40\x3f\x00\x00\x80\x3f\x00\x00\x00\x3f\x00\x00\x00\xc0\x00\x00\x40\x40\x6f\x12\x83\xba";
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    assert_eq!(bytes.len(), 512, "fixture was transcribed wrongly");
    bytes
}

fn tiny_tensors() -> Vec<NamedTensor> {
    vec![
        NamedTensor::f32("batchnorm1.weight", &[3], vec![1.0, 0.5, -2.0]),
        NamedTensor::f32("batchnorm1.bias", &[3], vec![0.0, 0.25, -0.125]),
        NamedTensor::f32("batchnorm1.running_mean", &[3], vec![0.1, -0.2, 0.3]),
        NamedTensor::f32("batchnorm1.running_var", &[3], vec![1.5, 2.0, 0.75]),
        NamedTensor::i64("batchnorm1.num_batches_tracked", &[], vec![7]),
        NamedTensor::f32("fc2.bias", &[2], vec![3.0, -1e-3]),
    ]
}

#[test]
fn pytorch_written_file_loads_strictly_and_save_reproduces_it_byte_for_byte() {
    let dir = TempDir::new("pytorch");
    let torch_file = dir.join("torch.safetensors");
    fs::write(&torch_file, pytorch_written_file()).unwrap();
    let want = tiny_tensors();
    let specs: Vec<Spec> = want.iter().map(Spec::of).collect();
    let (loaded, metadata) = load_strict(&torch_file, &specs).unwrap();
    assert!(metadata.is_empty(), "{metadata:?}");
    for (got, want) in loaded.iter().zip(&want) {
        assert_bits_equal(got, want);
    }

    // Our writer produces exactly the bytes PyTorch's did (same order, header and padding).
    let ours = dir.join("ours.safetensors");
    save(&ours, &want, &BTreeMap::new()).unwrap();
    assert_eq!(
        fs::read(&ours).unwrap(),
        pytorch_written_file(),
        "save differs from PyTorch's bytes"
    );
}

// ---- optimizer state (issue 27) ---------------------------------------------------------

use wgsl_cnn::model::{state, zoo, Model};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::shapes::{AdamConfig, OptimizerConfig, SgdConfig};

/// `steps` training steps of an mlp on the CPU reference, each on its own seeded batch of 4.
fn train_steps(be: &mut Cpu, model: &mut Model<Cpu>, cfg: &OptimizerConfig, first: u64, steps: u64) {
    for s in first..first + steps {
        let mut rng = Rng::new(1000 + s);
        let x = rng.uniform_vec(4 * 784, 0.0, 1.0);
        let y: Vec<u32> = (0..4).map(|_| rng.below(10) as u32).collect();
        model.set_batch(be, &x, &y);
        model.train_step(be, 4, cfg);
    }
}

fn optimizers() -> [OptimizerConfig; 5] {
    [
        OptimizerConfig::Sgd(SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4, ..SgdConfig::default() }),
        OptimizerConfig::Sgd(SgdConfig { lr: 0.05, ..SgdConfig::default() }),
        OptimizerConfig::Adam(AdamConfig::adamw(2e-3)),
        OptimizerConfig::Adam(AdamConfig { weight_decay: 1e-2, ..AdamConfig::default() }),
        OptimizerConfig::default(),
    ]
}

/// Each optimizer's state goes into the optimizer file under its own names with the optimizer
/// and its hyper-parameters in the metadata, and a resume from it continues bit for bit as
/// the run that was not interrupted (SGD's momentum buffer included).
#[test]
fn optimizer_state_round_trips_and_resumes_bit_exactly() {
    let dir = TempDir::new("optim-resume");
    for (k, cfg) in optimizers().iter().enumerate() {
        let path = dir.join(format!("m{k}.safetensors"));
        let be = &mut Cpu::default();
        let mut straight = Model::new(be, &zoo::mlp(), 4, 7).unwrap();
        train_steps(be, &mut straight, cfg, 0, 3);
        pollster::block_on(state::save_training(be, &straight, &path, 1, &[])).unwrap();
        train_steps(be, &mut straight, cfg, 3, 2);

        let names: Vec<String> = load_any(&optimizer_path(&path)).unwrap().into_iter().map(|t| t.name).collect();
        let prefixes: &[&str] = match cfg {
            OptimizerConfig::Sgd(s) if s.momentum != 0.0 => &["sgd.momentum_buffer."],
            OptimizerConfig::Sgd(_) => &[],
            OptimizerConfig::Adam(_) => &["adam.m.", "adam.v."],
        };
        let params = straight.store.params.len();
        assert_eq!(names.len(), prefixes.len() * params, "{}: {names:?}", cfg.name());
        assert!(names.iter().all(|n| prefixes.iter().any(|p| n.starts_with(p))), "{}: {names:?}", cfg.name());
        for p in [&path, &optimizer_path(&path)] {
            let m = load_metadata(p).unwrap();
            for (key, value) in cfg.metadata() {
                assert_eq!(m.get(key), Some(&value), "{}: metadata `{key}` of {}", cfg.name(), p.display());
            }
        }

        let be2 = &mut Cpu::default();
        let (mut resumed, epoch, _) = state::load_training_as(be2, &path, None, 4, Some(cfg)).unwrap();
        assert_eq!((epoch, resumed.adam_step, resumed.optimizer), (1, 3, *cfg));
        assert_eq!(resumed.momentum_set, matches!(cfg, OptimizerConfig::Sgd(s) if s.momentum != 0.0));
        train_steps(be2, &mut resumed, cfg, 3, 2);
        let (a, b) = (pollster::block_on(state::state_dict(be, &straight)), pollster::block_on(state::state_dict(be2, &resumed)));
        for (x, y) in a.iter().zip(&b) {
            assert_bits_equal(y, x);
        }
    }
}

/// SGD saved without a momentum and resumed with one starts the buffer afresh (the next step
/// clones d, as PyTorch does for a parameter without a buffer): the same as a fresh momentum
/// run from the same parameters.
#[test]
fn sgd_resumed_with_a_momentum_starts_the_buffer_afresh() {
    let dir = TempDir::new("optim-momentum");
    let path = dir.join("m.safetensors");
    let plain = OptimizerConfig::Sgd(SgdConfig { lr: 0.05, ..SgdConfig::default() });
    let heavy = OptimizerConfig::Sgd(SgdConfig { lr: 0.05, momentum: 0.9, dampening: 0.5, ..SgdConfig::default() });
    let be = &mut Cpu::default();
    let mut model = Model::new(be, &zoo::mlp(), 4, 3).unwrap();
    train_steps(be, &mut model, &plain, 0, 2);
    pollster::block_on(state::save_training(be, &model, &path, 1, &[])).unwrap();
    let (mut resumed, _, _) = state::load_training_as(be, &path, None, 4, Some(&heavy)).unwrap();
    assert!(!resumed.momentum_set);
    train_steps(be, &mut resumed, &heavy, 2, 1);
    // By hand: the first step with a momentum is p − lr·g whatever the dampening.
    let mut fresh = Model::new(be, &zoo::mlp(), 4, 3).unwrap();
    train_steps(be, &mut fresh, &plain, 0, 3);
    let (a, b) = (pollster::block_on(state::state_dict(be, &resumed)), pollster::block_on(state::state_dict(be, &fresh)));
    for (x, y) in a.iter().zip(&b) {
        assert_bits_equal(x, y);
    }
}

/// A resume with another optimizer is refused before anything is loaded, naming both
/// optimizers and the file; a checkpoint from before there were several optimizers (no
/// `optimizer` metadata) is Adam's.
#[test]
fn resume_with_another_optimizer_is_an_error_naming_both() {
    let dir = TempDir::new("optim-other");
    let [sgd, _, adamw, _, adam] = optimizers();
    for (saved, wanted) in [(sgd, adam), (adam, sgd), (adam, adamw), (adamw, adam)] {
        let path = dir.join(format!("{}.safetensors", saved.name()));
        let be = &mut Cpu::default();
        let mut model = Model::new(be, &zoo::mlp(), 4, 1).unwrap();
        train_steps(be, &mut model, &saved, 0, 1);
        pollster::block_on(state::save_training(be, &model, &path, 1, &[])).unwrap();
        let msg = match state::load_training_as(be, &path, None, 4, Some(&wanted)) {
            Ok(_) => panic!("{} resumed as {}", saved.name(), wanted.name()),
            Err(e) => format!("{e:#}"),
        };
        for needle in [format!("`{}`", saved.name()), format!("`{}`", wanted.name()), path.display().to_string(), format!("--optimizer {}", saved.name())] {
            assert!(msg.contains(&needle), "message lacks {needle:?}: {msg}");
        }
        // The same optimizer with other hyper-parameters resumes.
        let other_lr = saved.with_lr(0.5);
        state::load_training_as(be, &path, None, 4, Some(&other_lr)).unwrap();
    }

    // An older Adam pair: the `optimizer` key and the hyper-parameters removed from both files.
    let path = dir.join("adam.safetensors");
    for p in [path.clone(), optimizer_path(&path)] {
        let tensors = load_any(&p).unwrap();
        let mut m = load_metadata(&p).unwrap();
        for (key, _) in adam.metadata() {
            m.remove(key);
        }
        save(&p, &tensors, &m).unwrap();
    }
    let be = &mut Cpu::default();
    let (model, _, _) = state::load_training_as(be, &path, None, 4, Some(&adam)).unwrap();
    assert_eq!(model.optimizer, adam);
    let msg = format!("{:#}", state::load_training_as(be, &path, None, 4, Some(&sgd)).err().expect("refused"));
    assert!(msg.contains("`adam`") && msg.contains("`sgd`"), "{msg}");
}
