//! Every layer of the layer set, GPU against the reference: forward (train and eval) and
//! backward on random shapes that are not multiples of any tile size, layer outputs and input
//! gradients poisoned with NaN first, parameter gradients pre-filled with random values (they
//! accumulate), running statistics compared too.

mod common;

use wgsl_cnn::backend::Backend;
use wgsl_cnn::compare::compare;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::nn::store::Entry;
use wgsl_cnn::nn::{Builder, Feat, Layer, Spec, Store};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::rng::Rng;

/// What one backend computed for a layer: train output, input gradient, every parameter's
/// gradient, the buffers (running statistics), eval output.
struct Outcome {
    y: Vec<f32>,
    dx: Option<Vec<f32>>,
    grads: Vec<f32>,
    buffers: Vec<Vec<f32>>,
    y_eval: Vec<f32>,
}

struct Case {
    spec: Spec,
    input: Feat,
    n: usize,
    capacity: usize,
    seed: u64,
}

fn run<B: Backend + 'static>(be: &mut B, case: &Case) -> Outcome {
    let mut b = Builder::new(be, case.capacity);
    let mut layer: Box<dyn Layer<B>> = case.spec.build(&mut b, "layer", case.input).unwrap();
    let (store, be): (Store<B>, &mut B) = b.finish();
    let out = case.spec.output("layer", case.input).unwrap();
    let mut rng = Rng::new(case.seed);
    // Parameters: the default init, then moved so that BatchNorm's are generic too.
    let values: Vec<Vec<f32>> = store.init_values(case.seed).into_iter().map(|v| v.iter().map(|&e| e + rng.uniform(-0.3, 0.3) as f32).collect()).collect();
    for (id, v) in store.ids().zip(&values) {
        be.write(store.value(id), v);
    }
    let x = be.tensor(case.capacity * case.input.len());
    be.write(&x, &rng.uniform_vec(case.n * case.input.len(), -2.0, 2.0));
    let dy = be.tensor(case.capacity * out.len());
    be.write(&dy, &rng.uniform_vec(case.n * out.len(), -1.0, 1.0));
    let grads0: Vec<Vec<f32>> = store.params.iter().map(|p| rng.uniform_vec(p.len(), -0.5, 0.5)).collect();
    let nan = |len: usize| vec![f32::NAN; len];

    // Forward twice: the first call shows which buffer the output lands in, which is then
    // poisoned before the second.
    let y = layer.forward(be, &store, &x, case.n, true);
    // A write lands before the work recorded since the last submit: submit first.
    be.submit();
    be.write(&y, &nan(case.n * out.len()));
    let y = layer.forward(be, &store, &x, case.n, true);
    let y_host = be.read(&y)[..case.n * out.len()].to_vec();
    // Backward likewise (the first allocates the input-gradient buffer); the gradient store
    // is reset to the same random values before the one that counts.
    let dx = layer.backward(be, &store, &dy, case.n, true);
    be.submit();
    if let Some(dx) = &dx {
        be.write(dx, &nan(case.n * case.input.len()));
    }
    for (id, g) in store.ids().zip(&grads0) {
        be.write(store.grad(id), g);
    }
    let dx = layer.backward(be, &store, &dy, case.n, true);
    let dx_host = dx.map(|t| be.read(&t)[..case.n * case.input.len()].to_vec());
    // Per parameter: the stores' padding differs between backends (their view alignments).
    let grads = store.ids().flat_map(|id| be.read(store.grad(id))).collect();
    let buffers = store
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Buffer { tensor, .. } => Some(be.read(tensor)),
            _ => None,
        })
        .collect();
    let y = layer.forward(be, &store, &x, case.n, false);
    let y_eval = be.read(&y)[..case.n * out.len()].to_vec();
    Outcome { y: y_host, dx: dx_host, grads, buffers, y_eval }
}

fn check(case: Case) {
    let want = run(&mut Cpu::default(), &case);
    let got = run(&mut Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}")), &case);
    let what = format!("{:?} on {} × {} (seed {})", case.spec, case.n, case.input, case.seed);
    let mut pairs = vec![("forward", &got.y, &want.y), ("grads", &got.grads, &want.grads), ("eval forward", &got.y_eval, &want.y_eval)];
    if let (Some(g), Some(w)) = (&got.dx, &want.dx) {
        pairs.push(("input gradient", g, w));
    }
    assert_eq!(got.dx.is_some(), want.dx.is_some(), "{what}: input gradient on one backend only");
    for (g, w) in got.buffers.iter().zip(&want.buffers) {
        pairs.push(("buffer", g, w));
    }
    for (part, g, w) in pairs {
        assert!(w.iter().all(|v| v.is_finite()), "{what}: the reference's {part} is not finite");
        let scale = w.iter().fold(0f64, |a, &v| a.max(v.abs() as f64));
        let c = compare(g, w, 1e-5 * scale + 1e-7, 1e-4);
        eprintln!("{what}: {part}: {c}");
        assert!(c.passed() && c.rel_l2_err <= 1e-5, "{what}: {part}: {c}");
    }
}

