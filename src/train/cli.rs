//! The CLI's training run: the shared `Trainer` driven to the end, with what only the native
//! program does around it: the progress bar, the checkpoint and metrics after each epoch, the
//! curves picture.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::{model_for, EpochReport, Event, TrainConfig, Trainer};
use crate::backend::Backend;
use crate::data::Mnist;
use crate::metrics::{Metrics, Record};
use crate::model::state;

/// Steps recorded per `Trainer::advance` call: few enough to keep the bar moving, enough to
/// make the call's overhead nothing.
const STEPS_PER_ADVANCE: usize = 10;

/// Trains from scratch or from `cfg.resume`, printing the seed's log lines, saving after each
/// epoch (blocking: the page awaits the `Trainer` itself).
pub fn train<B: Backend + 'static>(be: &mut B, data: &Mnist, cfg: &TrainConfig) -> Result<Vec<EpochReport>> {
    super::validate(cfg)?;
    let cfg = &super::clamp_batch(data, cfg);
    if let Some(path) = &cfg.save {
        check_save_target(path)?;
    }
    let (model, start_epoch) = model_for(be, data, cfg)?;
    let model_bytes = be.allocated_bytes();
    let mut trainer = Trainer::new(be, model, start_epoch, data, cfg)?;
    if let (Some(model_b), Some(all)) = (model_bytes, be.allocated_bytes()) {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        eprintln!(
            "device buffers: {:.1} MiB (parameters, gradients, Adam state and activations for training batches of {} \
             and eval batches of {}: {:.1} MiB; {} training + {} test images as u8 with the permutations: {:.1} MiB)",
            mib(all),
            cfg.batch_size,
            trainer.model.eval_capacity,
            mib(model_b),
            trainer.n_train,
            trainer.n_test,
            mib(all - model_b)
        );
    }
    let mut metrics = match &cfg.save {
        Some(save) => Some(Metrics::start(save, cfg.resume.as_deref().map(|r| (r, start_epoch)))?),
        None => None,
    };
    let steps = trainer.steps;
    let mut reports = Vec::new();
    while !trainer.done() {
        let epoch = trainer.position().0;
        let bar = progress_bar(cfg.progress, trainer.n_train as u64, epoch + 1, cfg.epochs);
        let mut epoch_done = None;
        while epoch_done.is_none() {
            let events = match pollster::block_on(trainer.advance(be, STEPS_PER_ADVANCE)) {
                Ok(events) => events,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            };
            bar.set_position(trainer.images_done() as u64);
            for event in events {
                match event {
                    Event::Kernel(line) => bar.suspend(|| eprintln!("kernel: {line}")),
                    Event::Loss { step, seconds, images, loss, .. } => {
                        bar.set_message(format!("loss {loss:.4}"));
                        if let Some(m) = metrics.as_mut() {
                            m.push(record(epoch, step - 1, steps, seconds, images, Some(loss), None))?;
                        }
                        let line = event.line().expect("a loss has a line");
                        bar.suspend(|| println!("{line}"));
                    }
                    Event::Epoch(report) => epoch_done = Some(report),
                }
            }
        }
        bar.finish_and_clear();
        let report = epoch_done.expect("the loop ends with an epoch");
        println!("{}", Event::Epoch(report.clone()).line().expect("an epoch has a line"));
        eprintln!(
            "epoch {} trained in {:.1} s ({:.0} images/s) on {}",
            report.epoch,
            report.seconds,
            report.images as f64 / report.seconds,
            be.name()
        );
        if let Some(path) = &cfg.save {
            // The optimizer and its hyper-parameters (lr among them) are the model's
            // (`state::model_metadata`).
            let recipe = [("seed", cfg.seed.to_string()), ("batch_size", cfg.batch_size.to_string())];
            pollster::block_on(state::save_training(be, &trainer.model, path, report.epoch, &recipe))?;
        }
        if let (Some(m), Some(save)) = (metrics.as_mut(), &cfg.save) {
            m.push(record(epoch, steps - 1, steps, report.seconds, report.images, None, Some(report.accuracy())))?;
            if cfg.plots {
                let svg = crate::metrics::paths_for(save).1;
                if let Err(e) = crate::plot::draw_curves(&m.records, &svg) {
                    eprintln!("warning: {e:#}");
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Checks that the checkpoint and its optimizer file can be written, before an epoch is
/// spent: a file name (not `/`, not a directory) in a directory we may create files in.
pub fn check_save_target(path: &std::path::Path) -> Result<()> {
    let Some(name) = path.file_name() else {
        bail!("--save {}: not a file name; give a path such as model.safetensors", path.display());
    };
    for p in [path.to_path_buf(), crate::checkpoint::optimizer_path(path)] {
        if p.is_dir() {
            bail!("--save {}: {} is a directory; give a file path such as {}", path.display(), p.display(), p.join("model.safetensors").display());
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}, where the checkpoint is to be saved", dir.display()))?;
    let probe = dir.join(format!(".{}.probe-{}", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    let _ = std::fs::remove_file(&probe);
    written.with_context(|| format!("--save {}: cannot write files in {}", path.display(), dir.display()))
}




/// A metrics line with the numbers as printed: the loss to 4 decimals, the accuracy as
/// `python_float` prints it (the shortest repr of the f64), time to 1 ms.
fn record(epoch: usize, s: usize, steps: usize, seconds: f64, images: usize, loss: Option<f32>, acc: Option<f64>) -> Record {
    Record {
        epoch: epoch + 1,
        step: s + 1,
        global_step: epoch * steps + s + 1,
        loss: loss.map(|l| format!("{l:.4}").parse().expect("a formatted number parses")),
        test_accuracy: acc,
        seconds: (seconds * 1000.0).round() / 1000.0,
        images_per_s: (images as f64 / seconds).round(),
    }
}


fn progress_bar(enabled: bool, images: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(images);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} images, {rate} images/s, eta {eta} {msg}")
            .expect("the progress template is valid")
            .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}", s.per_sec());
            })
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
