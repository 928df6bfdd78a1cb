//! The training curves as SVG: loss over steps (every printed loss) and test accuracy per
//! epoch, side by side. plotters' SVG backend writes text as <text>, so no fonts are needed;
//! PNG would need plotters' bitmap backend with a font, so there is none.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::metrics::Record;

/// Draws `records` to an SVG file at `path` (replacing it).
pub fn draw_curves(records: &[Record], path: &Path) -> Result<()> {
    let losses: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.global_step as f64, r.loss?))).collect();
    let accs: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.epoch as f64, r.test_accuracy?))).collect();
    let err = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(480);

    let max_step = losses.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_loss = losses.iter().map(|p| p.1).fold(0.1, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..max_step, 0.0..max_loss)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("step").y_desc("loss").draw().map_err(|e| err(&e))?;
    chart.draw_series(LineSeries::new(losses, &BLUE)).map_err(|e| err(&e))?;

    let max_epoch = accs.iter().map(|p| p.0).fold(1.0, f64::max);
    let min_acc = accs.iter().map(|p| p.1).fold(100.0, f64::min);
    let low = (min_acc - 1.0).floor().clamp(0.0, 99.0);
    let mut chart = ChartBuilder::on(&right)
        .caption("test accuracy", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.5..max_epoch + 0.5, low..100.0)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("epoch").y_desc("%").draw().map_err(|e| err(&e))?;
    chart.draw_series(LineSeries::new(accs.iter().copied(), &RED)).map_err(|e| err(&e))?;
    chart.draw_series(accs.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
