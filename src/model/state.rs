//! The model's state_dict in PyTorch's names, and the training state (Adam's moments and
//! the epoch) in a second file next to it, both as safetensors.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::backend::Backend;
use crate::checkpoint::{self, Dtype, NamedTensor, Spec, TensorData};
use crate::model::params::LENET5_PARAMS;
use crate::model::Lenet5;

/// Every state_dict entry in PyTorch's order: parameters with each BatchNorm's buffers
/// right after its weight and bias.
pub fn state_dict_specs() -> Vec<Spec> {
    let mut specs = Vec::new();
    for p in LENET5_PARAMS.iter() {
        specs.push(Spec { name: p.name.to_string(), shape: p.shape.to_vec(), dtype: Dtype::F32 });
        if let Some(layer) = p.name.strip_suffix(".bias").filter(|l| l.starts_with("batchnorm")) {
            let c = p.shape[0];
            specs.push(Spec { name: format!("{layer}.running_mean"), shape: vec![c], dtype: Dtype::F32 });
            specs.push(Spec { name: format!("{layer}.running_var"), shape: vec![c], dtype: Dtype::F32 });
            specs.push(Spec { name: format!("{layer}.num_batches_tracked"), shape: vec![], dtype: Dtype::I64 });
        }
    }
    specs
}

/// The model's state_dict, read back from the device.
pub fn state_dict<B: Backend>(be: &mut B, model: &Lenet5<B>) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for spec in state_dict_specs() {
        let data = match spec.name.as_str() {
            "batchnorm1.running_mean" => TensorData::F32(be.read(&model.running.mean1)),
            "batchnorm1.running_var" => TensorData::F32(be.read(&model.running.var1)),
            "batchnorm2.running_mean" => TensorData::F32(be.read(&model.running.mean2)),
            "batchnorm2.running_var" => TensorData::F32(be.read(&model.running.var2)),
            n if n.ends_with(".num_batches_tracked") => TensorData::I64(vec![model.running.num_batches_tracked]),
            n => {
                let i = LENET5_PARAMS.iter().position(|p| p.name == n).expect("every spec is a parameter or buffer");
                TensorData::F32(be.read(&model.params[i]))
            }
        };
        out.push(NamedTensor { name: spec.name, shape: spec.shape, data });
    }
    out
}

fn f32_of(t: &NamedTensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        TensorData::I64(_) => unreachable!("load_strict checked the dtype"),
    }
}

/// Builds a model for batches of up to `capacity` from a strict state_dict file.
pub fn load_model<B: Backend>(be: &mut B, path: &Path, capacity: usize) -> Result<Lenet5<B>> {
    let (tensors, _) = checkpoint::load_strict(path, &state_dict_specs())?;
    model_from_state_dict(be, &tensors, capacity).with_context(|| format!("{}", path.display()))
}

/// A model from state_dict tensors in `state_dict_specs()` order.
pub fn model_from_state_dict<B: Backend>(be: &mut B, tensors: &[NamedTensor], capacity: usize) -> Result<Lenet5<B>> {
    let by_name: BTreeMap<&str, &NamedTensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let get = |n: &str| by_name.get(n).copied().with_context(|| format!("tensor `{n}` is missing"));
    let values = LENET5_PARAMS.iter().map(|p| Ok(f32_of(get(p.name)?).to_vec())).collect::<Result<Vec<_>>>()?;
    let model = Lenet5::from_values(be, capacity, &values);
    be.write(&model.running.mean1, f32_of(get("batchnorm1.running_mean")?));
    be.write(&model.running.var1, f32_of(get("batchnorm1.running_var")?));
    be.write(&model.running.mean2, f32_of(get("batchnorm2.running_mean")?));
    be.write(&model.running.var2, f32_of(get("batchnorm2.running_var")?));
    let mut model = model;
    let (n1, n2) = (get("batchnorm1.num_batches_tracked")?, get("batchnorm2.num_batches_tracked")?);
    match (&n1.data, &n2.data) {
        (TensorData::I64(a), TensorData::I64(b)) if a == b => model.running.num_batches_tracked = a[0],
        _ => bail!("batchnorm1.num_batches_tracked and batchnorm2.num_batches_tracked differ"),
    }
    Ok(model)
}

pub fn save_model<B: Backend>(be: &mut B, model: &Lenet5<B>, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
    checkpoint::save(path, &state_dict(be, model), metadata)
}

fn optimizer_specs() -> Vec<Spec> {
    let mut specs = Vec::new();
    for moment in ["m", "v"] {
        for p in LENET5_PARAMS.iter() {
            specs.push(Spec { name: format!("adam.{moment}.{}", p.name), shape: p.shape.to_vec(), dtype: Dtype::F32 });
        }
    }
    specs
}

/// Writes the model (state_dict) and, next to it, Adam's state and the epoch count. The
/// optimizer file is written first; both carry the epoch and Adam step, and resuming checks
/// that they agree, so a run killed between the two writes is detected, not mixed.
/// `extra` adds metadata such as the recipe (seed, lr, batch size).
pub fn save_training<B: Backend>(
    be: &mut B,
    model: &Lenet5<B>,
    path: &Path,
    epoch: usize,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "wgsl-cnn lenet5".to_string());
    meta.insert("epoch".to_string(), epoch.to_string());
    meta.insert("adam_step".to_string(), model.adam_step.to_string());
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    let mut moments = Vec::new();
    for (which, bufs) in [("m", &model.adam_m), ("v", &model.adam_v)] {
        for (p, t) in LENET5_PARAMS.iter().zip(bufs.iter()) {
            moments.push(NamedTensor {
                name: format!("adam.{which}.{}", p.name),
                shape: p.shape.to_vec(),
                data: TensorData::F32(be.read(t)),
            });
        }
    }
    checkpoint::save(&checkpoint::optimizer_path(path), &moments, &meta)?;
    save_model(be, model, path, &meta)
}

/// Loads a model and its optimizer state for resuming; returns the epochs already trained
/// and the checkpoint's metadata (the recipe it was trained with).
pub fn load_training<B: Backend>(
    be: &mut B,
    path: &Path,
    capacity: usize,
) -> Result<(Lenet5<B>, usize, BTreeMap<String, String>)> {
    let (tensors, meta) = checkpoint::load_strict(path, &state_dict_specs())?;
    let mut model = model_from_state_dict(be, &tensors, capacity).with_context(|| format!("{}", path.display()))?;
    let opath = checkpoint::optimizer_path(path);
    if !opath.exists() {
        bail!("{}: no optimizer state next to it ({} is missing), so training cannot resume", path.display(), opath.display());
    }
    let (moments, ometa) = checkpoint::load_strict(&opath, &optimizer_specs())?;
    for key in ["epoch", "adam_step"] {
        if meta.get(key) != ometa.get(key) {
            bail!(
                "{} and {} disagree on {key} ({:?} vs {:?}): they come from different saves",
                path.display(),
                opath.display(),
                meta.get(key),
                ometa.get(key)
            );
        }
    }
    let parse = |key: &str| -> Result<u64> {
        ometa
            .get(key)
            .with_context(|| format!("{}: metadata has no `{key}`", opath.display()))?
            .parse()
            .with_context(|| format!("{}: metadata `{key}` is not a number", opath.display()))
    };
    let epoch = parse("epoch")? as usize;
    model.adam_step = parse("adam_step")? as u32;
    let n = LENET5_PARAMS.len();
    for (i, t) in moments.iter().enumerate() {
        let dst = if i < n { &model.adam_m[i] } else { &model.adam_v[i - n] };
        be.write(dst, f32_of(t));
    }
    Ok((model, epoch, meta))
}
