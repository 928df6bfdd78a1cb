//! Model files (`--model net.json`, src/model/file.rs): the shipped examples against the
//! built-in models (same architecture, same parameter names, bit-identical first step), the
//! round trip through the JSON that checkpoints record, checkpoints that rebuild a file's
//! network without the file (eval, --resume), and bad files: errors that name the layer,
//! never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use wgsl_cnn::model::state::{parameter_specs, state_dict_specs};
use wgsl_cnn::model::{file, state, zoo, Arch, Model};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::shapes::AdamConfig;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models").join(format!("{name}.json"))
}

fn load(name: &str) -> Arch {
    file::load(&example(name)).unwrap_or_else(|e| panic!("{e:#}"))
}

fn parse_err(text: &str) -> String {
    format!("{:#}", file::parse(text, "net.json").unwrap_err())
}

/// The state_dict after one Adam step on the first `n` subset images (CPU reference, f32).
fn first_step(arch: &Arch, n: usize) -> Vec<(String, Vec<u32>)> {
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let be = &mut Cpu::default();
    let mut model = Model::new(be, arch, n, 5).unwrap();
    let x: Vec<f32> = data.train.images[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let y: Vec<u32> = data.train.labels[..n].iter().map(|&l| l as u32).collect();
    model.set_batch(be, &x, &y);
    model.train_step(be, n, &AdamConfig::default());
    let mut out = vec![("loss".to_string(), vec![pollster::block_on(model.read_loss(be)).to_bits()])];
    for t in pollster::block_on(state::state_dict(be, &model)) {
        let bits = match t.data {
            wgsl_cnn::checkpoint::TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            wgsl_cnn::checkpoint::TensorData::I64(v) => v.iter().map(|&x| x as u32).collect(),
        };
        out.push((t.name, bits));
    }
    out
}

#[test]
fn the_example_files_are_the_built_in_models() {
    for name in zoo::NAMES {
        let (from_file, built_in) = (load(name), zoo::arch(name).unwrap());
        assert_eq!(from_file, built_in, "examples/models/{name}.json");
        let names = |a: &Arch| state_dict_specs(a).into_iter().map(|s| (s.name, s.shape)).collect::<Vec<_>>();
        assert_eq!(names(&from_file), names(&built_in), "{name}: state_dict");
        assert_eq!(parameter_specs(&from_file).len(), parameter_specs(&built_in).len());
        // The same first training step, bit for bit.
        assert_eq!(first_step(&from_file, 3), first_step(&built_in, 3), "{name}: first step");
    }
}

#[test]
fn lenet_1998_has_the_published_shape() {
    let arch = load("lenet1998");
    let model = Model::build(&mut Cpu::default(), &arch, 1).unwrap();
    // conv1 6·(25 + 1), conv2 16·(150 + 1), fc1 120·(400 + 1), fc2 84·(120 + 1), fc3 10·(84 + 1)
    assert_eq!(model.store.total(), 156 + 2_416 + 48_120 + 10_164 + 850);
    let s = wgsl_cnn::model::summary::summary(&arch);
    for line in ["Conv2d(1, 6, kernel_size=5, padding=2)       [N, 6, 28, 28]", "AvgPool2d(2)", "Tanh()", "[N, 400]", "61,706"] {
        assert!(s.contains(line), "missing {line:?} in\n{s}");
    }
    let steps = first_step(&arch, 4);
    assert!(steps.iter().all(|(_, v)| v.iter().all(|b| f32::from_bits(*b).is_finite())));
}

#[test]
fn the_recorded_json_reads_back_to_the_same_architecture() {
    let mut archs: Vec<Arch> = zoo::NAMES.iter().map(|n| zoo::arch(n).unwrap()).collect();
    archs.push(load("lenet1998"));
    let strided = r#"{"name": "strided", "classes": 4, "layers": [
        {"name": "c", "layer": "nn.Conv2d(1, 3, 3, stride=2, padding=1)"},
        {"name": "p", "layer": "MaxPool2d(kernel_size=3, stride=2)"},
        {"name": "s", "layer": "Sigmoid()"},
        {"name": "q", "layer": "AvgPool2d(2, 1)"},
        {"name": "f", "layer": "Flatten()"},
        {"name": "r", "repeat": 2, "block": "fc", "layer": "Linear(75, 75)"},
        {"name": "head", "layers": [{"name": "out", "layer": "Linear(in_features=75, out_features=4)"}]}]}"#;
    archs.push(file::parse(strided, "strided.json").unwrap_or_else(|e| panic!("{e:#}")));
    for arch in archs {
        let json = file::to_json(&arch);
        let back = file::parse(&json, "recorded").unwrap_or_else(|e| panic!("{}: {e:#}\n{json}", arch.name));
        assert_eq!(back, arch, "{json}");
    }
    let names: Vec<String> = state_dict_specs(&file::parse(strided, "s").unwrap()).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["c.weight", "c.bias", "r.fc.weight", "r.fc.bias", "head.out.weight", "head.out.bias"]);
}

