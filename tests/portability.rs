//! Portability checks that need no GPU: every entry point is a listed kernel whose bindings
//! match the shader, naga translates each one to every backend's language as wgpu does, the
//! names DXC rejects are absent, workgroup memory is only used by reviewed kernels, and the
//! start-up limit check names the limit a weak adapter lacks. The external compilers (FXC,
//! DXC, Dawn, spirv-val, glslang) run in scripts/portability.sh.

use std::collections::BTreeSet;

use wgsl_cnn::gpu::context::{shader_base, Access};
use wgsl_cnn::gpu::kernels::{all_kernels, all_needs, check, misfits, parse, SHADER_FILES};
use wgsl_cnn::gpu::kernels::{needs_subgroups, SUBGROUP_FILES};
use wgsl_cnn::gpu::translate::{targets, translate, SUBGROUP_TARGETS, TARGETS};

#[test]
fn every_entry_point_is_a_listed_kernel() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".wgsl").to_string())
        .filter(|f| f != "common")
        .collect();
    let listed: BTreeSet<String> = SHADER_FILES.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, listed, "shaders/ and kernels::SHADER_FILES differ");
    let kernels: BTreeSet<(String, String)> = all_kernels().iter().map(|k| (k.file.into(), k.entry.into())).collect();
    assert_eq!(kernels.len(), all_kernels().len(), "a kernel is listed twice");
    // A file built on another (`shader_base`) also holds that one's entry points.
    let names = |f: &str| -> BTreeSet<String> { parse(f).unwrap().module.entry_points.iter().map(|e| e.name.clone()).collect() };
    let mut entries = BTreeSet::new();
    for f in SHADER_FILES {
        let base = shader_base(f).map(names).unwrap_or_default();
        for e in names(f).difference(&base) {
            entries.insert((f.to_string(), e.clone()));
        }
    }
    assert_eq!(entries, kernels, "entry points without a kernel static in KERNELS, or the reverse");
}

#[test]
fn bindings_match_the_shaders() {
    for f in SHADER_FILES {
        let p = parse(f).unwrap();
        for k in all_kernels().into_iter().filter(|k| k.file == *f) {
            let ep = p.entry_index(k.entry).unwrap();
            for (_, g) in p.used_globals(ep) {
                let Some(rb) = &g.binding else { continue };
                let name = format!("{f}.wgsl {} uses {:?}", k.entry, g.name);
                assert_eq!(rb.group, 0, "{name}: only group 0 is bound");
                match g.space {
                    naga::AddressSpace::Uniform => assert_eq!(rb.binding, 0, "{name}: the uniform block is binding 0"),
                    naga::AddressSpace::Storage { access } => {
                        let i = rb.binding as usize;
                        assert!(i >= 1 && i <= k.bindings.len(), "{name}: binding {i} is not in the kernel's layout");
                        let want = if access.contains(naga::StorageAccess::STORE) { Access::ReadWrite } else { Access::Read };
                        assert_eq!(k.bindings[i - 1], want, "{name}: binding {i} access differs from the layout");
                    }
                    other => panic!("{name}: unexpected address space {other:?}"),
                }
            }
        }
    }
}

/// Kernels that use workgroup memory, each reviewed to write every element it reads before
/// the barrier that precedes the read (pipelines are created without zeroing it):
/// - batchnorm stats*/backward_reduce* (backward_reduce_pooled too): red_a[li] and
///   red_b[li] are written by every invocation (li < WG, the workgroup size) before
///   tree_sum2's first barrier;
/// - reduce softmax_cross_entropy / count_correct: partial[li], partial_u[li] likewise;
/// - matmul_tiled_*: each k-slice writes all 1,024 staged values (e = li + 256·r, r < 4)
///   before its barrier; the 4 padding columns of each 68-wide row are never read;
/// - conv2d conv_*_tiled (conv_gemm): likewise, A's slice at (e % 16, e / 16) and B's at
///   (e / 64, e % 64) or, for the weight gradient, (e % 16, e / 16): all 64 × 16 of each.
const REVIEWED_WORKGROUP_USERS: &[&str] = &[
    "batchnorm.stats",
    "batchnorm.stats4",
    "batchnorm.backward_reduce",
    "batchnorm.backward_reduce4",
    "batchnorm.backward_reduce_pooled",
    "reduce.softmax_cross_entropy",
    "reduce.count_correct",
    "matmul.matmul_tiled_nn",
    "matmul.matmul_tiled_nt",
    "matmul.matmul_tiled_tn",
    "matmul.matmul_tiled_tt",
    "conv2d.conv_forward_tiled",
    "conv2d.conv_grad_input_tiled",
    "conv2d.conv_grad_weight_tiled",
];

