//! A model's state_dict in PyTorch's names, and the training state (the optimizer's state:
//! Adam's moments or SGD's momentum buffer; the epoch, the step) in a second file next to
//! it, both as safetensors. Both record the model's name (`model` metadata) and the optimizer
//! with its hyper-parameters (`optimizer`, `lr`, …: `OptimizerConfig::metadata`); loading one
//! as another model is an error naming both and the tensors that differ, and resuming with
//! another optimizer an error naming both optimizers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{zoo, Arch, Model};
use crate::backend::Backend;
use crate::checkpoint::{self, Dtype, NamedTensor, Spec, TensorData};
use crate::nn::store::{Builder, Entry};
use crate::nn::Capacity;
use crate::reference::Cpu;
use crate::shapes::OptimizerConfig;

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
    let _net = arch.spec.build(&mut b, "", arch.input).expect("architectures are checked when made");
    b.finish().0
}

/// The model's state_dict, read back from the device.
pub async fn state_dict<B: Backend + 'static>(be: &mut B, model: &Model<B>) -> Vec<NamedTensor> {
    let store = &model.store;
    let mut out = Vec::with_capacity(store.entries.len());
    for e in &store.entries {
        out.push(match e {
            Entry::Param(id) => {
                let p = &store.params[id.0];
                NamedTensor { name: p.name.clone(), shape: p.shape.clone(), data: TensorData::F32(be.read_async(store.value(*id)).await) }
            }
            Entry::Buffer { name, shape, tensor } => {
                NamedTensor { name: name.clone(), shape: shape.clone(), data: TensorData::F32(be.read_async(tensor).await) }
            }
            Entry::Counter { name, count } => NamedTensor { name: name.clone(), shape: vec![], data: TensorData::I64(vec![count.get()]) },
        });
    }
    out
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
    arch_of(path, &checkpoint::load_metadata(path)?, wanted)
}

/// `arch_for` of a checkpoint already in memory (the page's upload), as its recorded model.
pub fn arch_from_bytes(path: &Path, bytes: &[u8]) -> Result<Arch> {
    arch_of(path, &checkpoint::metadata_of_bytes(path, bytes)?, None)
}

/// The architecture a checkpoint's metadata records: its `architecture` (a model file's JSON,
/// `file::to_json`), or the built-in model its `model` names; None for files with neither.
pub fn recorded_arch(path: &Path, meta: &BTreeMap<String, String>) -> Result<Option<Arch>> {
    if let Some(json) = meta.get("architecture") {
        return super::file::parse(json, &format!("{}: its recorded architecture", path.display())).map(Some);
    }
    recorded_model(meta).map(|name| zoo::arch(name).with_context(|| format!("{}: unknown model in its metadata", path.display()))).transpose()
}

fn arch_of(path: &Path, meta: &BTreeMap<String, String>, wanted: Option<&Arch>) -> Result<Arch> {
    let recorded = recorded_arch(path, meta)?;
    match (wanted, recorded) {
        (Some(w), Some(r)) if w.name != r.name || w.spec != r.spec || w.classes != r.classes => {
            let mut diff = spec_difference(&r, w);
            if diff.is_empty() {
                diff = format!("the same tensors, but {}", if w.classes != r.classes { "other class counts" } else { "other layers" });
            }
            let what = if w.name == r.name { format!("another `{}` than the one given", r.name) } else { format!("model `{}`, not `{}`", r.name, w.name) };
            let hint = if zoo::NAMES.contains(&r.name.as_str()) && r == zoo::arch(&r.name)? { format!("pass --model {} or leave --model out", r.name) } else { "leave --model out (the checkpoint records its architecture)".to_string() };
            bail!("{} holds {what} ({diff}); {hint}", path.display())
        }
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
pub fn load_model<B: Backend + 'static>(be: &mut B, path: &Path, wanted: Option<&Arch>, capacity: impl Into<Capacity>) -> Result<Model<B>> {
    Ok(load_with_metadata(be, path, wanted, capacity)?.0)
}

fn load_with_metadata<B: Backend + 'static>(
    be: &mut B,
    path: &Path,
    wanted: Option<&Arch>,
    capacity: impl Into<Capacity>,
) -> Result<(Model<B>, BTreeMap<String, String>)> {
    let arch = arch_for(path, wanted)?;
    let (tensors, meta) = checkpoint::load_strict(path, &state_dict_specs(&arch))?;
    let model = model_from_state_dict(be, &arch, &tensors, capacity).with_context(|| format!("{}", path.display()))?;
    Ok((model, meta))
}

