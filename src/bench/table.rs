//! `wgsl-cnn bench --table FILE…`: the README's results table, one row per benchmark run,
//! rendered from `bench --json` files (results/*.json).
//!
//! The records carry `schema`: 2 since kernel choices were recorded (`autotune` on every
//! record, `kernel_choice` records); records without it are schema 1 (the first `--json`
//! format, identical but for those), read with the kernels column "not recorded". Any other
//! schema is refused with an error naming the file, never guessed at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::text::thousands;

/// The schema `bench --json` writes.
pub const SCHEMA: u64 = 2;

/// One benchmark run: the records of one adapter, commit and start time.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub host_cpu: String,
    pub host_threads: u64,
    pub model: String,
    pub batch: u64,
    pub unix_time: u64,
    pub git_commit: String,
    /// Back-to-back train step (ms) and how many steps that mean is over.
    pub step_ms: Option<(f64, u64)>,
    pub epoch_s: Option<f64>,
    pub eval_images_per_s: Option<f64>,
    /// Waited GPU step and CPU reference step, medians (ms).
    pub waited_ms: Option<f64>,
    pub cpu_ms: Option<f64>,
    /// None: not recorded (schema 1); Some("off"): fixed rules; else the tuner's mode.
    pub autotune: Option<String>,
    /// (op family, chosen kernel) per tuned shape, in first-use order.
    pub choices: Vec<(String, String)>,
}

/// The records of a `bench --json` file (an array; several runs' arrays concatenated with
/// `jq -s add` are one array too), each upgraded to the current schema.
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let Value::Array(records) = doc else {
        bail!("{} is not a `wgsl-cnn bench --json` file (expected an array of records)", path.display());
    };
    ensure!(!records.is_empty(), "{} holds no records", path.display());
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| upgrade(r).with_context(|| format!("{}, record {i}", path.display())))
        .collect()
}

/// A record in the current schema, or why it cannot be read.
pub fn upgrade(mut r: Value) -> Result<Value> {
    ensure!(r.is_object(), "not a JSON object");
    let schema = match r.get("schema") {
        None => 1,
        Some(v) => v.as_u64().with_context(|| format!("`schema` is {v}, not a version number"))?,
    };
    match schema {
        1 => {
            ensure!(r.get("kind").is_some() && r.get("median_ms").is_some(), "no `schema`, and not a schema 1 record either (no `kind`, `median_ms`)");
            r["schema"] = SCHEMA.into();
            r["autotune"] = Value::Null;
            r["measured"] = Value::Null;
        }
        SCHEMA => {}
        v => bail!(
            "schema {v}: this wgsl-cnn reads bench records of schema 1 to {SCHEMA}; render the table with a wgsl-cnn at least as new as the one that wrote it"
        ),
    }
    Ok(r)
}

fn text(r: &Value, key: &str) -> Result<String> {
    r.get(key).and_then(Value::as_str).map(str::to_string).with_context(|| format!("`{key}` is missing or not a string"))
}

fn uint(r: &Value, key: &str) -> Result<u64> {
    r.get(key).and_then(Value::as_u64).with_context(|| format!("`{key}` is missing or not a whole number"))
}

/// A number, or None for null; an error for anything else.
fn num(r: &Value, key: &str) -> Result<Option<f64>> {
    match r.get(key) {
        Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).with_context(|| format!("`{key}` is {v}, not a number")),
        None => bail!("`{key}` is missing"),
    }
}

/// The runs in some records (upgraded), ordered by start time, then adapter.
pub fn runs(records: &[Value]) -> Result<Vec<Run>> {
    let mut runs: BTreeMap<(u64, String, String, String, String, u64), Run> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let mut read = || -> Result<()> {
            let key = (uint(r, "unix_time")?, text(r, "adapter")?, text(r, "git_commit")?, text(r, "driver_info")?, text(r, "model")?, uint(r, "batch")?);
            let run = runs.entry(key).or_insert(Run {
                adapter: text(r, "adapter")?,
                backend: text(r, "backend")?,
                device_type: text(r, "device_type")?,
                driver: text(r, "driver")?,
                driver_info: text(r, "driver_info")?,
                host_cpu: text(r, "host_cpu")?,
                host_threads: uint(r, "host_threads")?,
                model: text(r, "model")?,
                batch: uint(r, "batch")?,
                unix_time: uint(r, "unix_time")?,
                git_commit: text(r, "git_commit")?,
                step_ms: None,
                epoch_s: None,
                eval_images_per_s: None,
                waited_ms: None,
                cpu_ms: None,
                autotune: r.get("autotune").and_then(Value::as_str).map(str::to_string),
                choices: Vec::new(),
            });
            let kernel = text(r, "kernel")?;
            match (text(r, "kind")?.as_str(), kernel.as_str()) {
                ("end_to_end", "train_step_pipelined") => {
                    run.step_ms = num(r, "median_ms")?.map(|m| (m, uint(r, "repeats").unwrap_or(0)));
                    run.epoch_s = num(r, "epoch_s")?;
                }
                ("end_to_end", "train_step") => run.waited_ms = num(r, "median_ms")?,
                ("end_to_end", "train_step_cpu_reference") => run.cpu_ms = num(r, "median_ms")?,
                ("end_to_end", "eval_batch") => run.eval_images_per_s = num(r, "images_per_s")?,
                ("kernel_choice", _) => run.choices.push((text(r, "op")?, kernel)),
                ("op" | "end_to_end", _) => {}
                (k, _) => bail!("unknown record kind `{k}`"),
            }
            Ok(())
        };
        read().with_context(|| format!("record {i}"))?;
    }
    Ok(runs.into_values().collect())
}

