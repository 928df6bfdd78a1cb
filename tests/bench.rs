//! The benchmark: FLOP/byte counts against hand arithmetic, the op list of one training
//! step, and `wgsl-cnn bench --quick --json` end to end on the default adapter (lavapipe here).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use wgsl_cnn::backend::Backend;
use wgsl_cnn::bench::ops::Call as Op;
use wgsl_cnn::bench::trace::{self, Trace, Traced};
use wgsl_cnn::bench::{Stats, GIT_COMMIT, WGPU_VERSION};
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::{zoo, Arch, Model};
use wgsl_cnn::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

const N: usize = 100;

fn mm(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> MatmulShape {
    MatmulShape { m, n, k, trans_a, trans_b, accumulate: trans_a }
}

fn conv1_shape(n: usize) -> Conv2dShape {
    Conv2dShape { n, c_in: 1, h: 28, w: 28, c_out: 20, k: 5, stride: 1, pad: 0 }
}
fn conv2_shape(n: usize) -> Conv2dShape {
    Conv2dShape { n, c_in: 20, h: 12, w: 12, c_out: 50, k: 5, stride: 1, pad: 0 }
}
fn pool1_shape(n: usize) -> PoolShape {
    PoolShape { n, c: 20, h: 24, w: 24, k: 2, stride: 2 }
}
fn pool2_shape(n: usize) -> PoolShape {
    PoolShape { n, c: 50, h: 8, w: 8, k: 2, stride: 2 }
}
fn fc1_shape(n: usize) -> MatmulShape {
    mm(n, 500, 800, false, true)
}
fn fc2_shape(n: usize) -> MatmulShape {
    mm(n, 10, 500, false, true)
}

/// (op, FLOPs, bytes) at the seed's shapes, batch 100, worked out by hand. Tensor sizes:
/// x 100·1·28·28 = 78,400; conv1 y 100·20·24·24 = 1,152,000; conv1 w 20·1·5·5 = 500;
/// pool1 y 100·20·12·12 = 288,000; conv2 w 50·20·5·5 = 25,000; conv2 y 100·50·8·8 = 320,000;
/// pool2 y 100·50·4·4 = 80,000; fc1 W 500·800 = 400,000; fc2 W 10·500 = 5,000. Bytes are 4
/// per f32/u32 element, 1 per dataset pixel.
fn hand_counted() -> Vec<(Op, u64, u64)> {
    let (bn1, bn2) = (BatchNormShape { n: N, c: 20, hw: 576 }, BatchNormShape { n: N, c: 50, hw: 64 });
    vec![
        // flops: one scale per pixel 100·784 = 78,400;
        // bytes: perm 400 + pixels 78,400 + labels 400 + x 313,600 + y 400 = 393,200
        (Op::Gather { n: N, pixels: 784 }, 78_400, 393_200),
        // 2·100·20·24·24·1·5·5 = 57,600,000; 4·(78,400 + 500 + 20 + 1,152,000) = 4,923,680
        (Op::Conv2dForward(conv1_shape(N)), 57_600_000, 4_923_680),
        // 2·100·50·8·8·20·5·5 = 320,000,000; 4·(288,000 + 25,000 + 50 + 320,000) = 2,532,200
        (Op::Conv2dForward(conv2_shape(N)), 320_000_000, 2_532_200),
        // same MACs; dy 320,000 + w 25,000 + dx 288,000 = 633,000 → 2,532,000 bytes
        (Op::Conv2dGradInput(conv2_shape(N)), 320_000_000, 2_532_000),
        // x 288,000 + dy 320,000 + dw 25,000 = 633,000 → 2,532,000
        (Op::Conv2dGradWeight { s: conv2_shape(N), bias: false }, 320_000_000, 2_532_000),
        // conv1: x 78,400 + dy 1,152,000 + dw 500 = 1,230,900 → 4,923,600
        (Op::Conv2dGradWeight { s: conv1_shape(N), bias: false }, 57_600_000, 4_923_600),
        // with the bias gradient: one add more per dy element, 320,000 + 320,000,000;
        // db 50 more out: 4·(633,000 + 50) = 2,532,200
        (Op::Conv2dGradWeight { s: conv2_shape(N), bias: true }, 320_320_000, 2_532_200),
        // 57,600,000 + 1,152,000; 4·(1,230,900 + 20) = 4,923,680
        (Op::Conv2dGradWeight { s: conv1_shape(N), bias: true }, 58_752_000, 4_923_680),
        // 3 compares per 2×2 window: 3·288,000 = 864,000; 4·(1,152,000 + 288,000 + 288,000) = 6,912,000
        (Op::MaxpoolForward { s: pool1_shape(N), relu: false, normalize: false }, 864_000, 6_912_000),
        // and a ReLU after it: 4 compares per window, 1,152,000; the same bytes
        (Op::MaxpoolForward { s: pool1_shape(N), relu: true, normalize: false }, 1_152_000, 6_912_000),
        // no arithmetic; 4·(dy 288,000 + argmax 288,000 + dx 1,152,000) = 6,912,000
        (Op::MaxpoolBackward(pool1_shape(N)), 0, 6_912_000),
        // 3·80,000 = 240,000; 4·(320,000 + 80,000 + 80,000) = 1,920,000
        (Op::MaxpoolForward { s: pool2_shape(N), relu: false, normalize: false }, 240_000, 1_920_000),
        // BatchNorm2d's normalisation before and a ReLU after (the seed's blocks): pool1
        // 1,152,000 + 3·1,152,000 = 4,608,000; mean, var, gamma, beta 4·20 more in:
        // 6,912,000 + 320 = 6,912,320
        (Op::MaxpoolForward { s: pool1_shape(N), relu: true, normalize: true }, 4_608_000, 6_912_320),
        // pool2: 4·80,000 + 3·320,000 = 1,280,000; 1,920,000 + 4·4·50 = 1,920,800
        (Op::MaxpoolForward { s: pool2_shape(N), relu: true, normalize: true }, 1_280_000, 1_920_800),
        // 3·1,152,000 + running statistics 7·20 = 3,456,140;
        // 4·(x 1,152,000 + mean, var 40 + running mean, var in and out 80) = 4,608,480
        (Op::BatchnormStats(bn1), 3_456_140, 4_608_480),
        // 3·320,000 + 7·50 = 960,350; 4·(320,000 + 100 + 200) = 1,281,200
        (Op::BatchnormStats(bn2), 960_350, 1_281_200),
        // 3·1,152,000; 4·(x + y 2,304,000 + mean, var, gamma, beta 80) = 9,216,320
        (Op::BatchnormNormalize(bn1), 3_456_000, 9_216_320),
        // 11·1,152,000 = 12,672,000; 4·(x, dy, dx 3,456,000 + 5·20) = 13,824,400
        (Op::BatchnormBackward { s: bn1, pooled: None }, 12_672_000, 13_824_400),
        // with pool1's backward: 8·1,152,000 + 3·288,000 = 10,080,000;
        // 4·(x, dx 2,304,000 + dy, argmax 576,000 + 100) = 11,520,400
        (Op::BatchnormBackward { s: bn1, pooled: Some(pool1_shape(N)) }, 10_080_000, 11_520_400),
        // 11·320,000 = 3,520,000; 4·(960,000 + 250) = 3,841,000
        (Op::BatchnormBackward { s: bn2, pooled: None }, 3_520_000, 3_841_000),
        // with pool2's: 8·320,000 + 3·80,000 = 2,800,000; 4·(640,000 + 160,000 + 250) = 3,201,000
        (Op::BatchnormBackward { s: bn2, pooled: Some(pool2_shape(N)) }, 2_800_000, 3_201_000),
        // 288,000; 4·(2·288,000) = 2,304,000
        (Op::ReluForward { len: 288_000 }, 288_000, 2_304_000),
        // 288,000; 4·(3·288,000) = 3,456,000
        (Op::ReluBackward { len: 288_000 }, 288_000, 3_456_000),
        // fc1 forward: 2·100·500·800 = 80,000,000; 4·(80,000 + 400,000 + 50,000 + bias 500) = 2,122,000
        (Op::Matmul { s: fc1_shape(N), bias: true, relu: false, mask: false, bias_grad: false }, 80_000_000, 2_122_000),
        // fc2 forward: 2·100·10·500 = 1,000,000; 4·(50,000 + 5,000 + 1,000 + 10) = 224,040
        (Op::Matmul { s: fc2_shape(N), bias: true, relu: false, mask: false, bias_grad: false }, 1_000_000, 224_040),
        // fc1 grad_weight [500×100]·[100×800]: 80,000,000; 4·(50,000 + 80,000 + 400,000) = 2,120,000
        (Op::Matmul { s: mm(500, 800, N, true, false), bias: false, relu: false, mask: false, bias_grad: false }, 80_000_000, 2_120_000),
        // fc1 grad_input [100×500]·[500×800]: 80,000,000; 4·(50,000 + 400,000 + 80,000) = 2,120,000
        (Op::Matmul { s: mm(N, 800, 500, false, false), bias: false, relu: false, mask: false, bias_grad: false }, 80_000_000, 2_120_000),
        // fc2 grad_weight [10×100]·[100×500]: 1,000,000; 4·(1,000 + 50,000 + 5,000) = 224,000
        (Op::Matmul { s: mm(10, 500, N, true, false), bias: false, relu: false, mask: false, bias_grad: false }, 1_000_000, 224_000),
        // fc1 bias grad: 100·500 = 50,000 adds; 4·(50,000 + 500) = 202,000
        (Op::SumRows { rows: N, cols: 500 }, 50_000, 202_000),
        // 7·100·10 = 7,000; 4·(logits 1,000 + labels 100 + loss 1 + dlogits 1,000
        // + step state 2 in and 2 out) = 8,420
        (Op::SoftmaxCrossEntropy { n: N, classes: 10 }, 7_000, 8_420),
        // 1,000 compares; 4·(1,000 + 100 + counter in and out 2) = 4,408
        (Op::CountCorrect { n: N, classes: 10 }, 1_000, 4_408),
        // 1,000 compares; 4·(1,000 + 100 + one counter in and out per row 200) = 5,200
        (Op::Confusion { n: N, classes: 10 }, 1_000, 5_200),
        // fc1.weight: 14·400,000 = 5,600,000; 4·(7·400,000) = 11,200,000
        (Op::Adam { len: 400_000 }, 5_600_000, 11_200_000),
        // SGD with a momentum: 5·400,000 = 2,000,000; 4·(5·400,000) = 8,000,000 (param, grad,
        // buffer in; param, buffer out); without: 2·400,000 and 4·(3·400,000)
        (Op::Sgd { len: 400_000, momentum: true }, 2_000_000, 8_000_000),
        (Op::Sgd { len: 400_000, momentum: false }, 800_000, 4_800_000),
    ]
}

#[test]
fn flop_and_byte_counts_match_hand_arithmetic() {
    for (op, flops, bytes) in hand_counted() {
        assert_eq!(op.flops(), flops, "FLOPs of {} {}", op.kind(), op.shape());
        assert_eq!(op.bytes(), bytes, "bytes of {} {}", op.kind(), op.shape());
    }
}

#[test]
fn stats_are_median_min_max() {
    let s = Stats::of(&[5.0, 1.0, 3.0]);
    assert_eq!((s.median, s.min, s.max, s.repeats), (3.0, 1.0, 5.0, 3));
    let s = Stats::of(&[4.0, 1.0, 2.0, 3.0]);
    assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
}

#[test]
fn build_constants() {
    // Cargo.toml asks for wgpu = "30": the locked version must be a 30.x.y.
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let req = toml
        .lines()
        .find_map(|l| l.strip_prefix("wgpu = \""))
        .and_then(|r| r.strip_suffix('"'))
        .expect("wgpu in Cargo.toml");
    assert!(WGPU_VERSION.starts_with(&format!("{req}.")), "WGPU_VERSION {WGPU_VERSION} vs requirement {req}");
    let head = Command::new("git").current_dir(env!("CARGO_MANIFEST_DIR")).args(["rev-parse", "HEAD"]).output();
    match head {
        Ok(o) if o.status.success() => {
            let head = String::from_utf8(o.stdout).unwrap();
            let short = GIT_COMMIT.trim_end_matches("-dirty");
            assert!(short.len() == 12 && head.starts_with(short), "GIT_COMMIT {GIT_COMMIT} vs HEAD {head}");
        }
        _ => assert_eq!(GIT_COMMIT, "unknown"),
    }
}

/// The op calls one training step (gather + train_step) makes, traced on the GPU backend.
fn traced_train_step(arch: &Arch, n: usize) -> Vec<Traced> {
    traced_step_with(arch, n, &AdamConfig::default().into())
}

/// `traced_train_step` with optimizer `opt`.
fn traced_step_with(arch: &Arch, n: usize, opt: &wgsl_cnn::shapes::OptimizerConfig) -> Vec<Traced> {
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let rec = trace::attach(&mut be);
    let images = vec![7u8; n * 784];
    let labels: Vec<u8> = (0..n as u8).map(|i| i % 10).collect();
    let ds = be.dataset(&images, &labels, 784);
    let perm = be.index(n);
    let mut model = Model::new(&mut be, arch, n, 0).unwrap();
    rec.borrow_mut().mode = Trace::Record;
    model.gather_batch(&mut be, &ds, &perm, 0, n);
    model.train_step(&mut be, n, opt);
    be.submit();
    let calls = std::mem::take(&mut rec.borrow_mut().calls);
    calls
}

/// Every optimizer is one op call over the whole store, with as many dispatches as Adam's
/// (so a LeNet-5 step is the same length whichever the optimizer).
#[test]
fn every_optimizer_is_one_call_of_adams_dispatches() {
    use wgsl_cnn::shapes::{OptimizerConfig, SgdConfig};
    let adam = traced_train_step(&zoo::lenet5(), N);
    let count = |calls: &[Traced]| calls.iter().map(|c| c.dispatches).sum::<u64>();
    let sgd = OptimizerConfig::Sgd(SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4, ..SgdConfig::default() });
    for opt in [sgd, OptimizerConfig::Sgd(SgdConfig::default()), AdamConfig::adamw(1e-3).into()] {
        let calls = traced_step_with(&zoo::lenet5(), N, &opt);
        let last = calls.last().unwrap();
        let kind = if matches!(opt, OptimizerConfig::Sgd(_)) { "sgd sgd" } else { "adam adam" };
        assert_eq!(last.name(), kind, "{}", opt.name());
        assert_eq!(calls.len(), adam.len(), "{}", opt.name());
        assert_eq!((count(&calls), last.dispatches), (count(&adam), adam.last().unwrap().dispatches), "{}", opt.name());
    }
}