#[test]
fn bad_files_are_errors_naming_the_layer() {
    let net = |layers: &str| format!(r#"{{"name": "net", "layers": [{layers}]}}"#);
    let cases: &[(String, &str)] = &[
        (
            net(r#"{"name": "c", "layer": "Conv2d(1, 50, 5, stride=5)"}, {"name": "flatten", "layer": "Flatten()"}, {"name": "fc1", "layer": "Linear(800, 10)"}"#),
            "fc1 expects 800 inputs, the layer before gives 1,250",
        ),
        (net(r#"{"name": "fc1", "layer": "Linear(784, 10)"}"#), "fc1 expects 784 inputs ([N, 784]), the layer before gives [N, 1, 28, 28] (put a Flatten before it)"),
        (net(r#"{"name": "c1", "layer": "Conv2d(3, 6, 5)"}"#), "c1 expects 3 input channels, the layer before gives 1"),
        (net(r#"{"name": "p", "layer": "MaxPool2d(29)"}"#), "p: MaxPool2d(29) does not fit the 28×28 input"),
        (net(r#"{"name": "x", "layer": "Dropout(0.5)"}"#), "x: Dropout(0.5): unknown layer type `Dropout`"),
        (net(r#"{"name": "c", "layer": "Conv2d(1, 6, kernel=5)"}"#), "c: Conv2d(1, 6, kernel=5): Conv2d has no argument `kernel`"),
        (net(r#"{"name": "c", "layer": "Conv2d(1, 6)"}"#), "Conv2d needs `kernel_size`"),
        (net(r#"{"name": "c", "layer": "Conv2d(1, 6, (5, 3))"}"#), "square kernels"),
        (net(r#"{"name": "c", "layer": "Conv2d(1, 6, 0)"}"#), "`kernel_size` must be a whole number from 1"),
        (net(r#"{"name": "b", "layer": "BatchNorm2d(1, eps=0.001)"}"#), "only PyTorch's default eps"),
        (net(r#"{"name": "r", "layer": "ReLU"}"#), "r: ReLU: write a layer as Type(arguments)"),
        (net(r#"{"name": "a", "layer": "ReLU()"}, {"name": "a", "layer": "ReLU()"}"#), "layer 2 of the model: two layers named \"a\""),
        (net(r#"{"name": "a.b", "layer": "ReLU()"}"#), "name \"a.b\""),
        (net(r#"{"layer": "ReLU()"}"#), "layer 1 of the model: needs a `name`"),
        (net(r#"{"name": "f", "layer": "Flatten()"}, {"name": "body", "repeat": 2, "layers": [{"name": "fc", "layer": "Linear(784, 10)"}]}"#), "body.block: a block applied 2 times must keep its shape"),
        (net(r#"{"name": "f", "layer": "Flatten()"}, {"name": "fc", "layer": "Linear(784, 47)"}"#), "the model has 10 classes, but its last layer (fc) gives [N, 47]"),
        (net(""), "`layers` is empty"),
        (net(r#"{"name": "c", "layer": "Conv2d(1, 16777216, 1, padding=16777216)"}"#), "c gives [N, 16777216, 33554460, 33554460], more than 2^31 values"),
        (r#"{"name": "net", "layers": [], "extra": 1}"#.to_string(), "unknown key `extra`"),
        (r#"{"name": "net", "input": [3, 32, 32], "layers": [{"name": "f", "layer": "Flatten()"}]}"#.to_string(), "`input` [N, 3, 32, 32] is not what the data sets give"),
        ("{\"name\": \"net\", \"layers\": [".to_string(), "net.json: not valid JSON"),
        ("[]".to_string(), "a model file is a JSON object"),
    ];
    for (text, want) in cases {
        let err = parse_err(text);
        assert!(err.contains(want), "{text}\n  gave: {err}\n  want: {want}");
        assert!(err.starts_with("net.json"), "{err}");
    }
    // Every prefix of a good file is an error or the file itself, never a panic.
    let good = std::fs::read_to_string(example("tied")).unwrap();
    for end in (0..good.len()).filter(|&e| good.is_char_boundary(e)) {
        let _ = file::parse(&good[..end], "prefix");
    }
}

fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{c:?} failed:\n{stdout}\n{stderr}");
    format!("{stdout}{stderr}")
}

#[test]
fn a_checkpoint_of_a_model_file_rebuilds_it_without_the_file() {
    let dir = common::temp_dir("model-file", "checkpoint");
    // A copy of the file, removed after training: eval and resume must not need it.
    let net = dir.join("net.json");
    std::fs::copy(example("lenet1998"), &net).unwrap();
    let ckpt = dir.join("m.safetensors");
    let common_args = ["--backend", "cpu", "--data-dir", "assets/mnist-subset"];
    let train = |epochs: &str, extra: &[&str]| {
        let mut c = cli();
        c.args(common_args).args(["train", "--epochs", epochs, "--limit-train", "200", "--batch-size", "50", "--no-progress", "--no-plots", "--log-every", "2"]);
        c.arg("--save").arg(&ckpt).args(extra);
        c
    };
    run_ok(&mut train("1", &["--model", net.to_str().unwrap()]));
    std::fs::remove_file(&net).unwrap();
    let arch = state::arch_for(&ckpt, None).unwrap();
    assert_eq!(arch, load("lenet1998"));
    let out = run_ok(cli().args(common_args).args(["eval", "--batch-size", "500", "--checkpoint"]).arg(&ckpt));
    assert!(out.contains("model: lenet1998") && out.contains("Accuracy of the network"), "{out}");
    let out = run_ok(&mut train("2", &["--resume", ckpt.to_str().unwrap()]));
    assert!(out.contains("Resumed lenet1998") && out.contains("Epoch [2/2]"), "{out}");
    // Loading it as another model names both.
    let out = cli().args(common_args).args(["eval", "--model", "lenet5", "--checkpoint"]).arg(&ckpt).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("holds model `lenet1998`, not `lenet5`") && err.contains("leave --model out"), "{err}");
}

#[test]
fn summary_of_a_bad_file_is_an_error_not_a_panic() {
    let dir = common::temp_dir("model-file", "summary");
    let net = dir.join("bad.json");
    std::fs::write(&net, r#"{"name": "bad", "layers": [{"name": "flatten", "layer": "Flatten()"}, {"name": "fc1", "layer": "Linear(800, 10)"}]}"#).unwrap();
    let out = cli().args(["summary", "--model"]).arg(&net).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fc1 expects 800 inputs, the layer before gives 784"), "{err}");
    let out = run_ok(cli().args(["summary", "--model", "examples/models/lenet1998.json"]));
    assert!(out.contains("lenet1998") && out.contains("61,706"), "{out}");
    let out = cli().args(["summary", "--model", "resnet"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("lenet5, mlp, tied"), "{err}");
}

// ---- data sets with other class counts -------------------------------------------------

/// Writes the first `n` train and test images of the subset as a raw IDX directory, with
/// labels mapped by `label`.
fn idx_dir(dir: &Path, n: usize, label: impl Fn(usize, u8) -> u8) {
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    for (split, prefix) in [(&data.train, "train"), (&data.test, "t10k")] {
        let mut img = vec![0, 0, 8, 3];
        for d in [n as u32, 28, 28] {
            img.extend(d.to_be_bytes());
        }
        img.extend(&split.images[..n * 784]);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        let mut lab = vec![0, 0, 8, 1];
        lab.extend((n as u32).to_be_bytes());
        lab.extend(split.labels[..n].iter().enumerate().map(|(i, &l)| label(i, l)));
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
    }
}

#[test]
fn the_classes_come_from_the_labels_and_the_model_must_match() {
    use wgsl_cnn::dataset::Dataset;
    let dir = common::temp_dir("model-file", "classes");
    let data_dir = dir.join("emnist-like");
    std::fs::create_dir_all(&data_dir).unwrap();
    // 47 classes, as EMNIST balanced: every label 0–46 occurs.
    idx_dir(&data_dir, 200, |i, l| ((l as usize * 5 + i) % 47) as u8);
    assert_eq!(Dataset::Idx.load(&data_dir, true).unwrap().classes(), 47);
    // The same files as MNIST: labels above 9 are refused.
    let err = format!("{:#}", Dataset::Mnist.load(&data_dir, true).unwrap_err());
    assert!(err.contains("out of range (labels are 0–9)"), "{err}");
    // KMNIST: ten classes by its spec, named.
    let kdir = dir.join("kmnist");
    std::fs::create_dir_all(&kdir).unwrap();
    idx_dir(&kdir, 100, |_, l| l);
    assert_eq!(Dataset::Kmnist.load(&kdir, true).unwrap().classes(), 10);
    assert_eq!(Dataset::Kmnist.class_names()[1], "ki");

    let args = |model: &str| {
        let mut c = cli();
        c.args(["--backend", "cpu", "--dataset", "idx", "--data-dir"]).arg(&data_dir);
        c.args(["train", "--epochs", "1", "--batch-size", "50", "--no-progress", "--no-plots", "--model", model, "--save"]).arg(dir.join("m.safetensors"));
        c
    };
    let out = args("mlp").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("has 47 classes (labels 0–46), but model `mlp` gives 10 scores per image"), "{err}");
    // A model file with 47 outputs trains on it, and evaluates without the file.
    let net = dir.join("mlp47.json");
    let text = std::fs::read_to_string(example("mlp")).unwrap().replace("\"classes\": 10", "\"classes\": 47").replace("Linear(500, 10)", "Linear(500, 47)");
    std::fs::write(&net, text).unwrap();
    let out = run_ok(&mut args(net.to_str().unwrap()));
    assert!(out.contains("Accuracy of the network on the 200 test images"), "{out}");
    let out = run_ok(cli().args(["--backend", "cpu", "--dataset", "idx", "--data-dir"]).arg(&data_dir).arg("eval").arg("--checkpoint").arg(dir.join("m.safetensors")));
    assert!(out.contains("Confusion matrix") && out.contains("  46 "), "{out}");
    // and that model on MNIST's ten classes is refused
    let out = cli().args(["--backend", "cpu", "--data-dir", "assets/mnist-subset", "eval", "--checkpoint"]).arg(dir.join("m.safetensors")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("has 10 classes") && err.contains("gives 47 scores"), "{err}");
}
