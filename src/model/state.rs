//! A model's state_dict in PyTorch's names, and the training state (Adam's moments, the
//! epoch, the Adam step) in a second file next to it, both as safetensors. Both record the
//! model's name (`model` metadata), and loading one as another model is an error naming
//! both and the tensors that differ.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{zoo, Arch, Model};
use crate::backend::Backend;
use crate::checkpoint::{self, Dtype, NamedTensor, Spec, TensorData};
use crate::nn::store::{Builder, Entry};
use crate::reference::Cpu;

/// Every state_dict entry of `arch` in PyTorch's order (parameters, each BatchNorm's
/// buffers right after its weight and bias).
pub fn state_dict_specs(arch: &Arch) -> Vec<Spec> {
    let store = declared(arch);
    store
        .entries
        .iter()
        .map(|e| match e {
            Entry::Param(id) => Spec::new(store.params[id.0].name.clone(), &store.params[id.0].shape, Dtype::F32),
            Entry::Buffer { name, shape, .. } => Spec::new(name.clone(), shape, Dtype::F32),
            Entry::Counter { name, .. } => Spec::new(name.clone(), &[], Dtype::I64),
        })
        .collect()
}

/// The trainable parameters of `arch` in order.
pub fn parameter_specs(arch: &Arch) -> Vec<Spec> {
    declared(arch).params.iter().map(|p| Spec::new(p.name.clone(), &p.shape, Dtype::F32)).collect()
}

/// What building `arch` declares (the store of a model built on the reference for one sample).
fn declared(arch: &Arch) -> crate::nn::Store<Cpu> {
    let mut cpu = Cpu::new();
    let mut b = Builder::new(&mut cpu, 1);
    let _net = arch.spec.build(&mut b, "", arch.input).expect("the zoo's models build");
    b.finish().0
}

/// The model's state_dict, read back from the device.
pub fn state_dict<B: Backend + 'static>(be: &mut B, model: &Model<B>) -> Vec<NamedTensor> {
    let store = &model.store;
    store
        .entries
        .iter()
        .map(|e| match e {
            Entry::Param(id) => {
                let p = &store.params[id.0];
                NamedTensor { name: p.name.clone(), shape: p.shape.clone(), data: TensorData::F32(be.read(store.value(*id))) }
            }
            Entry::Buffer { name, shape, tensor } => {
                NamedTensor { name: name.clone(), shape: shape.clone(), data: TensorData::F32(be.read(tensor)) }
            }
            Entry::Counter { name, count } => NamedTensor { name: name.clone(), shape: vec![], data: TensorData::I64(vec![count.get()]) },
        })
        .collect()
}

/// The model a checkpoint's metadata names: `model`, or LeNet-5 for files written before
/// there were several models (`format` "wgsl-cnn lenet5"). None for files without either
/// (a state_dict that PyTorch wrote).
pub fn recorded_model(meta: &BTreeMap<String, String>) -> Option<&str> {
    meta.get("model").map(String::as_str).or_else(|| (meta.get("format").map(String::as_str) == Some("wgsl-cnn lenet5")).then_some("lenet5"))
}

/// The architecture to load `path` as: `wanted` if given, else the one the file records,
/// else LeNet-5. An error when the file records another model than `wanted`.
pub fn arch_for(path: &Path, wanted: Option<&Arch>) -> Result<Arch> {
    let meta = checkpoint::load_metadata(path)?;
    let recorded = match recorded_model(&meta) {
        Some(name) => Some(zoo::arch(name).with_context(|| format!("{}: unknown model in its metadata", path.display()))?),
        None => None,
    };
    match (wanted, recorded) {
        (Some(w), Some(r)) if w.name != r.name => bail!(
            "{} holds model `{}`, not `{}` ({}); pass --model {} or leave --model out",
            path.display(),
            r.name,
            w.name,
            spec_difference(&r, w),
            r.name
        ),
        (Some(w), _) => Ok(w.clone()),
        (None, Some(r)) => Ok(r),
        (None, None) => Ok(zoo::lenet5()),
    }
}

/// "tensors only in `a`: …; only in `b`: …; of another shape: …".
fn spec_difference(a: &Arch, b: &Arch) -> String {
    let (sa, sb) = (state_dict_specs(a), state_dict_specs(b));
    let only = |x: &[Spec], y: &[Spec]| x.iter().filter(|s| !y.iter().any(|t| t.name == s.name)).map(|s| s.name.clone()).collect::<Vec<_>>();
    let reshaped: Vec<String> =
        sa.iter().filter(|s| sb.iter().any(|t| t.name == s.name && t.shape != s.shape)).map(|s| s.name.clone()).collect();
    let mut parts = Vec::new();
    for (label, names) in [(format!("only in `{}`", a.name), only(&sa, &sb)), (format!("only in `{}`", b.name), only(&sb, &sa)), ("of another shape".to_string(), reshaped)] {
        if !names.is_empty() {
            parts.push(format!("tensors {label}: {}", names.join(", ")));
        }
    }
    parts.join("; ")
}

fn f32_of(t: &NamedTensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        TensorData::I64(_) => unreachable!("load_strict checked the dtype"),
    }
}

