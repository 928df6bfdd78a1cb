//! The browser's entry points (wasm32 only): the page (`web/`) opens WebGPU, hands over the
//! data set's files and awaits the same `Trainer`, evaluation, prediction, checkpoint format
//! and `step` as the CLI. Nothing here blocks: device requests and readbacks are awaited, and
//! the page calls `advance` a few steps at a time between frames.
//!
//! Calls that wait for the device return Promises; a call made while another is still
//! running is refused ("busy") rather than interleaved.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};
use js_sys::{Promise, Uint8Array};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::backend::Backend;
use crate::checkpoint;
use crate::data::Mnist;
use crate::dataset::Dataset;
use crate::gpu::autotune::Mode;
use crate::gpu::{AdapterChoice, Gpu};
use crate::model::{state, zoo, Model};
use crate::shapes::OptimizerConfig;
use crate::train::{model_for, Event, TrainConfig, Trainer};

struct Inner {
    be: Gpu,
    /// Files handed over by `add_file`, until `load_data` takes them.
    files: Vec<(String, Vec<u8>)>,
    dataset: Dataset,
    data: Option<Mnist>,
    trainer: Option<Trainer<Gpu>>,
    /// A model loaded from a checkpoint, when no training runs.
    loaded: Option<Model<Gpu>>,
    /// Epochs the model in use has trained (for the checkpoint's metadata).
    epochs_done: usize,
}

impl Inner {
    /// The device and the model in use: the training run's, else the loaded checkpoint's.
    fn parts(&mut self) -> Result<(&mut Gpu, &mut Model<Gpu>)> {
        let model = match (&mut self.trainer, &mut self.loaded) {
            (Some(t), _) => &mut t.model,
            (None, Some(m)) => m,
            (None, None) => bail!("no model yet: train one or load a checkpoint"),
        };
        Ok((&mut self.be, model))
    }
}

/// One page's GPU device, data and model.
#[wasm_bindgen]
pub struct Session(Rc<RefCell<Inner>>);

fn js_error(e: anyhow::Error) -> JsValue {
    js_sys::Error::new(&format!("{e:#}")).into()
}

