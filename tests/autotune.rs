//! The autotuner (src/gpu/autotune.rs): a tuned call computes exactly what the chosen kernel
//! computes, its measurements touch neither the caller's buffers nor its counters nor an open
//! profile, choices are cached on disk and reused, `Refresh` measures again, and a damaged
//! or stale cache file is measured over, never trusted or fatal.

use std::path::{Path, PathBuf};

use wgsl_cnn::gpu::autotune::{Mode, Tuner};
use wgsl_cnn::gpu::conv2d::{self, ConvKernel};
use wgsl_cnn::gpu::matmul::{self, MatmulKernel};
use wgsl_cnn::gpu::{AdapterChoice, GpuContext};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{Conv2dShape, MatmulShape};

fn ctx() -> GpuContext {
    GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

fn tuned_ctx(mode: Mode, dir: &Path) -> GpuContext {
    let c = ctx();
    c.set_tuner(Tuner::new(mode, Some(dir), &c.info));
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsl-cnn-autotune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A shape both conv2d weight-gradient kernels can run (rows: w and w_out multiples of 4).
const CONV: Conv2dShape = Conv2dShape { n: 3, c_in: 2, h: 9, w: 12, c_out: 3, k: 5, stride: 1, pad: 0 };

struct Inputs {
    x: Vec<f32>,
    dy: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

fn inputs(seed: u64) -> Inputs {
    let mut rng = Rng::new(seed);
    Inputs {
        x: rng.uniform_vec(CONV.x_len(), -1.0, 1.0),
        dy: rng.uniform_vec(CONV.y_len(), -1.0, 1.0),
        dw: rng.uniform_vec(CONV.w_len(), -1.0, 1.0),
        db: rng.uniform_vec(CONV.c_out, -1.0, 1.0),
    }
}

/// dw += and db += of one grad_weight call with `kernel`, and the dispatches it recorded.
fn grad_weight(c: &GpuContext, kernel: ConvKernel, i: &Inputs) -> (Vec<f32>, Vec<f32>, u64) {
    let (x, dy, dw, db) = (c.buffer(i.x.len()), c.buffer(i.dy.len()), c.buffer(i.dw.len()), c.buffer(i.db.len()));
    c.write(&x, &i.x);
    c.write(&dy, &i.dy);
    c.write(&dw, &i.dw);
    c.write(&db, &i.db);
    let before = c.dispatches.get();
    conv2d::grad_weight_with(c, kernel, &CONV, &x, &dy, &dw, Some(&db));
    let dispatches = c.dispatches.get() - before;
    (c.read(&dw), c.read(&db), dispatches)
}

fn conv_kernel(name: &str) -> ConvKernel {
    match name {
        "rows" => ConvKernel::Rows,
        "direct" => ConvKernel::Direct,
        "subgroup" => ConvKernel::Subgroup,
        other => panic!("unexpected conv2d kernel {other:?}"),
    }
}

#[test]
fn a_tuned_call_matches_its_kernel_and_hides_the_measurement() {
    let dir = temp_dir("match");
    let i = inputs(0xa070);
    let tuned = tuned_ctx(Mode::Cached, &dir);
    let bytes_before = tuned.allocated_bytes.get();
    let (dw, db, dispatches) = grad_weight(&tuned, ConvKernel::Auto, &i);
    let used = tuned.tuner().unwrap().used();
    assert_eq!(used.len(), 1, "{used:?}");
    let choice = &used[0];
    assert!(choice.measured && choice.key.starts_with("conv2d.grad_weight "), "{choice:?}");
    let names: Vec<&str> = choice.times_us.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["rows", "direct"], "both kernels fit, the static rule's first (lavapipe: no tiled or subgroup): {choice:?}");
    assert!(choice.times_us.iter().all(|t| t.1 > 0.0 && t.1.is_finite()), "{choice:?}");
    let fastest = choice.times_us.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(choice.kernel, fastest.0, "{choice:?}");

    // The same call on an untuned context with the chosen kernel: same bits, same counts.
    let plain = ctx();
    let plain_before = plain.allocated_bytes.get();
    for name in &names {
        let _ = grad_weight(&plain, conv_kernel(name), &i);
    }
    let (want_dw, want_db, want_dispatches) = grad_weight(&plain, conv_kernel(&choice.kernel), &i);
    assert_eq!(dw, want_dw, "dw");
    assert_eq!(db, want_db, "db");
    assert_eq!(dispatches, want_dispatches, "the measurement's dispatches were counted");
    // Memory: the scratch buffer that the candidates grew is kept (and planned for by
    // `grad_weight_scratch`), the temporaries are not counted. `plain` ran the candidates in
    // the tuner's order first, each on inputs of its own.
    let inputs_bytes = 4 * (CONV.x_len() + CONV.y_len() + CONV.w_len() + CONV.c_out) as u64;
    let plain_bytes = plain.allocated_bytes.get() - plain_before - names.len() as u64 * inputs_bytes;
    assert_eq!(tuned.allocated_bytes.get() - bytes_before, plain_bytes);

    // A second call of the shape is not measured again.
    let _ = grad_weight(&tuned, ConvKernel::Auto, &i);
    assert_eq!(tuned.tuner().unwrap().used(), used);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn choices_are_cached_on_disk_and_refresh_measures_again() {
    let dir = temp_dir("cache");
    let i = inputs(0xcac4e);
    let first = {
        let c = tuned_ctx(Mode::Cached, &dir);
        let _ = grad_weight(&c, ConvKernel::Auto, &i);
        let file = c.tuner().unwrap().file().unwrap().to_path_buf();
        assert!(file.starts_with(&dir) && file.exists(), "{}", file.display());
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let used = c.tuner().unwrap().used();
        assert_eq!(doc["choices"][&used[0].key]["kernel"], serde_json::json!(used[0].kernel), "{doc}");
        assert_eq!(doc["identity"]["adapter"], serde_json::json!(c.info.name), "{doc}");
        used[0].clone()
    };
    let cached = tuned_ctx(Mode::Cached, &dir);
    let (dw, _, _) = grad_weight(&cached, ConvKernel::Auto, &i);
    let again = cached.tuner().unwrap().used();
    assert_eq!(again.len(), 1);
    assert!(!again[0].measured, "a cached choice was measured again: {:?}", again[0]);
    assert_eq!((&again[0].key, &again[0].kernel), (&first.key, &first.kernel));
    // The file's times, rounded to 0.1 µs.
    for ((n, t), (n0, t0)) in again[0].times_us.iter().zip(&first.times_us) {
        assert!(n == n0 && (t - t0).abs() <= 0.05 + 1e-9, "{:?} vs {:?}", again[0], first);
    }
    let (want_dw, _, _) = grad_weight(&ctx(), conv_kernel(&first.kernel), &i);
    assert_eq!(dw, want_dw);

    let refresh = tuned_ctx(Mode::Refresh, &dir);
    let _ = grad_weight(&refresh, ConvKernel::Auto, &i);
    let refreshed = refresh.tuner().unwrap().used();
    assert!(refreshed.len() == 1 && refreshed[0].measured, "{refreshed:?}");

    // Off: the static rule, nothing measured or recorded.
    let off = tuned_ctx(Mode::Off, &dir);
    let _ = grad_weight(&off, ConvKernel::Auto, &i);
    assert!(off.tuner().unwrap().used().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_or_stale_cache_is_measured_over() {
    let dir = temp_dir("damaged");
    let i = inputs(0xbad);
    let file = {
        let c = tuned_ctx(Mode::Cached, &dir);
        let _ = grad_weight(&c, ConvKernel::Auto, &i);
        c.tuner().unwrap().file().unwrap().to_path_buf()
    };
    let good = std::fs::read_to_string(&file).unwrap();
    let stale = good.replace("\"kernel\": \"rows\"", "\"kernel\": \"gone\"").replace("\"kernel\": \"direct\"", "\"kernel\": \"gone\"");
    assert_ne!(stale, good);
    for (what, text) in [("not JSON", "{\"choices\": [tru"), ("wrong types", "{\"format\": 1, \"choices\": 7}"), ("unknown kernel", stale.as_str())] {
        std::fs::write(&file, text).unwrap();
        let c = tuned_ctx(Mode::Cached, &dir);
        let (dw, _, _) = grad_weight(&c, ConvKernel::Auto, &i);
        let used = c.tuner().unwrap().used();
        assert!(used.len() == 1 && used[0].measured, "{what}: {used:?}");
        let (want_dw, _, _) = grad_weight(&ctx(), conv_kernel(&used[0].kernel), &i);
        assert_eq!(dw, want_dw, "{what}");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("rewritten as JSON");
        assert!(doc["choices"][&used[0].key]["kernel"].is_string(), "{what}: {doc}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn measuring_inside_a_profile_leaves_the_profile_alone() {
    let c = ctx();
    if !c.can_profile() {
        panic!("{} has no timestamps inside passes; this test needs them (lavapipe has them)", c.info.name);
    }
    let dir = temp_dir("profile");
    c.set_tuner(Tuner::new(Mode::Cached, Some(&dir), &c.info));
    // fc2's product: the strided, vec4 and tiled kernels can all run it.
    let s = MatmulShape { m: 7, n: 12, k: 20, trans_a: false, trans_b: true, accumulate: false };
    let mut rng = Rng::new(7);
    let (a, b) = (rng.uniform_vec(s.m * s.k, -1.0, 1.0), rng.uniform_vec(s.k * s.n, -1.0, 1.0));
    let (ab, bb, cb) = (c.buffer(a.len()), c.buffer(b.len()), c.buffer(s.m * s.n));
    c.write(&ab, &a);
    c.write(&bb, &b);
    c.write(&cb, &vec![f32::NAN; s.m * s.n]);
    c.start_profiling(16).unwrap();
    matmul::matmul(&c, &s, &ab, &bb, None, &cb);
    let times = c.stop_profiling().unwrap();
    assert_eq!(times.len(), 1, "the profile holds the one call's dispatch only: {times:?}");
    let got: Vec<f32> = c.read(&cb);
    let used = c.tuner().unwrap().used();
    assert_eq!(used.len(), 1, "{used:?}");
    let names: Vec<&str> = used[0].times_us.iter().map(|t| t.0.as_str()).collect();
    let want = 3 + usize::from(matmul::subgroup_runs(&c));
    assert_eq!(names.len(), want, "tiled, vec4 and strided (and subgroup, with subgroups) all run 7×12×20: {used:?}");
    let k = match used[0].kernel.as_str() {
        "tiled" => MatmulKernel::Tiled,
        "vec4" => MatmulKernel::Vec4,
        "subgroup" => MatmulKernel::Subgroup,
        _ => MatmulKernel::Strided,
    };
    let plain = ctx();
    let (ab2, bb2, cb2) = (plain.buffer(a.len()), plain.buffer(b.len()), plain.buffer(s.m * s.n));
    plain.write(&ab2, &a);
    plain.write(&bb2, &b);
    matmul::matmul_with(&plain, k, &s, &ab2, &bb2, None, &cb2);
    assert_eq!(got, plain.read::<f32>(&cb2));
    let _ = std::fs::remove_dir_all(&dir);
}
