//! Every kernel in one list, what each needs of a device (read from the WGSL with naga, as
//! wgpu compiles it: one entry point at a time), and the check of those needs against an
//! adapter's limits, so that a weak adapter fails at start-up with the limit's name instead
//! of when some pipeline is first created.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};

use super::context::{shader_source, Kernel};
use super::{activation, adam, avgpool, batchnorm, conv2d, gather, matmul, maxpool, reduce, sgd, smoke};

/// The shader files (shaders/<file>.wgsl, without common.wgsl), in the order of `all_kernels`.
pub const SHADER_FILES: &[&str] =
    &["smoke", "activation", "maxpool", "avgpool", "batchnorm", "reduce", "adam", "sgd", "gather", "matmul", "matmul_subgroup", "conv2d", "conv2d_subgroup"];

/// Shader files whose kernels use subgroup builtins: they compile only on devices opened with
/// `Features::SUBGROUP`, and run only there (`GpuContext::has_subgroups`); elsewhere the
/// ops that offer them choose among their other kernels.
pub const SUBGROUP_FILES: &[&str] = &["matmul_subgroup", "conv2d_subgroup"];

/// Whether kernel `k` needs subgroups (see `SUBGROUP_FILES`).
pub fn needs_subgroups(k: &Kernel) -> bool {
    uses_subgroups(k.file)
}

/// Whether shader file `file` uses subgroup builtins.
pub fn uses_subgroups(file: &str) -> bool {
    SUBGROUP_FILES.contains(&file)
}

/// Every kernel the program can dispatch; a test checks that it names every entry point.
pub fn all_kernels() -> Vec<&'static Kernel> {
    [
        smoke::KERNELS,
        activation::KERNELS,
        maxpool::KERNELS,
        avgpool::KERNELS,
        batchnorm::KERNELS,
        reduce::KERNELS,
        adam::KERNELS,
        sgd::KERNELS,
        gather::KERNELS,
        matmul::KERNELS,
        conv2d::KERNELS,
    ]
    .concat()
}

/// What one entry point needs of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Storage buffers in its bind group layout (`Kernel::bindings`).
    pub storage_buffers: u32,
    pub workgroup_size: [u32; 3],
    /// Bytes of the workgroup variables it uses, each rounded up to 16 as WebGPU counts them.
    pub workgroup_bytes: u32,
}

impl Needs {
    pub fn invocations(&self) -> u32 {
        self.workgroup_size.iter().product()
    }
}

/// A parsed and validated shader file.
pub struct Parsed {
    pub module: naga::Module,
    pub info: naga::valid::ModuleInfo,
    /// Whether it uses subgroups (validated as on a device that has them).
    pub subgroups: bool,
}

/// Parses and validates `shader_source(file)` as wgpu's front end does (on a device with
/// subgroups for `SUBGROUP_FILES`, on any device for the others).
pub fn parse(file: &str) -> Result<Parsed> {
    let src = shader_source(file)?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| anyhow!("{file}.wgsl: {}", e.emit_to_string(&src)))?;
    let subgroups = uses_subgroups(file);
    let info = validator(subgroups).validate(&module).map_err(|e| anyhow!("{file}.wgsl: {}", e.emit_to_string(&src)))?;
    Ok(Parsed { module, info, subgroups })
}

/// naga's validator as wgpu sets it up for a compute shader, with or without subgroups.
pub fn validator(subgroups: bool) -> naga::valid::Validator {
    use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator};
    if !subgroups {
        return Validator::new(ValidationFlags::all(), Capabilities::empty());
    }
    let mut v = Validator::new(ValidationFlags::all(), Capabilities::SUBGROUP);
    v.subgroup_stages(ShaderStages::COMPUTE).subgroup_operations(SubgroupOperationSet::all());
    v
}

impl Parsed {
    /// The index of entry point `entry`.
    pub fn entry_index(&self, entry: &str) -> Result<usize> {
        self.module.entry_points.iter().position(|e| e.name == entry).ok_or_else(|| anyhow!("no entry point {entry}"))
    }

    /// The globals entry point `ep` uses (what a per-entry-point translation keeps).
    pub fn used_globals(&self, ep: usize) -> impl Iterator<Item = (naga::Handle<naga::GlobalVariable>, &naga::GlobalVariable)> {
        let fi = self.info.get_entry_point(ep);
        self.module.global_variables.iter().filter(move |(h, _)| !fi[*h].is_empty())
    }