/// Runs `f` on the session's state as a Promise (its error as a rejected Error).
fn promise<F>(inner: &Rc<RefCell<Inner>>, f: impl FnOnce(Rc<RefCell<Inner>>) -> F + 'static) -> Promise
where
    F: std::future::Future<Output = Result<JsValue>> + 'static,
{
    let inner = inner.clone();
    future_to_promise(async move { f(inner).await.map_err(js_error) })
}

fn busy() -> anyhow::Error {
    anyhow!("busy: the previous call has not finished")
}

#[wasm_bindgen]
impl Session {
    /// Opens a device on the browser's WebGPU adapter; rejects with the reason when there is
    /// none or the device cannot run every kernel.
    pub async fn open() -> Result<Session, JsValue> {
        std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&format!("wgsl-cnn panicked: {info}").into())));
        // Kernel choices measured on this adapter (a deferring tuner, see gpu::deferred_tuning)
        // where the browser grants timestamps; `start` can turn it off.
        let choice = AdapterChoice { autotune: Mode::Cached, ..AdapterChoice::default() };
        let be = Gpu::open(&choice).await.map_err(js_error)?;
        let inner = Inner { be, files: Vec::new(), dataset: Dataset::Mnist, data: None, trainer: None, loaded: None, epochs_done: 0 };
        Ok(Session(Rc::new(RefCell::new(inner))))
    }

    /// The adapter as JSON: name, backend, device type, driver, and whether it is a CPU
    /// (software) adapter.
    pub fn adapter(&self) -> String {
        let inner = self.0.borrow();
        let i = &inner.be.ctx.info;
        json!({
            "name": i.name, "backend": format!("{:?}", i.backend), "device_type": format!("{:?}", i.device_type),
            "driver": i.driver, "driver_info": i.driver_info, "description": inner.be.name(), "software": inner.be.ctx.is_cpu(),
        })
        .to_string()
    }

    /// The browser-storage key of this adapter's kernel choices (`wgsl-cnn-autotune-` and a hash
    /// of the adapter, driver, build and shaders), or nothing where the page cannot measure them
    /// (no `timestamp-query`: the fixed rules).
    pub fn tuning_key(&self) -> Option<String> {
        self.0.borrow().be.ctx.tuner().map(|t| format!("wgsl-cnn-{}", t.storage_name()))
    }

    /// Takes kernel choices kept under `tuning_key` (the text `tuning_json` gave); returns how
    /// many (0 for choices of another build, which are measured again).
    pub fn load_tuning(&self, text: &str) -> Result<usize, JsValue> {
        let inner = self.0.try_borrow().map_err(|_| js_error(busy()))?;
        let tuner = inner.be.ctx.tuner().ok_or_else(|| js_error(anyhow!("this adapter's kernels are chosen by the fixed rules")))?;
        tuner.merge_json("the kernel choices in the browser's storage", text).map_err(js_error)
    }

    /// Every kernel choice made on this adapter so far, to keep under `tuning_key`.
    pub fn tuning_json(&self) -> Option<String> {
        self.0.borrow().be.ctx.tuner().map(|t| t.to_json())
    }

    /// Hands over one of the data set's files (`train-images-idx3-ubyte.gz`, …).
    pub fn add_file(&self, name: String, bytes: Vec<u8>) -> Result<(), JsValue> {
        let mut inner = self.0.try_borrow_mut().map_err(|_| js_error(busy()))?;
        inner.files.retain(|(n, _)| *n != name);
        inner.files.push((name, bytes));
        Ok(())
    }

    /// Checks and loads the files handed over as `dataset` (`mnist` or `fashion-mnist`), as
    /// the CLI checks a data directory; `checksums` is the text of an `IDX-MD5SUMS` list for
    /// files that are not the official ones. Returns the CLI's load report.
    pub fn load_data(&self, dataset: &str, source: &str, checksums: Option<String>) -> Result<String, JsValue> {
        let mut inner = self.0.try_borrow_mut().map_err(|_| js_error(busy()))?;
        let d = Dataset::parse(dataset).map_err(js_error)?;
        let files = std::mem::take(&mut inner.files);
        let data = d.from_bytes(source, files, checksums.as_deref()).map_err(js_error)?;
        let report = data.report.to_string();
        (inner.dataset, inner.data) = (d, Some(data));
        Ok(report)
    }

    /// Prepares a training run from the CLI's options as JSON (`model`, `epochs`,
    /// `batch_size`, `lr`, `optimizer`, `momentum`, `dampening`, `nesterov`, `weight_decay`,
    /// `seed`, `limit_train`, `log_every`; the CLI's defaults where
    /// absent): builds the model and uploads the data. Returns {steps, n_train, n_test, model,
    /// parameters}.
    pub fn start(&self, options: &str) -> Result<String, JsValue> {
        let mut inner = self.0.try_borrow_mut().map_err(|_| js_error(busy()))?;
        let cfg = config_from_json(options).map_err(js_error)?;
        let autotune = autotune_from_json(options).map_err(js_error)?;
        let inner = &mut *inner;
        if let Some(tuner) = inner.be.ctx.tuner() {
            tuner.restart(autotune);
        }
        let data = inner.data.as_ref().ok_or_else(|| js_error(anyhow!("load the data set first")))?;
        let cfg = crate::train::clamp_batch(data, &cfg);
        inner.trainer = None;
        let (model, start) = model_for(&mut inner.be, data, &cfg).map_err(js_error)?;
        let trainer = Trainer::new(&mut inner.be, model, start, data, &cfg).map_err(js_error)?;
        let summary = json!({
            "steps": trainer.steps, "n_train": trainer.n_train, "n_test": trainer.n_test,
            "model": trainer.model.arch.name, "parameters": trainer.model.store.total(),
            "autotune": inner.be.ctx.autotune_mode(),
        });
        (inner.trainer, inner.loaded, inner.epochs_done) = (Some(trainer), None, 0);
        Ok(summary.to_string())
    }

    /// Runs up to `steps` training steps (fewer at the end of an epoch), then waits for the
    /// device to finish them, so that the work in flight stays bounded. Resolves to
    /// {events, epoch, step, steps, images, done, recorded, host_ms}: each event with the
    /// seed's log line where it has one; `host_ms` is the host's time recording and
    /// submitting the `recorded` steps (`Trainer::record_seconds`).
    pub fn advance(&self, steps: usize) -> Promise {
        promise(&self.0, move |inner| async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let inner = &mut *guard;
            let trainer = inner.trainer.as_mut().ok_or_else(|| anyhow!("start a training run first"))?;
            let (recorded, recording) = (trainer.recorded, trainer.record_seconds);
            let events = trainer.advance(&mut inner.be, steps).await?;
            inner.be.settle().await;
            let host_ms = (trainer.record_seconds - recording) * 1e3;
            inner.epochs_done += events.iter().filter(|e| matches!(e, Event::Epoch(_))).count();
            let (epoch, step) = trainer.position();
            let out = json!({
                "events": events.iter().map(event_json).collect::<Vec<_>>(),
                "epoch": epoch, "step": step, "steps": trainer.steps, "images": trainer.images_done(), "done": trainer.done(),
                "recorded": trainer.recorded - recorded, "host_ms": host_ms,
            });
            Ok(JsValue::from_str(&out.to_string()))
        })
    }

    /// Evaluates the model on the test set: {correct, n, accuracy, line, classes, confusion}
    /// (confusion: true label by row, prediction by column).
    pub fn details(&self) -> Promise {
        promise(&self.0, |inner| async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let inner = &mut *guard;
            let data = inner.data.take().ok_or_else(|| anyhow!("load the data set first"))?;
            let names = inner.dataset.class_names();
            let d = match inner.parts() {
                Ok((be, model)) => crate::mistakes::evaluate_split_detailed(be, model, &data.test, false).await,
                Err(e) => {
                    inner.data = Some(data);
                    return Err(e);
                }
            };
            inner.data = Some(data);
            let acc = 100.0 * d.correct as f64 / d.n as f64;
            let c = &d.confusion;
            let rows: Vec<Vec<u32>> = c.counts.chunks(c.classes).map(<[u32]>::to_vec).collect();
            let line = format!("Accuracy of the network on the {} test images: {} %", d.n, crate::train::python_float(acc));
            Ok(JsValue::from_str(&json!({"correct": d.correct, "n": d.n, "accuracy": acc, "line": line, "classes": names, "confusion": rows}).to_string()))
        })
    }
}