#[test]
fn only_reviewed_kernels_use_workgroup_memory() {
    let users: BTreeSet<String> =
        all_needs().iter().filter(|(_, n)| n.workgroup_bytes > 0).map(|(k, _)| format!("{}.{}", k.file, k.entry)).collect();
    let reviewed: BTreeSet<String> = REVIEWED_WORKGROUP_USERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(users, reviewed, "review a new workgroup-memory kernel for read-before-write, then list it");
}

/// Names naga passes through to HLSL unchanged that DXC rejects (`dx` is a namespace there).
const DXC_RESERVED: &[&str] = &["dx"];

#[test]
fn no_names_dxc_rejects() {
    for f in SHADER_FILES {
        let m = parse(f).unwrap().module;
        let mut names: Vec<String> = m.global_variables.iter().filter_map(|(_, g)| g.name.clone()).collect();
        names.extend(m.constants.iter().filter_map(|(_, c)| c.name.clone()));
        let funcs = m.functions.iter().map(|(_, f)| f).chain(m.entry_points.iter().map(|e| &e.function));
        for func in funcs {
            names.extend(func.name.clone());
            names.extend(func.arguments.iter().filter_map(|a| a.name.clone()));
            names.extend(func.local_variables.iter().filter_map(|(_, v)| v.name.clone()));
            names.extend(func.named_expressions.values().cloned());
        }
        for n in names {
            assert!(!DXC_RESERVED.contains(&n.as_str()), "{f}.wgsl names something {n:?}, which DXC rejects");
        }
    }
}

#[test]
fn every_entry_point_translates_to_every_target() {
    let mut n = 0;
    for f in SHADER_FILES {
        let p = parse(f).unwrap();
        for k in all_kernels().into_iter().filter(|k| k.file == *f) {
            for t in targets(&p) {
                if let Err(e) = translate(&p, k.entry, *t) {
                    panic!("{e:#}");
                }
                n += 1;
            }
        }
    }
    let with_subgroups = all_kernels().into_iter().filter(|k| needs_subgroups(k)).count();
    assert!(with_subgroups > 0, "the subgroup matmul is listed");
    assert_eq!(n, (all_kernels().len() - with_subgroups) * TARGETS.len() + with_subgroups * SUBGROUP_TARGETS.len());
}

/// Subgroup builtins appear only in `SUBGROUP_FILES`, which only devices with subgroups
/// compile: any other file using one would fail to build its module on every adapter without
/// them (GL, many mobile and older GPUs). Checked by validating each other file without the
/// capability (what `parse` does), and the subgroup files must fail that way.
#[test]
fn subgroups_only_where_declared() {
    for f in SHADER_FILES {
        let src = wgsl_cnn::gpu::context::shader_source(f).unwrap();
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        let without = wgsl_cnn::gpu::kernels::validator(false).validate(&module);
        if SUBGROUP_FILES.contains(f) {
            assert!(without.is_err(), "{f}.wgsl is listed as using subgroups but validates without them");
        } else {
            assert!(without.is_ok(), "{f}.wgsl: {:?}", without.err());
        }
    }
}

#[test]
fn limit_check_names_the_limit() {
    let (fatal, fallback) = check(&wgpu::Limits::default());
    assert!(fatal.is_empty() && fallback.is_empty(), "WebGPU's default limits fit every kernel: {fatal:?} {fallback:?}");
    // A GLES 3.1 device may offer 4 storage buffers per stage.
    let gles = wgpu::Limits { max_storage_buffers_per_shader_stage: 4, ..wgpu::Limits::default() };
    let (fatal, _) = check(&gles);
    assert!(
        fatal.iter().any(|m| m.contains("backward_dx ") && m.contains("max_storage_buffers_per_shader_stage ≥ 7")),
        "{fatal:?}"
    );
    // WebGPU compatibility mode: 128 invocations. Only the tiled matmul and conv2d kernels
    // need more; they fall back.
    let compat = wgpu::Limits { max_compute_invocations_per_workgroup: 128, ..wgpu::Limits::default() };
    let (fatal, fallback) = check(&compat);
    assert!(fatal.is_empty(), "{fatal:?}");
    let tiled = ["matmul_tiled_nn", "matmul_tiled_nt", "matmul_tiled_tn", "matmul_tiled_tt"];
    let fallback: Vec<&str> = fallback.iter().map(|k| k.entry).collect();
    assert_eq!(fallback, [&tiled[..], &["conv_forward_tiled", "conv_grad_input_tiled", "conv_grad_weight_tiled"]].concat());
    // Workgroup memory: the tiled matmul stages 2 × 1,088 floats.
    let (k, n) = all_needs().iter().find(|(k, _)| k.entry == "matmul_tiled_nn").unwrap();
    assert_eq!(n.workgroup_bytes, 2 * 1088 * 4);
    let small = wgpu::Limits { max_compute_workgroup_storage_size: 4096, ..wgpu::Limits::default() };
    assert!(misfits(k, n, &small)[0].contains("max_compute_workgroup_storage_size ≥ 8704"));
}