/// A model from state_dict tensors (any order; every entry present, as `load_strict` checks).
pub fn model_from_state_dict<B: Backend + 'static>(
    be: &mut B,
    arch: &Arch,
    tensors: &[NamedTensor],
    capacity: impl Into<Capacity>,
) -> Result<Model<B>> {
    let by_name: BTreeMap<&str, &NamedTensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let get = |n: &str| by_name.get(n).copied().with_context(|| format!("tensor `{n}` is missing"));
    let model = Model::build(be, arch, capacity)?;
    for e in &model.store.entries {
        match e {
            Entry::Param(id) => be.write(model.store.value(*id), f32_of(get(&model.store.params[id.0].name)?)),
            Entry::Buffer { name, tensor, .. } => {
                let v = f32_of(get(name)?);
                // A variance below zero makes BatchNorm divide by the root of a negative number.
                if name.ends_with("running_var") {
                    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| **x < 0.0) {
                        bail!("tensor `{name}` holds {x} at index {i}; a variance must be at least 0");
                    }
                }
                be.write(tensor, v)
            }
            Entry::Counter { name, count } => match &get(name)?.data {
                // Far below i64::MAX, so that counting on cannot overflow.
                TensorData::I64(v) if (0..=1 << 53).contains(&v[0]) => count.set(v[0]),
                TensorData::I64(v) => bail!("tensor `{name}` holds {}; a count must be from 0 to 2^53", v[0]),
                TensorData::F32(_) => bail!("`{name}` must be int64"),
            },
        }
    }
    Ok(model)
}

pub async fn save_model<B: Backend + 'static>(be: &mut B, model: &Model<B>, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
    checkpoint::save(path, &state_dict(be, model).await, metadata)
}

/// The prefixes of the optimizer file's tensors under `cfg`, each followed by every parameter's
/// name: Adam's (and AdamW's) `adam.m.`, `adam.v.`; SGD's `sgd.momentum_buffer.` with a
/// momentum, none without (PyTorch keeps no buffer then: the file holds metadata only).
fn optimizer_prefixes(cfg: &OptimizerConfig) -> &'static [&'static str] {
    match cfg {
        OptimizerConfig::Adam(_) => &["adam.m.", "adam.v."],
        OptimizerConfig::Sgd(s) if s.momentum != 0.0 => &["sgd.momentum_buffer."],
        OptimizerConfig::Sgd(_) => &[],
    }
}

fn optimizer_specs<B: Backend>(model: &Model<B>, cfg: &OptimizerConfig) -> Vec<Spec> {
    let mut specs = Vec::new();
    for prefix in optimizer_prefixes(cfg) {
        for p in &model.store.params {
            specs.push(Spec::new(format!("{prefix}{}", p.name), &p.shape, Dtype::F32));
        }
    }
    specs
}

/// Where the previous optimizer file is kept while a save is in progress.
pub fn previous_optimizer_path(path: &Path) -> std::path::PathBuf {
    let o = checkpoint::optimizer_path(path);
    let name = o.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    o.with_file_name(format!(".{name}.prev"))
}

/// A fresh identity for one save, written into both files of the pair.
fn new_save_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut rng = crate::rng::Rng::new(t ^ ((std::process::id() as u64) << 32) ^ N.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", rng.next_u64())
}

/// Test hook: `WGSL_CNN_FAULT_SAVE=k` ends the process (exit 137) at step k (1–4) of a save, as a
/// kill at that instant would (tests/resume_faults.rs).
fn fault_point(k: u32) {
    if std::env::var("WGSL_CNN_FAULT_SAVE").ok().and_then(|v| v.parse::<u32>().ok()) == Some(k) {
        // exit, not abort: no destructors run (as with a kill) and no core file is written.
        std::process::exit(137);
    }
}

