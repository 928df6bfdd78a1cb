//! The whole model's gradient (every parameter, through conv → batchnorm → maxpool → relu →
//! linear → cross-entropy) against central finite differences of its loss, in f64.

use wgsl_cnn::model::params::{init_values, LENET5_PARAMS};
use wgsl_cnn::model::Lenet5;
use wgsl_cnn::reference::Cpu64;
use wgsl_cnn::rng::Rng;

fn loss(be: &mut Cpu64, model: &mut Lenet5<Cpu64>, n: usize) -> f64 {
    model.forward(be, n, true);
    model.loss(be, n);
    be.read_exact(model.loss_buffer())[0]
}

#[test]
fn model_gradient_matches_finite_differences_in_f64() {
    let seed = 2024;
    let mut rng = Rng::new(seed);
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let n = 3;
    let x: Vec<f32> = data.train.images[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let y: Vec<u32> = data.train.labels[..n].iter().map(|&l| l as u32).collect();
    let be = &mut Cpu64::new();
    let mut values = init_values(seed);
    // BatchNorm starts at weight 1, bias 0; move them so their gradients are generic.
    for (spec, v) in LENET5_PARAMS.iter().zip(values.iter_mut()) {
        if spec.name.starts_with("batchnorm") {
            v.iter_mut().for_each(|e| *e += rng.uniform(-0.3, 0.3) as f32);
        }
    }
    let mut model = Lenet5::from_values(be, n, &values);
    model.set_batch(be, &x, &y);
    model.forward(be, n, true);
    model.backward(be, n);
    let grads: Vec<Vec<f64>> = model.grads.iter().map(|g| be.read_exact(g)).collect();
    let h = 1e-6;
    let mut worst = 0f64;
    for (i, spec) in LENET5_PARAMS.iter().enumerate() {
        let param = model.params[i].clone();
        let base = be.read_exact(&param);
        // Five random coordinates of every parameter tensor (all of them for tiny ones).
        for _ in 0..5.min(spec.len()) {
            let j = rng.below(spec.len());
            let mut p = base.clone();
            p[j] = base[j] + h;
            be.write_exact(&param, &p);
            let up = loss(be, &mut model, n);
            p[j] = base[j] - h;
            be.write_exact(&param, &p);
            let down = loss(be, &mut model, n);
            be.write_exact(&param, &base);
            let numeric = (up - down) / (2.0 * h);
            let analytic = grads[i][j];
            // Central differences in f64 are good to ~1e-9 here (h² curvature and 1e-16/h
            // rounding); conv biases feeding BatchNorm have a true gradient of exactly 0.
            let err = (analytic - numeric).abs();
            let bound = 1e-6 * numeric.abs().max(analytic.abs()) + 1e-8;
            if numeric.abs() > 1e-6 {
                worst = worst.max(err / numeric.abs());
            }
            assert!(
                err <= bound,
                "{}[{j}] (seed {seed}): analytic {analytic:e}, finite difference {numeric:e}",
                spec.name
            );
        }
    }
    eprintln!("worst relative error where |gradient| > 1e-6: {worst:.2e}");
}