    pub fn needs(&self, k: &Kernel) -> Result<Needs> {
        let ep = self.entry_index(k.entry)?;
        let workgroup_bytes = self
            .used_globals(ep)
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| self.module.types[g.ty].inner.size(self.module.to_ctx()).next_multiple_of(16))
            .sum();
        Ok(Needs {
            storage_buffers: k.bindings.len() as u32,
            workgroup_size: self.module.entry_points[ep].workgroup_size,
            workgroup_bytes,
        })
    }
}

/// The needs of every kernel, computed once per process.
pub fn all_needs() -> &'static [(&'static Kernel, Needs)] {
    static NEEDS: OnceLock<Vec<(&'static Kernel, Needs)>> = OnceLock::new();
    NEEDS.get_or_init(|| {
        let mut parsed = HashMap::new();
        all_kernels()
            .into_iter()
            .map(|k| {
                let p = parsed.entry(k.file).or_insert_with(|| parse(k.file).expect("the shaders parse"));
                let n = p.needs(k).with_context(|| format!("{}.wgsl", k.file)).expect("every kernel names an entry point");
                (k, n)
            })
            .collect()
    })
}

/// Why kernel `k` with needs `n` does not fit `limits`: one line per limit it exceeds, each
/// naming the limit as wgpu::Limits spells it.
pub fn misfits(k: &Kernel, n: &Needs, limits: &wgpu::Limits) -> Vec<String> {
    let checks: [(&str, u64, u64); 7] = [
        ("max_storage_buffers_per_shader_stage", n.storage_buffers.into(), limits.max_storage_buffers_per_shader_stage.into()),
        ("max_bindings_per_bind_group", (n.storage_buffers + 1).into(), limits.max_bindings_per_bind_group.into()),
        ("max_compute_invocations_per_workgroup", n.invocations().into(), limits.max_compute_invocations_per_workgroup.into()),
        ("max_compute_workgroup_size_x", n.workgroup_size[0].into(), limits.max_compute_workgroup_size_x.into()),
        ("max_compute_workgroup_size_y", n.workgroup_size[1].into(), limits.max_compute_workgroup_size_y.into()),
        ("max_compute_workgroup_size_z", n.workgroup_size[2].into(), limits.max_compute_workgroup_size_z.into()),
        ("max_compute_workgroup_storage_size", n.workgroup_bytes.into(), limits.max_compute_workgroup_storage_size.into()),
    ];
    checks
        .iter()
        .filter(|(_, need, have)| need > have)
        .map(|(limit, need, have)| format!("{}.wgsl {} needs {limit} ≥ {need}, the adapter offers {have}", k.file, k.entry))
        .collect()
}

/// Fit of every kernel: (misfits of kernels without a fallback, kernels that will fall back;
/// a device keeps the latter for `GpuContext::fits`, and a kernel with a fallback runs only
/// where it fits).
pub fn check(limits: &wgpu::Limits) -> (Vec<String>, Vec<&'static Kernel>) {
    let mut fatal = Vec::new();
    let mut fallback = Vec::new();
    for (k, n) in all_needs() {
        let m = misfits(k, n, limits);
        if m.is_empty() {
            continue;
        }
        if matmul::has_fallback(k) || conv2d::has_fallback(k) || needs_subgroups(k) {
            fallback.push(*k);
        } else {
            fatal.extend(m);
        }
    }
    (fatal, fallback)
}

/// One line on whether every kernel fits an adapter offering `adapter` (see `adapters`).
pub fn fit_report(adapter: &wgpu::Limits) -> String {
    let (fatal, fallback) = check(&super::context::device_limits(adapter));
    let n = all_kernels().len();
    if !fatal.is_empty() {
        format!("kernels: NOT all fit its limits:\n    {}", fatal.join("\n    "))
    } else if fallback.is_empty() {
        format!("kernels: all {n} fit its limits")
    } else {
        let names: Vec<&str> = fallback.iter().map(|k| k.entry).collect();
        format!("kernels: all {n} needed fit its limits; {} fall back to the register-blocked kernels", names.join(", "))
    }
}