#[test]
fn one_training_step_makes_these_op_calls() {
    let calls = traced_train_step(&zoo::lenet5(), N);
    let names: Vec<String> = calls.iter().map(Traced::name).collect();
    let want = [
        "data.gather gather",
        "conv1.forward conv2d_forward",
        "batchnorm1.forward batchnorm_stats",
        "batchnorm1+pool1+relu1.forward maxpool_forward",
        "conv2.forward conv2d_forward",
        "batchnorm2.forward batchnorm_stats",
        "batchnorm2+pool2+relu2.forward maxpool_forward",
        "fc1+relu3.forward matmul",
        "fc2.forward matmul",
        "loss softmax_cross_entropy",
        "fc2.backward matmul",
        "fc2.backward matmul",
        "fc1+relu3.backward matmul",
        "fc1+relu3.backward matmul",
        "batchnorm2.backward batchnorm_backward",
        "conv2.backward conv2d_grad_weight",
        "conv2.backward conv2d_grad_input",
        "batchnorm1.backward batchnorm_backward",
        "conv1.backward conv2d_grad_weight",
        "adam adam",
    ];
    assert_eq!(names, want);
    // One Adam call over the whole store; the step within the models issue's budget.
    let dispatches: u64 = calls.iter().map(|c| c.dispatches).sum();
    eprintln!("LeNet-5 training step: {dispatches} dispatches");
    assert!(dispatches <= 27, "{dispatches} dispatches per LeNet-5 step");
    // The README and docs/architecture.md quote this count.
    for doc in ["README.md", "docs/architecture.md"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap().replace('\n', " ");
        let said = text.split_once("LeNet-5 training step is **").and_then(|(_, t)| t.split_once(" dispatches**")).map(|(n, _)| n.trim().to_string());
        assert_eq!(said, Some(dispatches.to_string()), "{doc} should say \"A LeNet-5 training step is **{dispatches} dispatches**\"");
    }
    // Every call of the step is one the hand counts above or their twins cover by kind.
    let kinds: std::collections::BTreeSet<&str> = hand_counted().iter().map(|(op, _, _)| op.kind()).collect();
    for c in &calls {
        assert!(kinds.contains(c.call.kind()), "{} has no hand-checked count", c.call.kind());
    }
}

