//! Issue 10: a save killed at any of its steps leaves a resumable save (the old one or the
//! new one), and the shipped subset trains as a data directory. Runs the binary on the CPU
//! reference (mlp, 200 images), ending it at each step through `WGSL_CNN_FAULT_SAVE`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::temp_dir;
use wgsl_cnn::data::assets_subset_dir;

fn train(save: &Path, extra: &[&str], fault: Option<u32>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"));
    cmd.args(["--backend", "cpu", "train", "--model", "mlp", "--limit-train", "200", "--no-progress", "--data-dir"])
        .arg(assets_subset_dir())
        .arg("--save")
        .arg(save)
        .args(extra)
        .env_remove("WGSL_CNN_FAULT_SAVE");
    if let Some(k) = fault {
        cmd.env("WGSL_CNN_FAULT_SAVE", k.to_string());
    }
    cmd.output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_save_killed_at_any_step_leaves_a_resumable_save() {
    let dir = temp_dir("resume-faults", "kill");
    let save = dir.join("m.safetensors");
    let s = save.to_str().unwrap();
    for step in 1..=4u32 {
        let first = train(&save, &["--epochs", "1"], None);
        assert!(first.status.success(), "{}", text(&first));
        let killed = train(&save, &["--epochs", "2", "--resume", s], Some(step));
        assert_eq!(killed.status.code(), Some(137), "step {step}: {}", text(&killed));
        // What is left resumes: the save of epoch 1 (killed before the model file was
        // renamed) or of epoch 2 (killed after).
        let resumed = train(&save, &["--epochs", "3", "--resume", s], None);
        let out = text(&resumed);
        assert!(resumed.status.success(), "step {step}: {out}");
        let from = if step == 4 { 2 } else { 1 };
        assert!(out.contains(&format!("after epoch {from} ")), "step {step}: {out}");
        // The killed process's temporary files are gone.
        let left: Vec<String> = std::fs::read_dir(&*dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        // (Besides the save, train writes its metrics file and curves next to it.)
        let mut want: Vec<String> =
            ["m.curves.svg", "m.metrics.jsonl", "m.optim.safetensors", "m.safetensors"].map(String::from).to_vec();
        let mut left_sorted = left.clone();
        left_sorted.sort();
        want.sort();
        assert_eq!(left_sorted, want, "step {step}");
    }
}

#[test]
fn nonsense_on_the_command_line_fails_before_any_work() {
    let dir = temp_dir("resume-faults", "cli");
    let save = dir.join("m.safetensors");
    for (args, needle) in [
        (vec!["--lr", "-1"], "--lr -1 is not allowed"),
        (vec!["--min-accuracy", "nan"], "--min-accuracy NaN is not allowed"),
        (vec!["--min-accuracy", "101"], "from 0 to 100"),
        (vec!["--epochs", "0"], "--epochs must be at least 1"),
        // (A batch larger than the data set is clamped to it, as PyTorch's DataLoader gives one
        // batch: tests/memory_faults.rs; one too large for memory is refused there too.)
        (vec!["--log-every", "0"], "--log-every must be at least 1"),
    ] {
        let o = train(&save, &args, None);
        assert!(!o.status.success() && text(&o).contains(needle), "{args:?}: {}", text(&o));
        assert!(!save.exists(), "{args:?} wrote a checkpoint");
    }
    let o = train(Path::new("/"), &["--epochs", "1"], None);
    assert!(!o.status.success() && text(&o).contains("not a file name"), "{}", text(&o));
}

#[test]
fn the_shipped_subset_trains_without_a_subcommand() {
    // `cargo run --release -- --data-dir assets/mnist-subset --epochs 1`, on the CPU reference.
    let dir = temp_dir("resume-faults", "first-run");
    let o = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"))
        .args(["--backend", "cpu", "--model", "mlp", "--limit-train", "200", "--epochs", "1", "--no-progress", "--data-dir"])
        .arg(assets_subset_dir())
        .arg("--save")
        .arg(dir.join("m.safetensors"))
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Accuracy of the network on the 1000 test images") && dir.join("m.safetensors").exists(), "{out}");
}