/// The CLI's `--autotune` from the page's options (`autotune`: cached, the default; refresh; off).
fn autotune_from_json(text: &str) -> Result<Mode> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("the options are not JSON: {e}"))?;
    match v.get("autotune").and_then(Value::as_str) {
        None | Some("") => Ok(Mode::Cached),
        Some(s) => Mode::parse(s).ok_or_else(|| anyhow!("--autotune: {s:?} is not one of cached, refresh, off")),
    }
}

/// A `TrainConfig` from the page's options (the CLI's flag names with `_`).
fn config_from_json(text: &str) -> Result<TrainConfig> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("the options are not JSON: {e}"))?;
    let d = TrainConfig::default();
    let int = |k: &str, default: usize| -> Result<usize> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| anyhow!("--{}: {x} is not a whole number", k.replace('_', "-"))),
        }
    };
    let model = match v.get("model").and_then(Value::as_str) {
        Some(name) => Some(zoo::arch(name)?),
        None => None,
    };
    let lr = match v.get("lr") {
        None | Some(Value::Null) => d.lr,
        Some(x) => x.as_f64().ok_or_else(|| anyhow!("--lr: {x} is not a number"))? as f32,
    };
    let limit = int("limit_train", 0)?;
    let float = |k: &str| -> Result<Option<f32>> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => Ok(Some(x.as_f64().ok_or_else(|| anyhow!("--{}: {x} is not a number", k.replace('_', "-")))? as f32)),
        }
    };
    let name = v.get("optimizer").and_then(Value::as_str).unwrap_or("adam");
    let nesterov = v.get("nesterov").and_then(Value::as_bool).unwrap_or(false);
    let optimizer = OptimizerConfig::from_options(
        name,
        lr,
        float("momentum")?.unwrap_or(0.0),
        float("dampening")?.unwrap_or(0.0),
        nesterov,
        float("weight_decay")?,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(TrainConfig {
        model,
        epochs: int("epochs", d.epochs)?,
        batch_size: int("batch_size", d.batch_size)?,
        lr,
        optimizer,
        seed: int("seed", d.seed as usize)? as u64,
        limit_train: (limit > 0).then_some(limit),
        save: None,
        resume: None,
        log_every: int("log_every", d.log_every)?,
        progress: false,
        plots: false,
    })
}

