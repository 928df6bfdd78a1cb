//! The least host time wgpu needs for a step of N dependent dispatches on this adapter:
//! the same shape of work as a training step (one compute pass, one pipeline and one cached
//! bind group per dispatch, each bind group with its own uniform block and `buffers`
//! storage buffers, each dispatch reading what the ones before it wrote, so that every
//! dispatch needs a barrier), but a kernel that does almost nothing and no layer code.
//! Compare with `host_path`, which times the real LeNet-5 step the same way:
//!
//!     cargo run --release --example host_floor [dispatches] [buffers] [steps] [evict_mib]
//!
//! Defaults: 27 dispatches (a LeNet-5 training step), 4 storage buffers, 300 steps, and no
//! eviction. `evict_mib` > 0 reads that many MiB before each step, evicting the host's
//! caches as a software device (lavapipe) does when it runs a real step's work on the same
//! cores between two steps; 8 or more puts wgpu's own encoding in that state. For 1
//! dispatch and for `dispatches`, prints the median and minimum µs of recording and of
//! submitting (encoder finish + queue submit), with the device idle before each step, on
//! the host clock (`bench::host_clock`: the thread's CPU time) and on the wall clock.

use wgsl_cnn::backend::Backend;
use wgsl_cnn::bench::host_clock::StepTimes;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes one element per invocation from the inputs: the least work that still makes
/// each dispatch depend on the ones before it.
fn kernel(buffers: usize) -> String {
    let mut s = String::from("@group(0) @binding(0) var<uniform> p: vec4<u32>;\n");
    for i in 1..buffers {
        s += &format!("@group(0) @binding({i}) var<storage, read> in{i}: array<f32>;\n");
    }
    s += &format!("@group(0) @binding({buffers}) var<storage, read_write> out: array<f32>;\n");
    s += "@compute @workgroup_size(64)\nfn main(@builtin(global_invocation_id) g: vec3<u32>) {\n";
    s += "    if g.x < p.x {\n        var v = f32(g.x);\n";
    for i in 1..buffers {
        s += &format!("        v += in{i}[g.x];\n");
    }
    s += "        out[g.x] = v;\n    }\n}\n";
    s
}

struct Floor {
    /// One per dispatch (a training step's kernels are mostly different ones), all alike.
    pipelines: Vec<wgpu::ComputePipeline>,
    bind_groups: Vec<wgpu::BindGroup>,
}

/// `dispatches` pipelines and bind groups over a ring of `buffers + 1` storage buffers:
/// dispatch i writes buffer i mod ring and reads the ones the dispatches before it wrote.
fn build(dev: &wgpu::Device, dispatches: usize, buffers: usize) -> Floor {
    const LEN: u64 = 256;
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("host_floor"),
        source: wgpu::ShaderSource::Wgsl(kernel(buffers).into()),
    });
    let pipelines: Vec<_> = (0..dispatches)
        .map(|_| {
            dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("host_floor"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        })
        .collect();
    let ring: Vec<wgpu::Buffer> = (0..=buffers)
        .map(|_| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: LEN * 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })
        .collect();
    let n = ring.len();
    let bind_groups = (0..dispatches)
        .map(|i| {
            let uniform = wgpu::util::DeviceExt::create_buffer_init(
                dev,
                &wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(&[LEN as u32, 0, 0, 0]),
                    usage: wgpu::BufferUsages::UNIFORM,
                },
            );
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            for b in 1..buffers {
                entries.push(wgpu::BindGroupEntry { binding: b as u32, resource: ring[(i + n - b) % n].as_entire_binding() });
            }
            entries.push(wgpu::BindGroupEntry { binding: buffers as u32, resource: ring[i % n].as_entire_binding() });
            let layout = pipelines[i].get_bind_group_layout(0);
            dev.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries })
        })
        .collect();
    Floor { pipelines, bind_groups }
}

/// Records and submits one step of `f`'s dispatches. Not inlined, so that a profiler can
/// be told to count only these calls.
#[inline(never)]
fn step(dev: &wgpu::Device, queue: &wgpu::Queue, f: &Floor) -> StepTimes {
    StepTimes::measure(
        &mut (),
        |_| {
            let mut enc = dev.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for (p, bg) in f.pipelines.iter().zip(&f.bind_groups) {
                    pass.set_pipeline(p);
                    pass.set_bind_group(0, bg, &[]);
                    pass.dispatch_workgroups(4, 1, 1);
                }
            }
            enc
        },
        |_, enc| {
            queue.submit([enc.finish()]);
        },
    )
}

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).map(|a| a.parse().expect("arguments are numbers")).unwrap_or(default);
    let (dispatches, buffers, steps, evict_mib) = (arg(1, 27), arg(2, 4).max(1), arg(3, 300).max(1), arg(4, 0));
    let evict: Vec<u8> = (0..evict_mib << 20).map(|i| i as u8).collect();
    let be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("adapter: {}", be.name());
    let (dev, queue) = (&be.ctx.device, &be.ctx.queue);
    for n in [1, dispatches] {
        let f = build(dev, n, buffers);
        let mut t = Vec::new();
        for i in 0..steps + 10 {
            dev.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while waiting");
            // One read per cache line.
            std::hint::black_box(evict.iter().step_by(64).fold(0u8, |a, &b| a.wrapping_add(b)));
            let s = step(dev, queue, &f);
            if i >= 10 {
                t.push(s);
            }
        }
        dev.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while waiting");
        let evicted = if evict_mib > 0 { format!(", {evict_mib} MiB read before each step") } else { String::new() };
        println!("{n} dispatches, each with a uniform block and {buffers} storage buffers{evicted}:");
        print!("{}", StepTimes::summary(&t, "  "));
    }
}
