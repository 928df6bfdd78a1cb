//! `eval`'s mistakes: the confusion matrix (counted on the device by `Op::Confusion`),
//! per-class accuracy, and the wrongly classified test images as PNGs with an overview
//! sheet of the first 100.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::backend::Backend;
use crate::data::Split;
use crate::model::{Model, IMAGE_PIXELS};
use crate::reference::reduce::argmax;

/// A [classes, classes] confusion matrix: row = true class, column = predicted class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    pub classes: usize,
    pub counts: Vec<u32>,
}

impl Confusion {
    pub fn get(&self, truth: usize, predicted: usize) -> u32 {
        self.counts[truth * self.classes + predicted]
    }
    /// Everything counted (the test images with a valid label).
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }
    /// The diagonal: correct predictions.
    pub fn correct(&self) -> u64 {
        (0..self.classes).map(|c| self.get(c, c) as u64).sum()
    }
    /// Images of class `c`.
    pub fn class_total(&self, c: usize) -> u64 {
        (0..self.classes).map(|p| self.get(c, p) as u64).sum()
    }

    /// Per-class accuracy lines, then the matrix (`names[c]` labels class c).
    pub fn format(&self, names: &[&str]) -> String {
        let name = |c: usize| names.get(c).map_or_else(|| c.to_string(), |n| n.to_string());
        let mut s = String::from("Per-class accuracy:\n");
        for c in 0..self.classes {
            let (ok, all) = (self.get(c, c), self.class_total(c));
            let acc = if all == 0 { 0.0 } else { 100.0 * ok as f64 / all as f64 };
            // Digits need no name beside their label.
            let label = if name(c) == c.to_string() { String::new() } else { format!(" {:<12}", name(c)) };
            let _ = writeln!(s, "  {c}{label} {acc:6.2} % ({ok}/{all})");
        }
        s.push_str("Confusion matrix (rows: true class, columns: predicted class):\n     ");
        let width = self.counts.iter().map(|c| c.to_string().len()).max().unwrap_or(1).max(3);
        for c in 0..self.classes {
            let _ = write!(s, " {c:>width$}");
        }
        s.push('\n');
        for t in 0..self.classes {
            let _ = write!(s, "  {t:>2} ");
            for p in 0..self.classes {
                let _ = write!(s, " {:>width$}", self.get(t, p));
            }
            s.push('\n');
        }
        s
    }
}

/// One wrongly classified test image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mistake {
    pub index: usize,
    pub truth: usize,
    pub predicted: usize,
}

/// What `evaluate_split_detailed` counted.
pub struct Detailed {
    /// The model's correct count (`Op::CountCorrect`), for the cross-check with the diagonal.
    pub correct: u32,
    pub n: usize,
    pub confusion: Confusion,
    /// Filled only when asked for (the logits are read back per batch).
    pub mistakes: Vec<Mistake>,
}

/// Evaluates (eval mode) the whole split in order, counting the confusion matrix on the
/// device; with `find_mistakes` it also reads each batch's logits to list the mistakes.
pub async fn evaluate_split_detailed<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, split: &Split, find_mistakes: bool) -> Detailed {
    let (ds, n) = crate::train::upload(be, split, None);
    let order = be.index(n);
    be.write_index(&order, &(0..n as u32).collect::<Vec<_>>());
    let classes = model.arch.classes;
    let counts = be.index(classes * classes);
    model.take_correct(be).await;
    let mut mistakes = Vec::new();
    for offset in (0..n).step_by(model.eval_capacity) {
        let nb = model.eval_capacity.min(n - offset);
        model.gather_batch(be, &ds, &order, offset, nb);
        model.eval_batch(be, nb);
        model.count_confusion(be, nb, &counts);
        be.submit();
        if find_mistakes {
            let logits = model.read_logits(be, nb).await;
            for (i, row) in logits.chunks(classes).enumerate() {
                let (truth, predicted) = (split.labels[offset + i] as usize, argmax(row));
                if truth != predicted {
                    mistakes.push(Mistake { index: offset + i, truth, predicted });
                }
            }
        }
    }
    let correct = model.take_correct(be).await;
    let confusion = Confusion { classes, counts: be.read_index_async(&counts).await };
    Detailed { correct, n, confusion, mistakes }
}

/// Writes each mistake as `<index>-true<t>-pred<p>.png` (28×28 grayscale, as in the data
/// set) into `dir`, and `overview.png`: the first 100 on a 10×10 sheet. Returns the files written.
pub fn write_mistakes(dir: &Path, split: &Split, mistakes: &[Mistake]) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let side = 28u32;
    for m in mistakes {
        ensure!(m.index < split.count, "image {} is not in the split", m.index);
        let img = image::GrayImage::from_raw(side, side, split.image(m.index).to_vec()).expect("28×28 pixels");
        let path = dir.join(format!("{:05}-true{}-pred{}.png", m.index, m.truth, m.predicted));
        img.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The sheet: 10 per row, 2 px mid-gray gaps so that black digits stay apart.
    let first: Vec<&Mistake> = mistakes.iter().take(100).collect();
    let (cols, gap) = (10u32, 2u32);
    let rows = (first.len() as u32).div_ceil(cols).max(1);
    let mut sheet = image::GrayImage::from_pixel(cols * (side + gap) + gap, rows * (side + gap) + gap, image::Luma([128]));
    for (k, m) in first.iter().enumerate() {
        let (x0, y0) = (gap + (k as u32 % cols) * (side + gap), gap + (k as u32 / cols) * (side + gap));
        for (q, &v) in split.image(m.index).iter().enumerate() {
            sheet.put_pixel(x0 + q as u32 % side, y0 + q as u32 / side, image::Luma([v]));
        }
    }
    let path = dir.join("overview.png");
    sheet.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
    debug_assert_eq!(IMAGE_PIXELS, (side * side) as usize);
    Ok(mistakes.len() + 1)
}