#[test]
fn a_tied_step_calls_the_block_ten_times() {
    let calls = traced_train_step(&zoo::tied(), 7);
    let count = |name: &str| calls.iter().filter(|c| c.name() == name).count();
    // Each use is one fused Linear+ReLU product; every ReLU's backward is done by the next
    // use's (or the head's) input-gradient product, so none runs on its own.
    assert_eq!(count("body.block.fc+relu.forward matmul"), 10);
    assert_eq!(calls.iter().filter(|c| c.name().ends_with("relu_backward")).count(), 0);
    // A weight gradient (with the bias gradient) per use and an input gradient per use but
    // the first (its input is the flattened image, which needs none).
    assert_eq!(count("body.block.fc+relu.backward matmul"), 19);
    assert_eq!(count("adam adam"), 1);
}

/// Runs the bench CLI with an empty autotune cache of its own.
fn run_bench(args: &[&str], json: &PathBuf) -> (String, Vec<Value>) {
    let cache = json.with_extension("autotune");
    let _ = std::fs::remove_dir_all(&cache);
    let out = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(json)
        .env("WGSL_CNN_CACHE_DIR", &cache)
        .env_remove("WGSL_CNN_AUTOTUNE")
        .env_remove("WGSL_CNN_MATMUL")
        .output()
        .expect("run wgsl-cnn bench");
    let _ = std::fs::remove_dir_all(&cache);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "bench {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(json).expect("bench wrote its JSON file");
    let records: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON in {}: {e}\n{text}", json.display()));
    let records = records.as_array().expect("a JSON array of records").clone();
    (stdout, records)
}