fn event_json(e: &Event) -> Value {
    let line = e.line();
    match e {
        Event::Loss { epoch, step, steps, loss, seconds, images, .. } => {
            json!({"kind": "loss", "epoch": epoch, "step": step, "steps": steps, "loss": loss, "seconds": seconds, "images": images, "line": line})
        }
        Event::Kernel(k) => json!({"kind": "kernel", "line": k}),
        Event::Epoch(r) => json!({
            "kind": "epoch", "epoch": r.epoch, "correct": r.correct, "total": r.total, "accuracy": r.accuracy(),
            "seconds": r.seconds, "images": r.images, "losses": r.losses, "line": line,
        }),
    }
}

#[wasm_bindgen]
impl Session {
    /// The class probabilities of a picture (8-bit gray, `width`×`height`, row-major), made
    /// into an MNIST digit exactly as `wgsl-cnn predict` makes a file. Resolves to
    /// {top: [{class, name, probability}] (3), probabilities, pixels (the 784 the model saw)}.
    pub fn predict(&self, width: u32, height: u32, gray: Vec<u8>) -> Promise {
        promise(&self.0, move |inner| async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let inner = &mut *guard;
            let img = image::GrayImage::from_raw(width, height, gray).ok_or_else(|| anyhow!("the picture's pixels do not fill {width}×{height}"))?;
            let pixels = crate::prepare::prepare(&img)?;
            let names = inner.dataset.class_names();
            let (be, model) = inner.parts()?;
            let p = crate::predict::probabilities(be, model, std::slice::from_ref(&pixels)).await.remove(0);
            let top: Vec<Value> = crate::predict::top_k(&p, 3).into_iter().map(|(c, q)| json!({"class": c, "name": names.get(c).map_or_else(|| c.to_string(), |n| n.to_string()), "probability": q})).collect();
            Ok(JsValue::from_str(&json!({"top": top, "probabilities": p, "pixels": pixels}).to_string()))
        })
    }

    /// The model as the CLI's `model.safetensors` (its state_dict under PyTorch's names and
    /// the model in the metadata): `wgsl-cnn eval --checkpoint` and PyTorch load it.
    pub fn checkpoint(&self) -> Promise {
        promise(&self.0, |inner| async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let inner = &mut *guard;
            let epochs = inner.epochs_done;
            let (be, model) = inner.parts()?;
            let tensors = state::state_dict(be, model).await;
            let meta = state::model_metadata(model, epochs, &[]);
            let bytes = checkpoint::to_bytes(Path::new("model.safetensors"), &tensors, &meta)?;
            Ok(Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Loads a checkpoint made by the CLI (or by `checkpoint`) to evaluate and predict with;
    /// returns the model's name.
    pub fn load_checkpoint(&self, name: &str, bytes: Vec<u8>) -> Result<String, JsValue> {
        let mut inner = self.0.try_borrow_mut().map_err(|_| js_error(busy()))?;
        let inner = &mut *inner;
        let path = Path::new(name);
        let arch = state::arch_from_bytes(path, &bytes).map_err(js_error)?;
        let (tensors, meta) = checkpoint::load_strict_bytes(path, &bytes, &state::state_dict_specs(&arch)).map_err(js_error)?;
        let model = state::model_from_state_dict(&mut inner.be, &arch, &tensors, crate::nn::EVAL_BATCH).map_err(|e| js_error(e.context(name.to_string())))?;
        inner.epochs_done = meta.get("epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
        (inner.loaded, inner.trainer) = (Some(model), None);
        Ok(arch.name.to_string())
    }

    /// `wgsl-cnn bench` as a page can run it (`bench::end_to_end`): each op call of the step
    /// timed by GPU timestamps where the browser grants `timestamp-query` (each dispatch in a
    /// pass of its own; none otherwise, as a page cannot wait between op calls), the first
    /// step, the step with a wait after each, its host record + submit time, steps back to
    /// back, an eval batch, on a synthetic data set. Options as JSON: `model`, `batch`, `repeats`, `warmup`, and what the
    /// browser says of itself (`adapter`: its description, `host`: the user agent, `threads`:
    /// navigator.hardwareConcurrency), which go into the records where wgpu knows nothing, and
    /// `autotune` (as `start`'s).
    /// Resolves to {records (the schema of `bench --json`), table (as `bench` prints it)}.
    pub fn bench(&self, options: &str) -> Promise {
        let options = options.to_string();
        promise(&self.0, move |inner| async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let v: Value = serde_json::from_str(&options).map_err(|e| anyhow!("the options are not JSON: {e}"))?;
            let int = |k: &str, d: u64| v.get(k).and_then(Value::as_u64).unwrap_or(d) as usize;
            let arch = zoo::arch(v.get("model").and_then(Value::as_str).unwrap_or("lenet5"))?;
            let (batch, repeats, warmup) = (int("batch", 100), int("repeats", 5), int("warmup", 1));
            if let Some(tuner) = guard.be.ctx.tuner() {
                tuner.restart(autotune_from_json(&options)?);
            }
            let mut report = crate::bench::end_to_end(&mut guard.be, &arch, batch, repeats, warmup).await?;
            if report.ctx_info.name.is_empty() {
                report.ctx_info.name = v.get("adapter").and_then(Value::as_str).unwrap_or("unknown").to_string();
            }
            let mut records = report.records(false);
            for r in records.as_array_mut().into_iter().flatten() {
                if let Some(host) = v.get("host") {
                    r["host_cpu"] = host.clone();
                }
                if let Some(threads) = v.get("threads") {
                    r["host_threads"] = threads.clone();
                }
            }
            Ok(JsValue::from_str(&json!({"records": records, "table": report.table()}).to_string()))
        })
    }

    /// One training step from a PyTorch-written state_dict and batch, as `wgsl-cnn step`:
    /// resolves to the bytes of the file it writes (`logits`, `loss`, `grad.*`, `after.*`).
    pub fn step(&self, init: Vec<u8>, batch: Vec<u8>, lr: f32) -> Promise {
        promise(&self.0, move |inner| async move {
            let mut guard = inner.try_borrow_mut().map_err(|_| busy())?;
            let inner = &mut *guard;
            let opt = OptimizerConfig::default().with_lr(lr);
            let bytes = crate::step::run_bytes(&mut inner.be, &init, &batch, &opt).await?;
            Ok(Uint8Array::from(bytes.as_slice()).into())
        })
    }
}
