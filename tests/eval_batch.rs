//! Evaluation in its own, larger batches (`nn::Capacity`): a model whose eval capacity
//! exceeds its training batch builds a second copy of its layers over the same names, and
//! that copy must share every parameter, buffer and counter and compute what the training
//! network computes; the sizer picks the largest eval batch the limits allow.

mod common;

use wgsl_cnn::backend::Backend;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::{zoo, Arch, Model};
use wgsl_cnn::nn::sizer::{self, Budget};
use wgsl_cnn::nn::{Capacity, EVAL_BATCH};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::AdamConfig;

fn random_batch(rng: &mut Rng, arch: &Arch, n: usize) -> (Vec<f32>, Vec<u32>) {
    let x = rng.uniform_vec(n * arch.input.len(), 0.0, 1.0);
    let y = (0..n).map(|_| rng.below(arch.classes) as u32).collect();
    (x, y)
}

fn eval_logits<B: Backend + 'static>(be: &mut B, m: &mut Model<B>, x: &[f32], y: &[u32]) -> Vec<u32> {
    m.set_batch(be, x, y);
    m.forward(be, y.len(), false);
    pollster::block_on(m.read_logits(be, y.len())).iter().map(|v| v.to_bits()).collect()
}

/// Model A trains in batches of 8 and evaluates in batches of up to 30 (its eval copy);
/// model B holds 30 in one network. From the same initial values, through a training step,
/// their eval logits agree bit for bit, so A's copy reads the parameters and the running
/// statistics A's training updates.
fn eval_copy_matches(arch: &Arch) {
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let mut a = Model::new(&mut be, arch, Capacity::with_eval(8, 30), 7).unwrap();
    let mut b = Model::new(&mut be, arch, 30, 7).unwrap();
    assert_eq!((a.capacity, a.eval_capacity, b.eval_capacity), (8, 30, 30));
    assert_eq!(a.store.params.len(), b.store.params.len(), "the eval copy declared parameters of its own");
    assert_eq!(a.store.entries.len(), b.store.entries.len(), "the eval copy declared state_dict entries of its own");
    let seed = common::base_seed();
    let mut rng = Rng::new(seed);
    let (x, y) = random_batch(&mut rng, arch, 30);
    assert_eq!(eval_logits(&mut be, &mut a, &x, &y), eval_logits(&mut be, &mut b, &x, &y), "{} before training (seed {seed})", arch.name);
    let (tx, ty) = random_batch(&mut rng, arch, 8);
    for m in [&mut a, &mut b] {
        m.set_batch(&mut be, &tx, &ty);
        m.train_step(&mut be, 8, &AdamConfig::default());
    }
    let (la, lb) = (eval_logits(&mut be, &mut a, &x, &y), eval_logits(&mut be, &mut b, &x, &y));
    assert_eq!(la, lb, "{} after a training step (seed {seed})", arch.name);
    let mut fresh = Model::new(&mut be, arch, 30, 7).unwrap();
    assert_ne!(la, eval_logits(&mut be, &mut fresh, &x, &y), "the step changed nothing");
}

#[test]
fn lenet5_eval_copy_shares_the_trained_state() {
    eval_copy_matches(&zoo::lenet5());
}

#[test]
fn tied_eval_copy_shares_the_trained_state() {
    eval_copy_matches(&zoo::tied());
}

#[test]
fn the_eval_batch_is_the_largest_that_fits() {
    let arch = zoo::lenet5();
    let roomy = Budget::Device { name: "roomy".into(), binding: 1 << 30, buffer: 1 << 30, align: 256 };
    assert_eq!(sizer::eval_batch(&arch, 100, &roomy, &[]).unwrap(), EVAL_BATCH);
    assert_eq!(sizer::eval_batch(&arch, 2000, &roomy, &[]).unwrap(), 2000, "never below the training batch");
    // A per-buffer limit between what eval batches of 300 and of 1000 need.
    let largest = |e: usize| *sizer::footprint(&arch, Capacity::with_eval(100, e), 256).unwrap().iter().max().unwrap();
    let limit = (largest(300) + largest(1000)) / 2;
    let tight = Budget::Device { name: "tight".into(), binding: limit, buffer: limit, align: 256 };
    let e = sizer::eval_batch(&arch, 100, &tight, &[]).unwrap();
    assert!((300..1000).contains(&e), "eval batch {e}");
    assert!(largest(e) <= limit && largest(e + 1) > limit, "{e} is not the largest that fits {limit} bytes");
}