/// Checks the op records cover the traced step call for call, and their numbers add up.
fn check_op_records(records: &[Value], repeats: u64, timer: &str) {
    let traced = traced_train_step(&zoo::lenet5(), N);
    let names: Vec<String> = traced.iter().map(Traced::name).collect();
    let calls: Vec<Op> = traced.iter().map(|c| c.call.clone()).collect();
    let ops: Vec<&Value> = records.iter().filter(|r| r["kind"] == "op").collect();
    let got: Vec<(&str, &str)> =
        ops.iter().map(|r| (r["op"].as_str().unwrap(), r["kernel"].as_str().unwrap())).collect();
    let want: Vec<(&str, &str)> = calls.iter().zip(&names).map(|(op, name)| (op.kind(), name.as_str())).collect();
    for w in &want {
        assert!(got.contains(w), "no record for op call {w:?}");
    }
    assert_eq!(got, want, "op records differ from the traced training step's op calls");
    let mut percent = 0.0;
    for (r, op) in ops.iter().zip(&calls) {
        let kernel = &r["kernel"];
        assert_eq!(r["shape"].as_str().unwrap(), op.shape(), "{kernel}");
        assert_eq!(r["flops"].as_u64().unwrap(), op.flops(), "{kernel}");
        assert_eq!(r["bytes"].as_u64().unwrap(), op.bytes(), "{kernel}");
        assert!(r["dispatches"].as_u64().unwrap() >= 1, "{kernel} recorded no dispatch: {r}");
        assert_eq!(r["calls"].as_u64(), Some(1), "{kernel}");
        assert_eq!(r["repeats"].as_u64().unwrap(), repeats, "{kernel}");
        assert_eq!(r["timer"], timer, "{kernel}");
        let (med, min, max) =
            (r["median_ms"].as_f64().unwrap(), r["min_ms"].as_f64().unwrap(), r["max_ms"].as_f64().unwrap());
        assert!(med > 0.0 && min <= med && med <= max && max.is_finite(), "{kernel}: {min} {med} {max}");
        if op.flops() > 0 {
            let gflops = r["gflops"].as_f64().unwrap();
            assert!((gflops - op.flops() as f64 / (med * 1e6)).abs() <= 1e-9 * gflops, "{kernel}: gflops {gflops}");
        }
        let gbps = r["gbps"].as_f64().unwrap();
        assert!((gbps - op.bytes() as f64 / (med * 1e6)).abs() <= 1e-9 * gbps, "{kernel}: gbps {gbps}");
        assert!(r["first_ms"].as_f64().unwrap() > 0.0, "{kernel}");
        for key in ["adapter", "backend", "git_commit", "wgpu_version"] {
            assert!(r[key].as_str().is_some_and(|s| !s.is_empty()), "{kernel}: {key} = {}", r[key]);
        }
        // wgpu's GL and Metal backends leave AdapterInfo::driver empty: present, maybe empty.
        assert!(r["driver"].as_str().is_some(), "{kernel}: driver = {}", r["driver"]);
        percent += r["percent_of_step"].as_f64().unwrap();
    }
    assert!((percent - 100.0).abs() < 1e-6, "op shares of the step sum to {percent} %");
}