/// Builds a model for batches of up to `capacity` from a strict state_dict file, as
/// `wanted` or as the model the file records (see `arch_for`).
pub fn load_model<B: Backend + 'static>(be: &mut B, path: &Path, wanted: Option<&Arch>, capacity: usize) -> Result<Model<B>> {
    Ok(load_with_metadata(be, path, wanted, capacity)?.0)
}

fn load_with_metadata<B: Backend + 'static>(
    be: &mut B,
    path: &Path,
    wanted: Option<&Arch>,
    capacity: usize,
) -> Result<(Model<B>, BTreeMap<String, String>)> {
    let arch = arch_for(path, wanted)?;
    let (tensors, meta) = checkpoint::load_strict(path, &state_dict_specs(&arch))?;
    let model = model_from_state_dict(be, &arch, &tensors, capacity).with_context(|| format!("{}", path.display()))?;
    Ok((model, meta))
}

/// A model from state_dict tensors (any order; every entry present, as `load_strict` checks).
pub fn model_from_state_dict<B: Backend + 'static>(be: &mut B, arch: &Arch, tensors: &[NamedTensor], capacity: usize) -> Result<Model<B>> {
    let by_name: BTreeMap<&str, &NamedTensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let get = |n: &str| by_name.get(n).copied().with_context(|| format!("tensor `{n}` is missing"));
    let model = Model::build(be, arch, capacity)?;
    for e in &model.store.entries {
        match e {
            Entry::Param(id) => be.write(model.store.value(*id), f32_of(get(&model.store.params[id.0].name)?)),
            Entry::Buffer { name, tensor, .. } => be.write(tensor, f32_of(get(name)?)),
            Entry::Counter { name, count } => match &get(name)?.data {
                TensorData::I64(v) => count.set(v[0]),
                TensorData::F32(_) => bail!("`{name}` must be int64"),
            },
        }
    }
    Ok(model)
}

pub fn save_model<B: Backend + 'static>(be: &mut B, model: &Model<B>, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
    checkpoint::save(path, &state_dict(be, model), metadata)
}

fn optimizer_specs<B: Backend>(model: &Model<B>) -> Vec<Spec> {
    let mut specs = Vec::new();
    for moment in ["m", "v"] {
        for p in &model.store.params {
            specs.push(Spec::new(format!("adam.{moment}.{}", p.name), &p.shape, Dtype::F32));
        }
    }
    specs
}

/// Writes the model (state_dict) and, next to it, Adam's state and the epoch count. The
/// optimizer file is written first; both carry the model, the epoch and the Adam step, and
/// resuming checks that they agree, so a run killed between the two writes is detected,
/// not mixed. `extra` adds metadata such as the recipe (seed, lr, batch size).
pub fn save_training<B: Backend + 'static>(
    be: &mut B,
    model: &Model<B>,
    path: &Path,
    epoch: usize,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "wgsl-cnn".to_string());
    meta.insert("model".to_string(), model.arch.name.to_string());
    meta.insert("epoch".to_string(), epoch.to_string());
    meta.insert("adam_step".to_string(), model.adam_step.to_string());
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    let mut moments = Vec::new();
    for which in ["m", "v"] {
        for id in model.store.ids() {
            let p = &model.store.params[id.0];
            let t = if which == "m" { model.store.adam_m(id) } else { model.store.adam_v(id) };
            moments.push(NamedTensor { name: format!("adam.{which}.{}", p.name), shape: p.shape.clone(), data: TensorData::F32(be.read(t)) });
        }
    }
    checkpoint::save(&checkpoint::optimizer_path(path), &moments, &meta)?;
    save_model(be, model, path, &meta)
}

/// Loads a model and its optimizer state for resuming; returns the epochs already trained
/// and the checkpoint's metadata (the recipe it was trained with).
pub fn load_training<B: Backend + 'static>(
    be: &mut B,
    path: &Path,
    wanted: Option<&Arch>,
    capacity: usize,
) -> Result<(Model<B>, usize, BTreeMap<String, String>)> {
    let (mut model, meta) = load_with_metadata(be, path, wanted, capacity)?;
    let opath = checkpoint::optimizer_path(path);
    if !opath.exists() {
        bail!("{}: no optimizer state next to it ({} is missing), so training cannot resume", path.display(), opath.display());
    }
    let (moments, ometa) = checkpoint::load_strict(&opath, &optimizer_specs(&model))?;
    for key in ["epoch", "adam_step", "model"] {
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
    let step = parse("adam_step")?;
    let step = u32::try_from(step)
        .ok()
        .filter(|s| *s < u32::MAX)
        .with_context(|| format!("{}: metadata `adam_step` {step} is out of range", opath.display()))?;
    model.set_adam_step(be, step);
    let n = model.store.params.len();
    for (i, t) in moments.iter().enumerate() {
        let id = crate::nn::ParamId(i % n);
        let dst = if i < n { model.store.adam_m(id) } else { model.store.adam_v(id) };
        be.write(dst, f32_of(t));
    }
    Ok((model, epoch, meta))
}
