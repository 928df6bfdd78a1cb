//! `predict`: a checkpoint's classes for picture files. Each file is prepared on its own
//! (`prepare`); those that made it go through the model together, a batch at a time; a
//! file that fails gets its own error line and the others go on.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::backend::Backend;
use crate::model::Model;

/// The extensions taken from a directory (a file named on the command line is always tried).
const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// The files to predict: each named file, and each picture directly inside a named
/// directory (sorted by name). A directory that cannot be read is an error entry.
pub fn collect_inputs(inputs: &[PathBuf]) -> Vec<(PathBuf, Option<String>)> {
    let mut files = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push((input.clone(), None));
            continue;
        }
        match std::fs::read_dir(input) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
                    .collect();
                found.sort();
                files.extend(found.into_iter().map(|p| (p, None)));
            }
            Err(e) => files.push((input.clone(), Some(format!("cannot read the directory: {e}")))),
        }
    }
    files
}

/// Softmax probabilities of each 28×28 image (0 = background), `model.eval_capacity` at a time.
pub async fn probabilities<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, images: &[Vec<u8>]) -> Vec<Vec<f32>> {
    let classes = model.arch.classes;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(model.eval_capacity) {
        // The same scaling as the gather kernel: f32(byte) / 255.
        let x: Vec<f32> = chunk.iter().flat_map(|img| img.iter().map(|&v| v as f32 / 255.0)).collect();
        model.set_batch(be, &x, &vec![0; chunk.len()]);
        model.forward(be, chunk.len(), false);
        for row in model.read_logits(be, chunk.len()).await.chunks(classes) {
            out.push(softmax(row));
        }
    }
    out
}

/// Softmax in f64 (then f32), stable.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

/// The `k` most probable classes, most probable first (ties: lower class first).
pub fn top_k(p: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|c| (c, p[c])).collect()
}

/// What became of one file.
pub enum Outcome {
    Predicted { class: usize, top: Vec<(usize, f32)> },
    Failed(String),
}

/// Prepares every file and predicts those that made it. One outcome per file, in order.
pub async fn predict_files<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, files: &[(PathBuf, Option<String>)]) -> Vec<Outcome> {
    let prepared: Vec<Result<Vec<u8>, String>> = files
        .iter()
        .map(|(path, err)| match err {
            Some(e) => Err(e.clone()),
            None => prepare_file(path).map_err(|e| format!("{e:#}")),
        })
        .collect();
    let good: Vec<Vec<u8>> = prepared.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut probs = probabilities(be, model, &good).await.into_iter();
    prepared
        .into_iter()
        .map(|p| match p {
            Ok(_) => {
                let p = probs.next().expect("one probability row per prepared image");
                let top = top_k(&p, 3);
                Outcome::Predicted { class: top[0].0, top }
            }
            Err(e) => Outcome::Failed(e),
        })
        .collect()
}

pub fn prepare_file(path: &Path) -> Result<Vec<u8>> {
    crate::prepare::prepare(&crate::prepare::decode(path)?)
}

/// One line of text for a file.
pub fn format_line(path: &Path, outcome: &Outcome, names: &[&str]) -> String {
    let name = |c: usize| names.get(c).map_or_else(|| c.to_string(), |n| n.to_string());
    match outcome {
        Outcome::Predicted { class, top } => {
            let tops: Vec<String> = top.iter().map(|&(c, p)| format!("{} {:.2} %", name(c), 100.0 * p)).collect();
            format!("{}: {} (top 3: {})", path.display(), name(*class), tops.join(", "))
        }
        Outcome::Failed(e) => format!("{}: error: {e}", path.display()),
    }
}

/// One JSON record for a file.
pub fn json_record(path: &Path, outcome: &Outcome, names: &[&str]) -> serde_json::Value {
    let name = |c: usize| names.get(c).map_or_else(|| c.to_string(), |n| n.to_string());
    match outcome {
        Outcome::Predicted { class, top } => serde_json::json!({
            "file": path.display().to_string(),
            "class": class,
            "name": name(*class),
            "top": top.iter().map(|&(c, p)| serde_json::json!({"class": c, "name": name(c), "probability": p})).collect::<Vec<_>>(),
        }),
        Outcome::Failed(e) => serde_json::json!({"file": path.display().to_string(), "error": e}),
    }
}
