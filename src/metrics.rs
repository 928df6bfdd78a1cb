//! The training metrics file: one JSON line per printed loss and per evaluation, next to
//! the checkpoint (`model.safetensors` → `model.metrics.jsonl`), holding the numbers as
//! printed. `--resume` carries the resumed run's lines up to its epoch over and appends.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// One line: a printed loss (`loss`) or an evaluation (`test_accuracy`).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub epoch: usize,
    /// The step within the epoch, as printed (the epoch's last step for an evaluation).
    pub step: usize,
    /// Steps since the start of training.
    pub global_step: usize,
    pub loss: Option<f64>,
    /// Percent.
    pub test_accuracy: Option<f64>,
    /// Seconds of training in this epoch so far.
    pub seconds: f64,
    /// Training images per second in this epoch so far.
    pub images_per_s: f64,
}

impl Record {
    pub fn to_json(&self) -> Value {
        let mut v = json!({"epoch": self.epoch, "step": self.step, "global_step": self.global_step});
        if let Some(l) = self.loss {
            v["loss"] = json!(l);
        }
        if let Some(a) = self.test_accuracy {
            v["test_accuracy"] = json!(a);
        }
        v["seconds"] = json!(self.seconds);
        v["images_per_s"] = json!(self.images_per_s);
        v
    }

    pub fn from_json(v: &Value) -> Option<Record> {
        let u = |k: &str| v.get(k)?.as_u64().map(|x| x as usize);
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        Some(Record {
            epoch: u("epoch")?,
            step: u("step")?,
            global_step: u("global_step")?,
            loss: f("loss"),
            test_accuracy: f("test_accuracy"),
            seconds: f("seconds")?,
            images_per_s: f("images_per_s")?,
        })
    }
}

/// `model.safetensors` → (`model.metrics.jsonl`, `model.curves.svg`).
pub fn paths_for(checkpoint: &Path) -> (PathBuf, PathBuf) {
    (checkpoint.with_extension("metrics.jsonl"), checkpoint.with_extension("curves.svg"))
}

/// Every record of a metrics file (a line that does not parse is an error).
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| Record::from_json(&v))
                .with_context(|| format!("{} line {} is not a metrics record", path.display(), i + 1))
        })
        .collect()
}

/// The metrics file being written.
pub struct Metrics {
    path: PathBuf,
    pub records: Vec<Record>,
}

impl Metrics {
    /// Starts the metrics file next to `save`. With `resumed = Some((checkpoint, epoch))`,
    /// the lines of the resumed checkpoint's file up to `epoch` come first (a missing file
    /// is a warning: the curves then start at the resumed epoch).
    pub fn start(save: &Path, resumed: Option<(&Path, usize)>) -> Result<Metrics> {
        let path = paths_for(save).0;
        let mut records = Vec::new();
        if let Some((checkpoint, epoch)) = resumed {
            let old = paths_for(checkpoint).0;
            match read(&old) {
                Ok(r) => records = r.into_iter().filter(|r| r.epoch <= epoch).collect(),
                Err(e) => eprintln!("warning: {e:#}; the metrics start at epoch {}", epoch + 1),
            }
        }
        let mut text = String::new();
        for r in &records {
            text.push_str(&r.to_json().to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Metrics { path, records })
    }

    /// Appends one record (to the file at once, so a killed run keeps what it printed).
    pub fn push(&mut self, r: Record) -> Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.path).with_context(|| format!("cannot open {}", self.path.display()))?;
        writeln!(f, "{}", r.to_json()).with_context(|| format!("cannot write {}", self.path.display()))?;
        self.records.push(r);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
