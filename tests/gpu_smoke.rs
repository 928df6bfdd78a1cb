//! wgpu finds an adapter (lavapipe in CI) and runs a WGSL compute shader correctly.
//! With no adapter this test fails with instructions; it never skips.

use wgsl_cnn::gpu::{smoke, AdapterChoice, GpuContext};

#[test]
fn runs_a_compute_shader_and_reads_back() {
    let ctx = GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("adapter: {}", wgsl_cnn::gpu::context::describe(&ctx.info));
    let n = 1000;
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let (ab, out) = (ctx.buffer(n), ctx.buffer(n));
    ctx.write(&ab, &a);
    ctx.write(&out, &vec![f32::NAN; n]);
    smoke::scale_add_index(&ctx, &ab, 3.0, &out);
    let got: Vec<f32> = ctx.read(&out);
    for i in 0..n {
        assert_eq!(got[i], a[i] * 3.0 + i as f32, "element {i}");
    }
}

/// A write lands after the work recorded before it: a queued buffer write would otherwise
/// reach the device before the unsubmitted dispatch that reads the old data.
#[test]
fn a_write_after_a_recorded_dispatch_does_not_reach_it() {
    let ctx = GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let n = 100;
    let old: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let (ab, out) = (ctx.buffer(n), ctx.buffer(n));
    ctx.write(&ab, &old);
    smoke::scale_add_index(&ctx, &ab, 3.0, &out);
    ctx.write(&ab, &vec![-1.0f32; n]); // after the dispatch in program order
    let got: Vec<f32> = ctx.read(&out);
    for i in 0..n {
        assert_eq!(got[i], old[i] * 3.0 + i as f32, "element {i} saw the later write");
    }
}
