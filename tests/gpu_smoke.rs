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

/// `read_soon` takes the values as the work recorded before it leaves them, whatever comes
/// after; several reads can be in flight, be finished in any order, and their staging
/// buffers are reused; a read not waited for arrives once the device is idle.
#[test]
fn reads_in_flight_see_the_work_recorded_before_them() {
    use wgsl_cnn::backend::Backend;
    let be = &mut wgsl_cnn::gpu::Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let n = 37;
    let (x, y, idx) = (be.tensor(n), be.tensor(n), be.index(3));
    let base: Vec<f32> = (0..n).map(|i| i as f32 - 3.25).collect();
    be.write(&x, &base);
    be.write_index(&idx, &[7, 0, 9]);
    let mut reads = Vec::new();
    for round in 0..3u32 {
        // y = 3·x + i (recorded, not submitted), then a read of y, then x changes.
        smoke::scale_add_index(&be.ctx, &x, 3.0, &y);
        reads.push((round, be.read_soon(&y, &idx)));
        be.write(&x, &base.iter().map(|v| v + (round + 1) as f32).collect::<Vec<_>>());
        be.write_index(&idx, &[7 + round + 1, 0, 9]);
    }
    // Newest first, waiting; then the rest after the device is idle, without waiting.
    let (last_round, last) = reads.pop().unwrap();
    let got = pollster::block_on(be.wait_read(&last));
    let check = |round: u32, (f, u): (Vec<f32>, Vec<u32>)| {
        assert_eq!(u, [7 + round, 0, 9], "round {round}");
        for (i, v) in f.iter().enumerate() {
            assert_eq!(*v, (base[i] + round as f32) * 3.0 + i as f32, "round {round}, element {i}");
        }
    };
    check(last_round, got);
    be.ctx.finish();
    for (round, r) in reads {
        check(round, be.try_read(&r).expect("the device is idle: the read has arrived"));
    }
    // A fourth read, after the three were taken, sees the last x.
    smoke::scale_add_index(&be.ctx, &x, 3.0, &y);
    let r = be.read_soon(&y, &idx);
    check(3, pollster::block_on(be.wait_read(&r)));
}
