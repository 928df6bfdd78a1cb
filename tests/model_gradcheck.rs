//! Each model's gradient (every parameter tensor) against central finite differences of its
//! loss, in f64 on the reference. For `tied` this is the proof that the ten uses of one
//! weight add up: a gradient of only the last use would miss by far.

use wgsl_cnn::model::{zoo, Arch, Model};
use wgsl_cnn::reference::Cpu64;
use wgsl_cnn::rng::Rng;

fn check(arch: &Arch, seed: u64, coords: usize) {
    let mut rng = Rng::new(seed);
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let n = 3;
    let x: Vec<f32> = data.train.images[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let y: Vec<u32> = data.train.labels[..n].iter().map(|&l| l as u32).collect();
    let be = &mut Cpu64::new();
    let mut model = Model::build(be, arch, n).unwrap();
    let mut values = model.store.init_values(seed);
    // BatchNorm starts at weight 1, bias 0; move them so their gradients are generic.
    for (p, v) in model.store.params.iter().zip(values.iter_mut()) {
        if p.name.starts_with("batchnorm") {
            v.iter_mut().for_each(|e| *e += rng.uniform(-0.3, 0.3) as f32);
        }
    }
    model.set_values(be, &values);
    model.set_batch(be, &x, &y);
    model.forward(be, n, true);
    model.backward(be, n);
    let ids: Vec<_> = model.store.ids().collect();
    let grads: Vec<Vec<f64>> = ids.iter().map(|&id| be.read_exact(model.store.grad(id))).collect();
    let h = 1e-6;
    let mut worst = 0f64;
    for (k, &id) in ids.iter().enumerate() {
        let (name, len) = (model.store.params[id.0].name.clone(), model.store.params[id.0].len());
        let param = model.store.value(id).clone();
        let base = be.read_exact(&param);
        for _ in 0..coords.min(len) {
            let j = rng.below(len);
            let mut p = base.clone();
            p[j] = base[j] + h;
            be.write_exact(&param, &p);
            let up = exact_loss(be, &mut model, n);
            p[j] = base[j] - h;
            be.write_exact(&param, &p);
            let down = exact_loss(be, &mut model, n);
            be.write_exact(&param, &base);
            let numeric = (up - down) / (2.0 * h);
            let analytic = grads[k][j];
            // Central differences in f64 are good to ~1e-9 here (h² curvature and 1e-16/h
            // rounding); conv biases feeding BatchNorm have a true gradient of exactly 0.
            let err = (analytic - numeric).abs();
            let bound = 1e-6 * numeric.abs().max(analytic.abs()) + 1e-8;
            if numeric.abs() > 1e-6 {
                worst = worst.max(err / numeric.abs());
            }
            assert!(err <= bound, "{} {name}[{j}] (seed {seed}): analytic {analytic:e}, finite difference {numeric:e}", arch.name);
        }
    }
    eprintln!("{}: worst relative error where |gradient| > 1e-6: {worst:.2e}", arch.name);
}

/// The loss of a training forward (batch statistics) at the current parameters, at full
/// f64 precision (`read_loss` rounds to f32).
fn exact_loss(be: &mut Cpu64, model: &mut Model<Cpu64>, n: usize) -> f64 {
    model.forward(be, n, true);
    model.backward(be, n);
    let t = model.loss_tensor().clone();
    be.read_exact(&t)[0]
}

#[test]
fn lenet5_gradient_matches_finite_differences_in_f64() {
    check(&zoo::lenet5(), 2024, 5);
}

#[test]
fn mlp_gradient_matches_finite_differences_in_f64() {
    check(&zoo::mlp(), 2025, 8);
}

#[test]
fn tied_gradient_sums_the_ten_uses_and_matches_finite_differences_in_f64() {
    check(&zoo::tied(), 2026, 6);
}

#[test]
fn tied_parameters_are_stored_once() {
    let be = &mut wgsl_cnn::reference::Cpu::default();
    let model = Model::build(be, &zoo::tied(), 1).unwrap();
    let names: Vec<&str> = model.store.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["body.block.fc.weight", "body.block.fc.bias", "head.weight", "head.bias"]);
    assert_eq!(model.store.total(), 623_290);
}

#[test]
fn lenet_1998_gradient_matches_finite_differences_in_f64() {
    // Conv2d with padding, Tanh, AvgPool2d, and a strided MaxPool2d and Sigmoid in a variant.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models/lenet1998.json");
    let arch = wgsl_cnn::model::file::load(&path).unwrap();
    check(&arch, 2027, 6);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"AvgPool2d(2)\" },\n    { \"name\": \"conv2\"", "\"MaxPool2d(4, stride=2)\" },\n    { \"name\": \"conv2\"")
        .replace("Conv2d(6, 16, kernel_size=5)", "Conv2d(6, 16, kernel_size=3, stride=2, padding=1)")
        .replace("Linear(400, 120)", "Linear(144, 120)")
        .replace("\"tanh3\",   \"layer\": \"Tanh()\"", "\"tanh3\",   \"layer\": \"Sigmoid()\"");
    let variant = wgsl_cnn::model::file::parse(&text, "variant").unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    assert!(variant.spec != arch.spec);
    check(&variant, 2028, 6);
}
