//! `wgsl-cnn step`: one training step from a PyTorch-written state_dict and batch, writing
//! everything PyTorch would compute, so that the two can be compared tensor by tensor.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::backend::Backend;
use crate::checkpoint::{self, NamedTensor, TensorData};
use crate::model::state::{model_from_state_dict, state_dict, state_dict_specs};
use crate::model::{Arch, CLASSES, IMAGE_PIXELS};
use crate::shapes::OptimizerConfig;

/// A batch file: `x` f32 [N, 1, 28, 28] and `y` int64 [N] with labels 0–9.
pub fn load_batch(path: &Path) -> Result<(Vec<f32>, Vec<u32>)> {
    batch_of(path, checkpoint::load_any(path)?)
}

/// The batch held by `tensors` (of the file `path`).
fn batch_of(path: &Path, tensors: Vec<NamedTensor>) -> Result<(Vec<f32>, Vec<u32>)> {
    let find = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .with_context(|| format!("{}: no tensor `{name}` (a batch holds `x` f32 [N,1,28,28] and `y` int64 [N])", path.display()))
    };
    let (x, y) = (find("x")?, find("y")?);
    let x_data = match &x.data {
        TensorData::F32(v) if x.shape.len() == 4 && x.shape[1..] == [1, 28, 28] => v.clone(),
        TensorData::F32(_) => bail!("{}: `x` has shape {:?}, expected [N, 1, 28, 28]", path.display(), x.shape),
        _ => bail!("{}: `x` must be float32", path.display()),
    };
    let n = x.shape[0];
    let labels = match &y.data {
        TensorData::I64(v) if y.shape == [n] => v,
        TensorData::I64(_) => bail!("{}: `y` has shape {:?}, expected [{n}] to match `x`", path.display(), y.shape),
        _ => bail!("{}: `y` must be int64", path.display()),
    };
    if n == 0 {
        bail!("{}: the batch is empty", path.display());
    }
    let mut y_data = Vec::with_capacity(n);
    for (i, &l) in labels.iter().enumerate() {
        if !(0..CLASSES as i64).contains(&l) {
            bail!("{}: label {l} at index {i} is not in 0..=9", path.display());
        }
        y_data.push(l as u32);
    }
    debug_assert_eq!(x_data.len(), n * IMAGE_PIXELS);
    Ok((x_data, y_data))
}

/// Runs one training step (train mode, then one step of `opt` from fresh optimizer state, as
/// a new `torch.optim` optimizer takes) and returns the tensors of the output file: `logits`,
/// `loss`, `grad.<param>`, `after.<state_dict key>`.
pub async fn one_step<B: Backend + 'static>(
    be: &mut B,
    arch: &Arch,
    init: &[NamedTensor],
    x: &[f32],
    y: &[u32],
    opt: &OptimizerConfig,
) -> Result<Vec<NamedTensor>> {
    let n = y.len();
    let mut model = model_from_state_dict(be, arch, init, n)?;
    model.set_batch(be, x, y);
    model.forward(be, n, true);
    model.backward(be, n);
    let mut out = vec![
        NamedTensor { name: "logits".into(), shape: vec![n, arch.classes], data: TensorData::F32(model.read_logits(be, n).await) },
        NamedTensor { name: "loss".into(), shape: vec![], data: TensorData::F32(vec![model.read_loss(be).await]) },
    ];
    for id in model.store.ids() {
        let p = &model.store.params[id.0];
        out.push(NamedTensor { name: format!("grad.{}", p.name), shape: p.shape.clone(), data: TensorData::F32(be.read_async(model.store.grad(id)).await) });
    }
    model.optimizer_step(be, opt);
    for t in state_dict(be, &model).await {
        out.push(NamedTensor { name: format!("after.{}", t.name), ..t });
    }
    Ok(out)
}

/// The `step` command: INIT (state_dict of `arch`, or of the model INIT records when `arch`
/// is None) and BATCH files in, OUT file written, one step of `opt`.
pub async fn run<B: Backend + 'static>(be: &mut B, arch: Option<&Arch>, init: &Path, batch: &Path, out: &Path, opt: &OptimizerConfig) -> Result<()> {
    let arch = crate::model::state::arch_for(init, arch)?;
    let (init_tensors, _) = checkpoint::load_strict(init, &state_dict_specs(&arch))?;
    let (x, y) = load_batch(batch)?;
    let (tensors, meta) = step_file(be, &arch, (init, &init_tensors), (batch, &x, &y), opt).await?;
    checkpoint::save(out, &tensors, &meta)?;
    println!("wrote {} tensors for a batch of {} to {} (backend: {})", tensors.len(), y.len(), out.display(), be.name());
    Ok(())
}

/// The `step` command on files already in memory (the page): INIT and BATCH bytes in, the
/// bytes of the file `run` would write out. INIT is taken as the model it records.
pub async fn run_bytes<B: Backend + 'static>(be: &mut B, init: &[u8], batch: &[u8], opt: &OptimizerConfig) -> Result<Vec<u8>> {
    let (init_path, batch_path) = (Path::new("init.safetensors"), Path::new("batch.safetensors"));
    let arch = crate::model::state::arch_from_bytes(init_path, init)?;
    let (init_tensors, _) = checkpoint::load_strict_bytes(init_path, init, &state_dict_specs(&arch))?;
    let (x, y) = batch_of(batch_path, checkpoint::load_any_bytes(batch_path, batch)?)?;
    let (tensors, meta) = step_file(be, &arch, (init_path, &init_tensors), (batch_path, &x, &y), opt).await?;
    checkpoint::to_bytes(Path::new("out.safetensors"), &tensors, &meta)
}

/// The tensors and metadata of a step's output file.
async fn step_file<B: Backend + 'static>(
    be: &mut B,
    arch: &Arch,
    (init, init_tensors): (&Path, &[NamedTensor]),
    (batch, x, y): (&Path, &[f32], &[u32]),
    opt: &OptimizerConfig,
) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    if let Some(budget) = be.memory_budget() {
        crate::nn::sizer::check_batch(arch, y.len(), &budget, &[], "the batch size")
            .with_context(|| format!("{}", batch.display()))?;
    }
    opt.validate().map_err(anyhow::Error::msg)?;
    let tensors = one_step(be, arch, init_tensors, x, y, opt).await.with_context(|| format!("{}", init.display()))?;
    let mut meta = BTreeMap::new();
    meta.insert("backend".to_string(), be.name());
    meta.insert("model".to_string(), arch.name.to_string());
    meta.insert("architecture".to_string(), crate::model::file::to_json(arch));
    for (k, v) in opt.metadata() {
        meta.insert(k.to_string(), v);
    }
    Ok((tensors, meta))
}
