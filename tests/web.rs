//! The browser page on WebGPU, in headless Chromium (Debian's package: Chrome's SwiftShader
//! adapter), served by `wgsl-cnn serve` with the offline subset and driven by
//! `web/tests/browser.mjs`. It needs the page built (`scripts/web.sh --build-only`), the
//! `chromium` package and `npm ci` in web/tests, so a plain `cargo test` leaves it out
//! (ignored, and listed as such); CI runs it with `cargo test --release --test web -- --ignored`.
//!
//! What it holds the page to:
//! - one training step in the browser from a PyTorch-style init and batch matches the CPU
//!   reference's `step` on the same files, by the GPU tests' rule (`compare::step_outputs`),
//!   for lenet5 and tied;
//! - a short training run lowers the loss, prints the seed's lines, and the checkpoint the page
//!   downloads evaluates with `wgsl-cnn eval` to the accuracy the page printed;
//! - a drawn digit gets the class `wgsl-cnn predict` gives the same picture;
//! - the benchmark view's JSON has `bench --json`'s schema (`bench --table` renders it);
//! - kernel choices are timed on the adapter before the first step, kept in the browser's
//!   storage, and a second run takes them from there and repeats the first line for line;
//! - without `--enable-unsafe-webgpu` the page says WebGPU is missing, with no uncaught error.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use wgsl_cnn::checkpoint::{self, NamedTensor};
use wgsl_cnn::model::state::{parameter_specs, state_dict};
use wgsl_cnn::model::{zoo, Model};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::rng::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_wgsl-cnn");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `wgsl-cnn serve` on a free loopback port; killed when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Server {
    let subset = repo().join("assets/mnist-subset");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--offline", "--data-dir"])
        .arg(&subset)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("wgsl-cnn serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("serve printed {line:?}")).to_string();
    Server(child, url)
}