fn seed(salt: u64) -> u64 {
    common::base_seed() ^ salt
}

/// A size in lo..=hi.
fn size(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below(hi - lo + 1)
}

#[test]
fn conv2d() {
    let s = seed(1);
    let mut r = Rng::new(s);
    let (c_in, c_out, k) = (size(&mut r, 1, 5), size(&mut r, 3, 13), size(&mut r, 2, 5));
    let input = Feat::image(c_in, size(&mut r, k, 14), size(&mut r, k, 13));
    check(Case { spec: Spec::conv(c_in, c_out, k), input, n: size(&mut r, 1, 7), capacity: 9, seed: s });
}

#[test]
fn batchnorm2d() {
    let s = seed(2);
    let mut r = Rng::new(s);
    let c = size(&mut r, 2, 11);
    let input = Feat::image(c, size(&mut r, 2, 9), size(&mut r, 2, 9));
    check(Case { spec: Spec::BatchNorm2d { c }, input, n: size(&mut r, 2, 7), capacity: 8, seed: s });
}

#[test]
fn maxpool2d() {
    let s = seed(3);
    let mut r = Rng::new(s);
    let input = Feat::image(size(&mut r, 1, 6), size(&mut r, 4, 13), size(&mut r, 4, 11));
    check(Case { spec: Spec::max_pool(2), input, n: size(&mut r, 1, 5), capacity: 5, seed: s });
}

#[test]
fn relu_and_flatten() {
    let s = seed(4);
    let mut r = Rng::new(s);
    let input = Feat::image(size(&mut r, 1, 6), size(&mut r, 1, 9), size(&mut r, 1, 9));
    let spec = Spec::seq(vec![("relu", Spec::ReLU), ("flatten", Spec::Flatten)]);
    check(Case { spec, input, n: size(&mut r, 1, 6), capacity: 6, seed: s });
}

#[test]
fn linear() {
    let s = seed(5);
    let mut r = Rng::new(s);
    let (d_in, d_out) = (size(&mut r, 1, 90), size(&mut r, 1, 70));
    check(Case { spec: Spec::Linear { d_in, d_out }, input: Feat::flat(d_in), n: size(&mut r, 1, 37), capacity: 40, seed: s });
}

#[test]
fn a_block_repeated_with_tied_weights() {
    let s = seed(6);
    let mut r = Rng::new(s);
    let d = size(&mut r, 5, 60);
    let block = Spec::seq(vec![("fc", Spec::Linear { d_in: d, d_out: d }), ("relu", Spec::ReLU)]);
    let spec = Spec::repeat(size(&mut r, 2, 4), "block", block);
    check(Case { spec, input: Feat::flat(d), n: size(&mut r, 1, 21), capacity: 21, seed: s });
}

#[test]
fn a_small_convolutional_stack() {
    let s = seed(7);
    let mut r = Rng::new(s);
    let c = size(&mut r, 2, 6);
    let spec = Spec::seq(vec![
        ("conv", Spec::conv(1, c, 3)),
        ("bn", Spec::BatchNorm2d { c }),
        ("pool", Spec::max_pool(2)),
        ("relu", Spec::ReLU),
        ("flatten", Spec::Flatten),
        ("fc", Spec::Linear { d_in: c * 16, d_out: 7 }),
    ]);
    check(Case { spec, input: Feat::image(1, 10, 10), n: size(&mut r, 2, 6), capacity: 6, seed: s });
}

#[test]
fn shapes_that_do_not_fit_are_errors_naming_the_layer() {
    let spec = Spec::seq(vec![("fc1", Spec::Linear { d_in: 784, d_out: 10 })]);
    let err = spec.output("", Feat::image(1, 28, 28)).unwrap_err().to_string();
    assert!(err.contains("fc1 expects 784 inputs") && err.contains("[N, 1, 28, 28]") && err.contains("Flatten"), "{err}");
    let spec = Spec::repeat(3, "block", Spec::Linear { d_in: 5, d_out: 4 });
    let err = spec.output("body", Feat::flat(5)).unwrap_err().to_string();
    assert!(err.contains("body") && err.contains("keep its shape"), "{err}");
}

#[test]
fn conv2d_with_stride_and_padding() {
    let s = seed(8);
    let mut r = Rng::new(s);
    let (c_in, c_out, k) = (size(&mut r, 1, 4), size(&mut r, 3, 9), size(&mut r, 2, 5));
    let (stride, pad) = (size(&mut r, 1, 3), size(&mut r, 1, 2));
    let input = Feat::image(c_in, size(&mut r, k, 13), size(&mut r, k, 11));
    check(Case { spec: Spec::Conv2d { c_in, c_out, k, stride, pad }, input, n: size(&mut r, 1, 5), capacity: 6, seed: s });
    // LeNet-1998's first convolution: padding 2 on a 5 × 5 kernel keeps 28 × 28.
    let spec = Spec::Conv2d { c_in: 1, c_out: 6, k: 5, stride: 1, pad: 2 };
    check(Case { spec, input: Feat::image(1, 28, 28), n: 3, capacity: 4, seed: s });
}