fn temp_json(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wgsl-cnn-bench-test-{tag}-{}.json", std::process::id()))
}

#[test]
fn quick_bench_json_covers_every_op_of_the_training_step() {
    let json = temp_json("quick");
    let (stdout, records) = run_bench(&["--quick"], &json);
    let table = table_of(&json);
    std::fs::remove_file(&json).ok();
    // --quick: 5 repeats; timestamps where the adapter has them (lavapipe has).
    let timer = if stdout.contains("timer:    GPU timestamps") { "timestamp" } else { "wall" };
    check_op_records(&records, 5, timer);
    let keys: Vec<Vec<&String>> = records.iter().map(|r| r.as_object().unwrap().keys().collect()).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "records do not all have the same keys");
    for kernel in ["train_step", "train_step_pipelined", "eval_batch", "train_step_cpu_reference"] {
        let r = records.iter().find(|r| r["kernel"] == kernel).unwrap_or_else(|| panic!("no {kernel} record"));
        assert_eq!(r["kind"], "end_to_end");
        assert!(r["median_ms"].as_f64().unwrap() > 0.0 && r["images_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The host's share of a step: record + submit, and the submit within it.
    let host = |kernel: &str| records.iter().find(|r| r["kernel"] == kernel).unwrap_or_else(|| panic!("no {kernel} record"));
    let (all, submit) = (host("train_step_recording"), host("train_step_submit"));
    for r in [all, submit] {
        assert!(r["median_ms"].as_f64().unwrap() > 0.0 && r["images_per_s"].is_null() && r["epoch_s"].is_null(), "{r}");
    }
    // Each repeat's submit is part of its record + submit, so the medians keep that order.
    assert!(submit["median_ms"].as_f64().unwrap() <= all["median_ms"].as_f64().unwrap(), "submit {submit} beyond record + submit {all}");
    // Both on the thread's CPU clock where the OS has one (Linux, which CI runs), and the
    // wall-clock twin beside them.
    let clock = if cfg!(unix) { "thread_cpu" } else { "wall" };
    assert_eq!((all["timer"].as_str(), submit["timer"].as_str()), (Some(clock), Some(clock)));
    let wall = host("train_step_recording_wall");
    assert!(wall["median_ms"].as_f64().unwrap() > 0.0 && wall["images_per_s"].is_null() && wall["timer"] == "wall", "{wall}");
    assert!(stdout.contains("the host CPU lines: CPU time of the recording thread") || !cfg!(unix), "{stdout}");
    let cpu = records.iter().find(|r| r["kernel"] == "train_step_cpu_reference").unwrap();
    assert_eq!((cpu["device"].as_str(), cpu["repeats"].as_u64()), (Some("cpu"), Some(1)));
    for line in ["top 3: 1. ", "GPU/CPU: ", "projected epoch (600 steps", "adapter:  ", "versions: wgpu "] {
        assert!(stdout.contains(line), "no {line:?} in the output:\n{stdout}");
    }
    // The autotuner (default --autotune cached, empty cache): every op with a choice of
    // kernels was measured, and the choices are printed.
    assert!(stdout.contains("kernels:  timed on this adapter at first use (--autotune cached)"), "{stdout}");
    for op in ["conv2d.forward 100×1×28×28 → 20", "conv2d.grad_weight 100×20×12×12 → 50", "conv2d.grad_input 100×20×12×12 → 50", "matmul 100×500×800 NT bias relu"] {
        let line = stdout.lines().find(|l| l.starts_with("kernel:   ") && l.contains(op)).unwrap_or_else(|| panic!("no choice for {op}:\n{stdout}"));
        assert!(line.ends_with(" measured"), "{line}");
    }
    // Schema 2: the mode on every record, one kernel_choice record per printed choice.
    assert!(records.iter().all(|r| r["schema"] == 2 && r["autotune"] == "cached"), "schema or autotune missing");
    let choices: Vec<&Value> = records.iter().filter(|r| r["kind"] == "kernel_choice").collect();
    assert_eq!(choices.len(), stdout.lines().filter(|l| l.starts_with("kernel:   ")).count(), "kernel_choice records");
    for c in &choices {
        let line = format!("kernel:   {}: {} (", c["shape"].as_str().unwrap(), c["kernel"].as_str().unwrap());
        assert!(stdout.contains(&line), "{c} was not printed as {line:?}");
        assert!(c["median_ms"].as_f64().is_some_and(|m| m > 0.0) && c["measured"] == true, "{c}");
    }
    // The results table of this one run: a header, a rule and its row.
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    let adapter = records[0]["adapter"].as_str().unwrap();
    assert!(rows[2].starts_with(&format!("| {adapter} | ")) && rows[2].contains("(mean of 5)") && rows[2].contains("matmul: "), "{table}");
}

/// `wgsl-cnn bench --table JSON`'s output.
fn table_of(json: &PathBuf) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn")).args(["bench", "--table"]).arg(json).output().expect("run bench --table");
    assert!(out.status.success(), "bench --table: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wall_clock_timer_covers_every_op_too() {
    let json = temp_json("wall");
    let (stdout, records) = run_bench(&["--timer", "wall", "--repeats", "2", "--warmup", "0", "--no-cpu", "--autotune", "off"], &json);
    let table = table_of(&json);
    std::fs::remove_file(&json).ok();
    assert!(records.iter().all(|r| r["autotune"] == "off" && r["kind"] != "kernel_choice"), "--autotune off recorded choices");
    assert!(table.lines().nth(2).is_some_and(|row| row.contains("| fixed rules (--autotune off) |") && row.contains("| — |")), "{table}");
    assert!(stdout.contains("timer:    wall clock around a submit-and-wait"), "{stdout}");
    assert!(stdout.contains("kernels:  fixed rules (--autotune off)") && !stdout.contains("kernel:   "), "{stdout}");
    check_op_records(&records, 2, "wall");
    assert!(!records.iter().any(|r| r["device"] == "cpu"), "--no-cpu still timed the CPU reference");
}

/// The page's benchmark (`bench::end_to_end`, awaited) natively: the CLI's end-to-end records
/// and one op row per op call of the step, timed by timestamps (no first-call wall time: a
/// page cannot wait between op calls), which `bench --table` reads like any run's.
#[test]
fn the_pages_end_to_end_benchmark_gives_records_the_table_reads() {
    let mut gpu = Gpu::new(&AdapterChoice { autotune: wgsl_cnn::gpu::autotune::Mode::Off, ..Default::default() }).unwrap();
    assert!(gpu.ctx.can_time_passes(), "{} has no timestamp queries: this test needs them", gpu.ctx.info.name);
    let report = pollster::block_on(wgsl_cnn::bench::end_to_end(&mut gpu, &zoo::lenet5(), 20, 2, 0)).unwrap();
    let names: Vec<String> = report.ops.iter().map(|o| o.name.clone()).collect();
    let traced: Vec<String> = traced_train_step(&zoo::lenet5(), 20).iter().map(Traced::name).collect();
    assert_eq!(names, traced, "one op row per op call of the step");
    for o in &report.ops {
        assert!(o.stats.median > 0.0 && o.stats.median.is_finite() && o.first_ms.is_none(), "{}: {:?} first {:?}", o.name, o.stats, o.first_ms);
    }
    let records = report.records(false);
    let op_records: Vec<&Value> = records.as_array().unwrap().iter().filter(|r| r["kind"] == "op").collect();
    assert_eq!(op_records.len(), traced.len());
    assert!(op_records.iter().all(|r| r["timer"] == "timestamp" && r["first_ms"].is_null()), "{op_records:?}");
    let kinds: Vec<&str> = report.e2e.iter().map(|e| e.kernel).collect();
    assert_eq!(kinds, ["train_step", "train_step_recording", "train_step_submit", "train_step_recording_wall", "train_step_pipelined", "eval_batch"]);
    for e in &report.e2e {
        assert!(e.stats.median > 0.0 && e.stats.median.is_finite(), "{}: {:?}", e.kernel, e.stats);
        assert_eq!(e.images, 20);
    }
    // The step's FLOPs are those of the traced step, so GFLOP/s are real figures.
    let traced: u64 = traced_train_step(&zoo::lenet5(), 20).iter().map(|c| c.call.flops()).sum();
    assert_eq!(report.e2e[0].flops, traced);
    let table = report.table();
    assert!(table.contains("sum of op calls") && table.contains("top 3: 1. ") && table.contains("train step, back to back"), "{table}");
    let json = temp_json("page");
    std::fs::write(&json, serde_json::to_string(&report.records(false)).unwrap()).unwrap();
    let rows = table_of(&json);
    std::fs::remove_file(&json).ok();
    assert!(rows.lines().nth(2).is_some_and(|row| row.contains("fixed rules (--autotune off)")), "{rows}");
}

/// Profiling pass by pass (each dispatch in a compute pass of its own, timed by the pass's
/// timestamp writes: what WebGPU offers) times every op call of a step, sees the same kernels
/// as timestamps inside one pass, and changes no bit of what the step computes.
#[test]
fn a_step_profiled_pass_by_pass_times_every_call_and_changes_no_bit() {
    let n = 20;
    let run = |how: Option<bool>| {
        let mut be = Gpu::new(&AdapterChoice { autotune: wgsl_cnn::gpu::autotune::Mode::Off, ..Default::default() }).unwrap();
        let rec = trace::attach(&mut be);
        let images: Vec<u8> = (0..n * 784).map(|i| (i * 37 % 251) as u8).collect();
        let labels: Vec<u8> = (0..n as u8).map(|i| i * 3 % 10).collect();
        let ds = be.dataset(&images, &labels, 784);
        let perm = be.index(n);
        be.write_index(&perm, &(0..n as u32).collect::<Vec<_>>());
        let mut model = Model::new(&mut be, &zoo::lenet5(), n, 3).unwrap();
        rec.borrow_mut().mode = Trace::Record;
        match how {
            Some(true) => be.ctx.start_profiling_passes(2048).unwrap(),
            Some(false) => be.ctx.start_profiling(2048).unwrap(),
            None => {}
        }
        model.gather_batch(&mut be, &ds, &perm, 0, n);
        model.train_step(&mut be, n, &AdamConfig::default());
        let times = how.map(|_| be.ctx.stop_profiling().unwrap()).unwrap_or_default();
        be.submit();
        let calls = std::mem::take(&mut rec.borrow_mut().calls);
        let mut kernels = std::collections::BTreeSet::new();
        let per_call = trace::call_times(&times, calls.len(), &mut kernels).unwrap();
        let ids: Vec<_> = model.store.ids().collect();
        let params: Vec<Vec<f32>> = ids.iter().map(|&id| be.read(model.store.value(id))).collect();
        (calls.len(), times.len(), per_call, kernels, params)
    };
    let (calls, _, _, _, plain) = run(None);
    let (calls_p, dispatches_p, per_call_p, kernels_p, params_p) = run(Some(true));
    assert_eq!(calls_p, calls);
    assert!(params_p == plain, "profiling pass by pass changed the step's result");
    assert!(per_call_p.iter().all(|&ms| ms > 0.0 && ms.is_finite()), "{per_call_p:?}");
    let (_, dispatches_i, _, kernels_i, params_i) = run(Some(false));
    assert!(params_i == plain, "profiling inside the pass changed the step's result");
    assert_eq!((dispatches_p, &kernels_p), (dispatches_i, &kernels_i), "the two ways see other dispatches");
}