/// The runs of `paths` (files, or directories whose *.json files are read).
pub fn read_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("could not list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    ensure!(!files.is_empty(), "no bench JSON files given");
    let mut all = Vec::new();
    for f in &files {
        let records = read_records(f)?;
        runs(&records).with_context(|| format!("{}", f.display()))?;
        all.extend(records);
    }
    runs(&all)
}

/// "matmul: subgroup ×4, strided ×2; conv2d: rows ×3" (families and kernels in first-use order).
pub fn kernels_summary(run: &Run) -> String {
    match run.autotune.as_deref() {
        None => return "not recorded".into(),
        Some("off") => return "fixed rules (--autotune off)".into(),
        _ if run.choices.is_empty() => return "none tuned".into(),
        _ => {}
    }
    let mut families: Vec<(&str, Vec<(&str, usize)>)> = Vec::new();
    for (family, kernel) in &run.choices {
        let f = match families.iter_mut().find(|f| f.0 == family) {
            Some(f) => f,
            None => {
                families.push((family, Vec::new()));
                families.last_mut().unwrap()
            }
        };
        match f.1.iter_mut().find(|k| k.0 == kernel) {
            Some(k) => k.1 += 1,
            None => f.1.push((kernel, 1)),
        }
    }
    let part = |(f, ks): &(&str, Vec<(&str, usize)>)| {
        let ks: Vec<String> = ks.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        format!("{f}: {}", ks.join(", "))
    };
    families.iter().map(part).collect::<Vec<_>>().join("; ")
}

/// UTC date of a Unix time, YYYY-MM-DD (Howard Hinnant's civil_from_days).
pub fn date(unix_time: u64) -> String {
    let z = (unix_time / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Markdown table cell text: no pipes or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The results table in Markdown, one row per run.
pub fn render(runs: &[Run]) -> String {
    let mut s = String::from(
        "| adapter | backend, type | driver | host | model, batch | train step, back to back | images/s | epoch (projected) | eval images/s | GPU/CPU-reference step | kernels the tuner chose | date, commit |\n",
    );
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    let dash = || "—".to_string();
    for r in runs {
        let step = r.step_ms.map_or_else(dash, |(ms, n)| format!("{ms:.1} ms (mean of {n})"));
        let images = r.step_ms.map_or_else(dash, |(ms, _)| thousands((r.batch as f64 / (ms * 1e-3)).round() as u64));
        let ratio = match (r.cpu_ms, r.waited_ms) {
            (Some(c), Some(g)) if g > 0.0 => format!("{:.1}×", c / g),
            _ => dash(),
        };
        let driver = if r.driver_info.is_empty() { r.driver.clone() } else { format!("{} ({})", r.driver, r.driver_info) };
        let row = [
            cell(&r.adapter),
            cell(&format!("{}, {}", r.backend, r.device_type)),
            cell(&driver),
            cell(&format!("{}, {} threads", r.host_cpu, r.host_threads)),
            cell(&format!("{}, {}", r.model, r.batch)),
            step,
            images,
            r.epoch_s.map_or_else(dash, |e| format!("{e:.1} s")),
            r.eval_images_per_s.map_or_else(dash, |e| thousands(e.round() as u64)),
            ratio,
            cell(&kernels_summary(r)),
            cell(&format!("{}, {}", date(r.unix_time), r.git_commit)),
        ];
        s += &format!("| {} |\n", row.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for (t, d) in [(0, "1970-01-01"), (951_782_400, "2000-02-29"), (1_798_675_200, "2026-12-31"), (1_709_251_199, "2024-02-29")] {
            assert_eq!(date(t), d, "{t}");
        }
    }

    #[test]
    fn unknown_schemas_are_refused() {
        let e = upgrade(serde_json::json!({"schema": 3, "kind": "op"})).unwrap_err();
        assert!(format!("{e:#}").contains("schema 3"), "{e:#}");
        assert!(upgrade(serde_json::json!({"schema": "2"})).is_err());
        assert!(upgrade(serde_json::json!({"adapter": "x"})).is_err());
        let v1 = upgrade(serde_json::json!({"kind": "op", "median_ms": 1.0})).unwrap();
        assert_eq!((v1["schema"].as_u64(), v1["autotune"].is_null()), (Some(SCHEMA), true));
    }
}