#[test]
fn maxpool2d_with_a_stride_other_than_k() {
    let s = seed(9);
    let mut r = Rng::new(s);
    let input = Feat::image(size(&mut r, 1, 5), size(&mut r, 5, 13), size(&mut r, 5, 11));
    for (k, stride) in [(3, 2), (2, 1), (2, 3)] {
        check(Case { spec: Spec::MaxPool2d { k, stride }, input, n: size(&mut r, 1, 5), capacity: 5, seed: s });
        // with the ReLU it fuses, and after a BatchNorm2d (which fuses only with stride = k)
        let spec = Spec::seq(vec![("bn", Spec::BatchNorm2d { c: input.c }), ("pool", Spec::MaxPool2d { k, stride }), ("relu", Spec::ReLU)]);
        check(Case { spec, input, n: size(&mut r, 2, 5), capacity: 5, seed: s });
    }
}

#[test]
fn avgpool2d() {
    let s = seed(10);
    let mut r = Rng::new(s);
    let input = Feat::image(size(&mut r, 1, 5), size(&mut r, 5, 13), size(&mut r, 5, 11));
    for (k, stride) in [(2, 2), (3, 3), (3, 2), (2, 3)] {
        check(Case { spec: Spec::AvgPool2d { k, stride }, input, n: size(&mut r, 1, 5), capacity: 5, seed: s });
    }
}

#[test]
fn tanh_and_sigmoid() {
    let s = seed(11);
    let mut r = Rng::new(s);
    let input = Feat::image(size(&mut r, 1, 6), size(&mut r, 1, 9), size(&mut r, 1, 9));
    let spec = Spec::seq(vec![("tanh", Spec::Tanh), ("sigmoid", Spec::Sigmoid)]);
    check(Case { spec, input, n: size(&mut r, 1, 6), capacity: 6, seed: s });
    // long enough for the vec4 kernels and their tail
    let spec = Spec::seq(vec![("sigmoid", Spec::Sigmoid), ("tanh", Spec::Tanh)]);
    check(Case { spec, input: Feat::image(3, 11, 13), n: 3, capacity: 4, seed: s });
}

#[test]
fn lenet_1998_stack() {
    // conv (padding 2) → tanh → avgpool → conv → tanh → avgpool → flatten → linear → sigmoid
    let s = seed(12);
    let spec = Spec::seq(vec![
        ("conv1", Spec::Conv2d { c_in: 1, c_out: 3, k: 5, stride: 1, pad: 2 }),
        ("tanh1", Spec::Tanh),
        ("pool1", Spec::AvgPool2d { k: 2, stride: 2 }),
        ("conv2", Spec::conv(3, 4, 3)),
        ("tanh2", Spec::Tanh),
        ("pool2", Spec::AvgPool2d { k: 2, stride: 2 }),
        ("flatten", Spec::Flatten),
        ("fc", Spec::Linear { d_in: 4 * 2 * 2, d_out: 7 }),
        ("sigmoid", Spec::Sigmoid),
    ]);
    check(Case { spec, input: Feat::image(1, 13, 13), n: 3, capacity: 4, seed: s });
}

#[test]
fn misfits_name_the_layer_and_the_shapes() {
    let err = |spec: Spec, x: Feat| spec.output("", x).unwrap_err().to_string();
    let spec = Spec::seq(vec![("flatten", Spec::Flatten), ("fc1", Spec::Linear { d_in: 800, d_out: 10 })]);
    assert_eq!(err(spec, Feat::image(50, 5, 5)), "fc1 expects 800 inputs, the layer before gives 1,250");
    let spec = Spec::seq(vec![("conv1", Spec::conv(1, 6, 5)), ("conv2", Spec::conv(16, 6, 5))]);
    let e = err(spec, Feat::image(1, 28, 28));
    assert!(e.starts_with("conv2 expects 16 input channels, the layer before gives 6"), "{e}");
    let e = err(Spec::seq(vec![("pool", Spec::AvgPool2d { k: 5, stride: 1 })]), Feat::image(2, 4, 9));
    assert!(e.starts_with("pool: AvgPool2d(5, stride=1) does not fit the 4×9 input"), "{e}");
    let e = err(Spec::seq(vec![("conv", Spec::conv(1, 2, 0))]), Feat::image(1, 4, 4));
    assert!(e.contains("conv") && e.contains("at least 1"), "{e}");
}