/// Writes the model (state_dict) and, next to it, the optimizer's state (that of
/// `model.optimizer`: Adam's m and v, or SGD's momentum buffer) and the epoch count, so that
/// the files at `path` are a resumable pair at every instant: both files are written to
/// temporary files first (a full disk fails here, leaving the old save), the current
/// optimizer file is kept as `.<name>.prev`, then the optimizer file and last the model
/// file are renamed into place. Both carry one `save_id`; resuming pairs the model with the
/// optimizer file (or the kept previous one) of the same id. `extra` adds metadata such as
/// the recipe (seed, lr, batch size).
pub async fn save_training<B: Backend + 'static>(
    be: &mut B,
    model: &Model<B>,
    path: &Path,
    epoch: usize,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut meta = model_metadata(model, epoch, extra);
    meta.insert("save_id".to_string(), new_save_id());
    let mut moments = Vec::new();
    // SGD's momentum buffer is the store's m buffer (`Model::optimizer_step`).
    for (k, prefix) in optimizer_prefixes(&model.optimizer).iter().enumerate() {
        for id in model.store.ids() {
            let p = &model.store.params[id.0];
            let t = if k == 0 { model.store.adam_m(id) } else { model.store.adam_v(id) };
            moments.push(NamedTensor { name: format!("{prefix}{}", p.name), shape: p.shape.clone(), data: TensorData::F32(be.read_async(t).await) });
        }
    }
    let opath = checkpoint::optimizer_path(path);
    let optim = checkpoint::prepare(&opath, &moments, &meta)?;
    let weights = checkpoint::prepare(path, &state_dict(be, model).await, &meta)?;
    fault_point(1);
    let prev = previous_optimizer_path(path);
    if opath.is_file() {
        keep_copy(&opath, &prev)?;
    }
    fault_point(2);
    optim.commit()?;
    fault_point(3);
    weights.commit()?;
    fault_point(4);
    let _ = std::fs::remove_file(&prev);
    Ok(())
}

/// What a checkpoint of `model` records besides its tensors: the format, the model, the epochs
/// trained, the optimizer's steps (`adam_step`, whichever the optimizer), the optimizer and
/// its hyper-parameters (`OptimizerConfig::metadata`), and `extra` (the recipe).
pub fn model_metadata<B: Backend>(model: &Model<B>, epoch: usize, extra: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "wgsl-cnn".to_string());
    meta.insert("model".to_string(), model.arch.name.to_string());
    meta.insert("architecture".to_string(), super::file::to_json(&model.arch));
    meta.insert("epoch".to_string(), epoch.to_string());
    meta.insert("adam_step".to_string(), model.adam_step.to_string());
    for (k, v) in model.optimizer.metadata() {
        meta.insert(k.to_string(), v);
    }
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    meta
}

/// Atomically makes `to` a copy of `from` (a hard link where possible).
fn keep_copy(from: &Path, to: &Path) -> Result<()> {
    let tmp = checkpoint::temp_path(to);
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).with_context(|| format!("cannot keep a copy of {} as {}", from.display(), tmp.display()))?;
    }
    std::fs::rename(&tmp, to).with_context(|| format!("cannot keep a copy of {} as {}", from.display(), to.display()))?;
    checkpoint::sync_dir(to);
    Ok(())
}

/// The most epochs and Adam steps a training file may record (far beyond any real run, and
/// far from where the u32 step counter would wrap).
pub const MAX_EPOCH: u64 = 1_000_000;
pub const MAX_ADAM_STEP: u64 = 1 << 31;

