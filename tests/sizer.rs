//! Issue 10: a batch is checked against the device's buffer limits (or the host's memory)
//! before anything is allocated, and the message says the largest batch that fits.

use wgsl_cnn::backend::Backend;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::{zoo, Model};
use wgsl_cnn::nn::sizer::{check_batch, footprint, Budget};
use wgsl_cnn::shapes::AdamConfig;

/// lavapipe's limits: 128 MiB per binding, 256 MiB per buffer (alignment 16 bytes).
fn lavapipe_like() -> Budget {
    Budget::Device { name: "lavapipe-like".into(), binding: 128 << 20, buffer: 256 << 20, align: 4 }
}

#[test]
fn lenet5_fits_2912_but_not_2913_per_128_mib_binding() {
    // conv1's output (and its gradient) is 20·24·24 floats per image: 2912 · 46,080 bytes
    // fit in 128 MiB, 2913 do not (the batch at which wgpu used to panic on lavapipe).
    check_batch(&zoo::lenet5(), 2912, &lavapipe_like(), &[], "--batch-size").unwrap();
    let msg = format!("{:#}", check_batch(&zoo::lenet5(), 2913, &lavapipe_like(), &[], "--batch-size").unwrap_err());
    assert!(msg.contains("the largest that fits is --batch-size 2912") && msg.contains("max_storage_buffer_binding_size"), "{msg}");
    let msg = format!("{:#}", check_batch(&zoo::mlp(), 100_000, &lavapipe_like(), &[], "--batch").unwrap_err());
    assert!(msg.contains("--batch 100000 is too large for mlp"), "{msg}");
}

#[test]
fn a_data_set_over_the_limit_is_named() {
    let msg = format!("{:#}", check_batch(&zoo::mlp(), 10, &lavapipe_like(), &[300 << 20], "--batch-size").unwrap_err());
    assert!(msg.contains("the data set needs a buffer"), "{msg}");
}

#[test]
fn host_memory_bounds_cpu_batches() {
    let budget = Budget::Host { available: 1 << 30, what: "a test's limit".into() };
    let msg = format!("{:#}", check_batch(&zoo::lenet5(), 100_000, &budget, &[], "--batch-size").unwrap_err());
    assert!(msg.contains("of host memory") && msg.contains("a test's limit") && msg.contains("the largest that fits is --batch-size"), "{msg}");
    check_batch(&zoo::lenet5(), 100, &budget, &[], "--batch-size").unwrap();
    assert!(Budget::host().is_some(), "/proc/meminfo is readable on Linux");
}

#[test]
fn the_estimate_accounts_for_every_batch_dependent_gpu_buffer() {
    // What the GPU really allocates for a step and an eval, minus the estimate, is the same
    // at two batch sizes: only batch-independent scratch (a few KiB) is left out.
    let mut gaps = Vec::new();
    for arch in [zoo::lenet5(), zoo::tied()] {
        for n in [8, 40] {
            let be = &mut Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
            let before = be.allocated_bytes().unwrap();
            let mut model = Model::new(be, &arch, n, 0).unwrap();
            let perm_free = be.allocated_bytes().unwrap();
            model.train_step(be, n, &AdamConfig::default());
            model.eval_batch(be, n);
            be.submit();
            let real = be.allocated_bytes().unwrap() - before;
            let align = be.view_alignment();
            let estimate: u64 = footprint(&arch, n, align).unwrap().iter().sum();
            assert!(estimate <= real, "{} batch {n}: estimate {estimate} > real {real}", arch.name);
            gaps.push((arch.name.clone(), n, real - estimate, perm_free - before));
        }
    }
    for pair in gaps.chunks(2) {
        assert_eq!(pair[0].2, pair[1].2, "batch-dependent buffers missing from the estimate: {gaps:?}");
        assert!(pair[0].2 < 1 << 20, "{gaps:?}");
    }
}
