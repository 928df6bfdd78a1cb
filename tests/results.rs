//! results/: every `bench --json` record there reads, and the README's results table is
//! exactly what `wgsl-cnn bench --table results/` renders from them. Records of another
//! schema are refused with the file named, never mis-read.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wgsl_cnn::bench::table::{read_runs, render, SCHEMA};

mod common;

/// The line above the README's table.
const MARKER: &str = "<!-- results table: `wgsl-cnn bench --table results/` writes it; tests/results.rs checks it -->";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn readme_table_is_rendered_from_results() {
    let runs = read_runs(&[repo().join("results")]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(runs.len() >= 2, "results/ should hold at least the lavapipe and SwiftShader runs");
    let want = render(&runs);
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let after = readme.split_once(MARKER).unwrap_or_else(|| panic!("README has no line {MARKER}")).1;
    let got: String = after.trim_start_matches('\n').lines().take_while(|l| l.starts_with('|')).map(|l| format!("{l}\n")).collect();
    assert_eq!(got, want, "README's results table is stale: replace it with `cargo run --release -- bench --table results/`");
}

#[test]
fn every_result_file_is_one_run_of_the_current_schema() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("results")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "json")) {
        let runs = read_runs(std::slice::from_ref(f)).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(runs.len(), 1, "{} holds {} runs; keep one run per file", f.display(), runs.len());
        let text = std::fs::read_to_string(f).unwrap();
        let records: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert!(records.iter().all(|r| r["schema"] == SCHEMA), "{}: not all records are schema {SCHEMA}", f.display());
        assert!(runs[0].step_ms.is_some() && runs[0].eval_images_per_s.is_some(), "{}: no step or eval record", f.display());
    }
}

/// A minimal run's records in schema 1 (before `schema`, `autotune` and kernel choices).
fn v1_records() -> Vec<Value> {
    let base = json!({
        "kind": "end_to_end", "model": "lenet5", "batch": 100, "adapter": "Test Adapter | 1",
        "backend": "Vulkan", "device_type": "DiscreteGpu", "driver": "test", "driver_info": "1.0",
        "git_commit": "abcdef123456", "host_cpu": "cpu", "host_threads": 8, "unix_time": 1_798_675_200u64,
        "repeats": 20, "median_ms": 10.0, "images_per_s": 10_000.0, "epoch_s": 6.0
    });
    let with = |kernel: &str, median: f64, device: &str| {
        let mut r = base.clone();
        r["kernel"] = json!(kernel);
        r["median_ms"] = json!(median);
        r["device"] = json!(device);
        r
    };
    vec![with("train_step_pipelined", 10.0, "gpu"), with("train_step", 12.0, "gpu"), with("eval_batch", 5.0, "gpu"), with("train_step_cpu_reference", 120.0, "cpu")]
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p
}

#[test]
fn schema_1_is_upgraded_and_unknown_schemas_are_refused() {
    let dir = common::temp_dir("results", "schemas");
    let v1 = write(&dir, "v1.json", &Value::Array(v1_records()));
    let runs = read_runs(std::slice::from_ref(&v1)).unwrap();
    let table = render(&runs);
    let row = table.lines().nth(2).unwrap();
    assert_eq!(
        row,
        "| Test Adapter \\| 1 | Vulkan, DiscreteGpu | test (1.0) | cpu, 8 threads | lenet5, 100 | 10.0 ms (mean of 20) | 10,000 | 6.0 s | 10,000 | 10.0× | not recorded | 2026-12-31, abcdef123456 |"
    );

    let mut v3 = v1_records();
    v3[2]["schema"] = json!(SCHEMA + 1);
    let f = write(&dir, "v3.json", &Value::Array(v3));
    let e = format!("{:#}", read_runs(&[f]).unwrap_err());
    assert!(e.contains("v3.json, record 2") && e.contains(&format!("schema {}", SCHEMA + 1)), "{e}");

    let mut bad = v1_records();
    bad[0]["schema"] = json!("2");
    let e = format!("{:#}", read_runs(&[write(&dir, "bad.json", &Value::Array(bad))]).unwrap_err());
    assert!(e.contains("bad.json, record 0") && e.contains("not a version number"), "{e}");

    let e = format!("{:#}", read_runs(&[write(&dir, "object.json", &json!({"records": []}))]).unwrap_err());
    assert!(e.contains("object.json") && e.contains("expected an array"), "{e}");

    let mut missing = v1_records();
    missing[1].as_object_mut().unwrap().remove("adapter");
    let e = format!("{:#}", read_runs(&[write(&dir, "missing.json", &Value::Array(missing))]).unwrap_err());
    assert!(e.contains("record 1") && e.contains("`adapter`"), "{e}");
}

#[test]
fn choices_are_summarised_by_family() {
    let dir = common::temp_dir("results", "choices");
    let mut records = v1_records();
    for r in &mut records {
        r["schema"] = json!(SCHEMA);
        r["autotune"] = json!("cached");
    }
    for (op, kernel) in [("matmul", "subgroup"), ("conv2d", "rows"), ("matmul", "strided"), ("matmul", "subgroup"), ("conv2d", "scatter")] {
        let mut r = records[0].clone();
        r["kind"] = json!("kernel_choice");
        r["op"] = json!(op);
        r["kernel"] = json!(kernel);
        records.push(r);
    }
    let runs = read_runs(&[write(&dir, "v2.json", &Value::Array(records))]).unwrap();
    assert_eq!(wgsl_cnn::bench::table::kernels_summary(&runs[0]), "matmul: subgroup ×2, strided ×1; conv2d: rows ×1, scatter ×1");
}