/// The optimizer a checkpoint's metadata records (`OptimizerConfig::from_metadata`: Adam for
/// files from before there were several), errors naming the file.
pub fn recorded_optimizer(path: &Path, meta: &BTreeMap<String, String>) -> Result<OptimizerConfig> {
    OptimizerConfig::from_metadata(|k| meta.get(k).cloned()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads a model and its optimizer state for resuming, whatever optimizer the checkpoint
/// records (`model.optimizer` says which); returns the epochs already trained and the
/// checkpoint's metadata (the recipe it was trained with).
pub fn load_training<B: Backend + 'static>(
    be: &mut B,
    path: &Path,
    wanted: Option<&Arch>,
    capacity: impl Into<Capacity>,
) -> Result<(Model<B>, usize, BTreeMap<String, String>)> {
    load_training_as(be, path, wanted, capacity, None)
}

/// `load_training` for a run with `optimizer`: a checkpoint of another optimizer (another
/// `--optimizer` name; hyper-parameters may change) is an error naming both, as its state
/// means nothing to this one.
pub fn load_training_as<B: Backend + 'static>(
    be: &mut B,
    path: &Path,
    wanted: Option<&Arch>,
    capacity: impl Into<Capacity>,
    optimizer: Option<&OptimizerConfig>,
) -> Result<(Model<B>, usize, BTreeMap<String, String>)> {
    let (mut model, meta) = load_with_metadata(be, path, wanted, capacity)?;
    let recorded = recorded_optimizer(path, &meta)?;
    if let Some(o) = optimizer.filter(|o| o.name() != recorded.name()) {
        bail!(
            "{} was trained with optimizer `{}`, not `{}`: its optimizer state ({}) does not carry over to {}; \
             resume with --optimizer {} (its hyper-parameters may change), or train afresh without --resume",
            path.display(),
            recorded.name(),
            o.name(),
            recorded.describe(),
            o.name(),
            recorded.name()
        );
    }
    let mut opath = checkpoint::optimizer_path(path);
    if std::fs::symlink_metadata(&opath).is_err() {
        bail!("{}: no optimizer state next to it ({} is missing), so training cannot resume", path.display(), opath.display());
    }
    let specs = optimizer_specs(&model, &recorded);
    let (mut moments, mut ometa) = checkpoint::load_strict(&opath, &specs)?;
    let prev = previous_optimizer_path(path);
    if meta.get("save_id") != ometa.get("save_id") && prev.is_file() {
        // A save was interrupted after the optimizer file was replaced: the model is the
        // previous save's, and so is the optimizer file kept beside it.
        let (m, om) = checkpoint::load_strict(&prev, &specs)?;
        if om.get("save_id") == meta.get("save_id") {
            eprintln!("note: the last save to {} was interrupted; resuming from the save before it", path.display());
            (moments, ometa, opath) = (m, om, prev);
        }
    }
    for key in ["save_id", "epoch", "adam_step", "model", "architecture", "optimizer"] {
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
    let parse = |key: &str, max: u64| -> Result<u64> {
        let v: u64 = ometa
            .get(key)
            .with_context(|| format!("{}: metadata has no `{key}`", opath.display()))?
            .parse()
            .with_context(|| format!("{}: metadata `{key}` is not a number", opath.display()))?;
        anyhow::ensure!(v <= max, "{}: metadata `{key}` {v} is out of range (0 to {max})", opath.display());
        Ok(v)
    };
    let epoch = parse("epoch", MAX_EPOCH)? as usize;
    let step = parse("adam_step", MAX_ADAM_STEP)? as u32;
    model.set_adam_step(be, step);
    model.optimizer = recorded;
    let n = model.store.params.len();
    // The tensors are in `optimizer_prefixes` order: m (or SGD's momentum buffer), then v.
    model.momentum_set = matches!(recorded, OptimizerConfig::Sgd(_)) && !moments.is_empty();
    for (i, t) in moments.iter().enumerate() {
        let id = crate::nn::ParamId(i % n);
        let dst = if i < n { model.store.adam_m(id) } else { model.store.adam_v(id) };
        let v = f32_of(t);
        // Adam's second moment is a running mean of squares: negative is impossible.
        if i >= n {
            if let Some((j, x)) = v.iter().enumerate().find(|(_, x)| **x < 0.0) {
                bail!("{}: tensor `{}` holds {x} at index {j}; Adam's v must be at least 0", opath.display(), t.name);
            }
        }
        be.write(dst, v);
    }
    Ok((model, epoch, meta))
}