/// A step's inputs as PyTorch would write them: a freshly initialised state_dict and a batch
/// of `n` subset images (`x` f32 [n,1,28,28], `y` int64 [n]).
fn write_step_inputs(dir: &Path, model: &str, n: usize, seed: u64) {
    let arch = zoo::arch(model).unwrap();
    let mut cpu = Cpu::default();
    let fresh = Model::new(&mut cpu, &arch, 1, seed).unwrap();
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("model".to_string(), model.to_string());
    let init = pollster::block_on(state_dict(&mut cpu, &fresh));
    checkpoint::save(&dir.join(format!("step-{model}-init.safetensors")), &init, &meta).unwrap();
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let mut rng = Rng::new(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let i = rng.below(data.train.count);
        x.extend(data.train.image(i).iter().map(|&p| p as f32 / 255.0));
        y.push(data.train.labels[i] as i64);
    }
    let batch = [NamedTensor::f32("x", &[n, 1, 28, 28], x), NamedTensor::i64("y", &[n], y)];
    checkpoint::save(&dir.join(format!("step-{model}-batch.safetensors")), &batch, &Default::default()).unwrap();
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wgsl-cnn {args:?} failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
#[ignore = "needs the page built (scripts/web.sh --build-only), chromium and npm ci in web/tests; CI runs it"]
fn the_page_trains_predicts_and_matches_the_reference() {
    let pkg = repo().join("web/pkg/wgsl_cnn_bg.wasm");
    assert!(pkg.is_file(), "{} is missing: run scripts/web.sh --build-only first", pkg.display());
    let dir = common::temp_dir("web", "page");
    for (model, seed) in [("lenet5", 7), ("tied", 9)] {
        write_step_inputs(&dir, model, 16, seed);
    }
    let server = serve();
    let t0 = std::time::Instant::now();
    let status = Command::new("node")
        .arg(repo().join("web/tests/browser.mjs"))
        .arg(&server.1)
        .arg(&*dir)
        .status()
        .expect("node runs (apt-get install nodejs npm)");
    assert!(status.success(), "web/tests/browser.mjs failed");
    eprintln!("browser run: {:.1} s", t0.elapsed().as_secs_f64());
    let results: Value = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    eprintln!("adapter: {}", results["adapter"]);

    // Without WebGPU: the message, nothing uncaught.
    let nw = &results["no_webgpu"];
    assert_eq!(nw["phase"], "failed", "{nw}");
    let status_text = nw["status"].as_str().unwrap();
    assert!(status_text.contains("WebGPU") && status_text.contains("Use a browser that ships WebGPU"), "{status_text}");
    assert_eq!(nw["errors"].as_array().unwrap().len(), 0, "{nw}");

    // The browser's step against the CPU reference's, by the GPU tests' rule.
    for model in ["lenet5", "tied"] {
        let arch = zoo::arch(model).unwrap();
        let got = checkpoint::load_any(&dir.join(format!("step-{model}-web.safetensors"))).unwrap();
        let init = dir.join(format!("step-{model}-init.safetensors"));
        let batch = dir.join(format!("step-{model}-batch.safetensors"));
        let cpu_out = dir.join(format!("step-{model}-cpu.safetensors"));
        run(&["--backend", "cpu", "step", "--init", init.to_str().unwrap(), "--batch", batch.to_str().unwrap(), "--out", cpu_out.to_str().unwrap()]);
        let want = checkpoint::load_any(&cpu_out).unwrap();
        let params: Vec<String> = parameter_specs(&arch).into_iter().map(|s| s.name).collect();
        for (name, c) in wgsl_cnn::compare::step_outputs(&got, &want, &params, 1e-3).unwrap_or_else(|e| panic!("{model}: {e}")) {
            eprintln!("web {model} {name:<34} {c}");
            assert!(c.passed(), "web {model} {name}: {c}");
        }
    }
    assert_eq!(results["step_errors"].as_array().unwrap().len(), 0, "{}", results["step_errors"]);

    // The benchmark view's JSON: bench --json's schema, as `bench --table` reads it.
    let bench = dir.join("bench.json");
    let table = run(&["bench", "--table", bench.to_str().unwrap()]);
    let row = table.lines().nth(2).unwrap_or_else(|| panic!("bench --table printed no row:\n{table}"));
    assert!(row.starts_with("| google swiftshader |") && row.contains("lenet5"), "{table}");
    eprintln!("the page's benchmark:\n{}\n{table}", results["bench_table"].as_str().unwrap_or(""));
    // Chrome grants timestamp-query: one op record per op call of the LeNet-5 step (the 20 of
    // tests/bench.rs), timed pass by pass. Chrome rounds timestamps (to 100 µs unless told
    // otherwise), so a short call may read 0; the step's calls together may not.
    let records: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&bench).unwrap()).unwrap();
    let ops: Vec<&Value> = records.iter().filter(|r| r["kind"] == "op").collect();
    assert_eq!(ops.len(), 20, "op records of the page's benchmark: {ops:#?}");
    assert!(ops.iter().all(|r| r["timer"] == "timestamp" && r["first_ms"].is_null() && r["median_ms"].as_f64().is_some_and(|m| m >= 0.0 && m.is_finite())), "{ops:#?}");
    let sum: f64 = ops.iter().map(|r| r["median_ms"].as_f64().unwrap()).sum();
    assert!(sum > 0.0, "the op calls took no time at all: {ops:#?}");
    for name in ["conv2.forward conv2d_", "conv2.backward conv2d_", "adam adam"] {
        assert!(ops.iter().any(|r| r["kernel"].as_str().unwrap().starts_with(name)), "no op record {name}: {ops:#?}");
    }
    // The benchmark's kernels: timed on the adapter in its first step, and recorded.
    let choices: Vec<&Value> = records.iter().filter(|r| r["kind"] == "kernel_choice").collect();
    assert!(records.iter().all(|r| r["autotune"] == "cached") && choices.len() >= 6, "{choices:#?}");
    assert!(choices.iter().all(|r| r["measured"] == true && r["median_ms"].as_f64().is_some_and(f64::is_finite)), "{choices:#?}");

    // Training: the seed's lines, a falling loss, the accuracy `eval` finds in the download.
    let train = &results["train"];
    let lines: Vec<&str> = train["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(lines.len(), 13, "12 loss lines and the accuracy: {lines:#?}");
    assert!(lines[0].starts_with("Epoch [1/1], Step [1/12], Loss: "), "{}", lines[0]);
    let losses: Vec<f64> = lines[..12].iter().map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect();
    let (first, last) = (losses[..3].iter().sum::<f64>() / 3.0, losses[9..].iter().sum::<f64>() / 3.0);
    assert!(last < 0.8 * first, "the loss did not fall: {losses:?}");
    let accuracy_line = lines[12];
    assert!(accuracy_line.starts_with("Accuracy of the network on the 1000 test images: "), "{accuracy_line}");
    let ckpt = dir.join("model.safetensors");
    let subset = repo().join("assets/mnist-subset");
    let eval = run(&["--backend", "cpu", "eval", "--checkpoint", ckpt.to_str().unwrap(), "--data-dir", subset.to_str().unwrap()]);
    assert!(eval.lines().any(|l| l == accuracy_line), "the page printed {accuracy_line:?}; wgsl-cnn eval printed:\n{eval}");
    assert_eq!(train["details"]["line"].as_str(), Some(accuracy_line));
    assert_eq!(results["train_errors"].as_array().unwrap().len(), 0, "{}", results["train_errors"]);

    // Kernel choices: timed before the first step (the shapes of batch 50 are new; the eval
    // batch's may come from the benchmark's run), kept in the browser's storage; the second
    // run takes every one from there and repeats the first line for line.
    assert_eq!(train["summary"]["autotune"], "cached", "{}", train["summary"]);
    let kernels: Vec<&str> = train["kernels"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(kernels.len() >= 6 && kernels.iter().all(|k| k.ends_with(" measured") || k.ends_with(" cached")), "{kernels:#?}");
    assert!(kernels.iter().any(|k| k.starts_with("conv2d.forward 50×") && k.ends_with(" measured")), "{kernels:#?}");
    let stored = train["stored"]["choices"].as_object().unwrap_or_else(|| panic!("nothing in the browser's storage: {}", train["tuning"]));
    for k in &kernels {
        assert!(stored.contains_key(k.split(':').next().unwrap()), "{k} is not in the browser's storage");
    }
    let again = &results["again"];
    assert!(again["tuning"]["loaded"].as_u64().unwrap() >= kernels.len() as u64, "{}", again["tuning"]);
    let again_kernels: Vec<&str> = again["kernels"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(again_kernels.len() == kernels.len() && again_kernels.iter().all(|k| k.ends_with(" cached")), "{again_kernels:#?}");
    assert_eq!(again["lines"].as_array().unwrap(), train["lines"].as_array().unwrap(), "the second run's lines");
    assert_eq!(results["again_errors"].as_array().unwrap().len(), 0, "{}", results["again_errors"]);
    eprintln!("the page's kernel choices:\n  {}", kernels.join("\n  "));

    // The drawn digit: the page's class is the one `predict` gives the same picture.
    let page_class = results["prediction"]["top"][0]["class"].as_u64().unwrap();
    let pad = dir.join("pad.png");
    let predicted = run(&["--backend", "cpu", "predict", pad.to_str().unwrap(), "--checkpoint", ckpt.to_str().unwrap(), "--json"]);
    let record: Value = serde_json::from_str(predicted.lines().next().unwrap()).unwrap();
    assert_eq!(record["class"].as_u64(), Some(page_class), "page {}, predict {record}", results["prediction"]["top"]);
    eprintln!(
        "page: first logged step after {} ms (kernel choices timed), {} ms (from the browser's storage); host {:.3} ms per step (record + submit), steps {}",
        results["first_line_ms"],
        results["again_first_line_ms"], train["host_ms_per_step"].as_f64().unwrap_or(f64::NAN), results["step"]
    );
}
