//! naga's translation of one entry point to each backend's language, set up as wgpu 30's
//! backends do (one entry point per module, unused globals dropped, workgroup memory not
//! zeroed, bounds checks on). tests/portability.rs translates every kernel with it;
//! `examples/translate.rs` writes the output for the external compilers (spirv-val,
//! glslang, FXC/DXC under wine, Dawn): see scripts/portability.sh. Kernels that use
//! subgroups go only to the targets whose wgpu backend can offer them (`targets`).

use anyhow::{anyhow, Result};
use naga::back::{glsl, hlsl, msl, spv};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};

use super::kernels::Parsed;

/// A backend language and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// SPIR-V 1.0 (Vulkan); 1.3, the first with subgroup operations, for kernels using them.
    Spirv,
    /// Metal Shading Language (major, minor).
    Msl(u8, u8),
    /// HLSL shader model 5.1 (FXC) or 6.0 (DXC).
    Hlsl51,
    Hlsl60,
    /// GLSL ES 3.10 (the GLES backend) and desktop GLSL 4.30.
    GlslEs310,
    Glsl430,
}

/// Every target the checks cover.
pub const TARGETS: &[Target] =
    &[Target::Spirv, Target::Msl(2, 0), Target::Msl(2, 4), Target::Msl(3, 0), Target::Hlsl51, Target::Hlsl60, Target::GlslEs310, Target::Glsl430];

/// The targets of kernels that use subgroups: wgpu offers `Features::SUBGROUP` on Vulkan
/// (SPIR-V 1.3 or later), on Metal GPUs with SIMD-scoped operations (Metal 3, Mac2, Apple7:
/// MSL 2.4 and 3.0 here) and on DX12 with shader model 6.0 (DXC); never on GL, and FXC's
/// SM 5.1 has no wave operations.
pub const SUBGROUP_TARGETS: &[Target] = &[Target::Spirv, Target::Msl(2, 4), Target::Msl(3, 0), Target::Hlsl60];

/// The targets a module's kernels are translated to: `TARGETS`, or `SUBGROUP_TARGETS` for
/// one that uses subgroups.
pub fn targets(p: &Parsed) -> &'static [Target] {
    if p.subgroups {
        SUBGROUP_TARGETS
    } else {
        TARGETS
    }
}

impl Target {
    /// A short name, also the file extension the example writes.
    pub fn name(self) -> String {
        match self {
            Target::Spirv => "spv".into(),
            Target::Msl(a, b) => format!("msl{a}{b}.metal"),
            Target::Hlsl51 => "sm51.hlsl".into(),
            Target::Hlsl60 => "sm60.hlsl".into(),
            Target::GlslEs310 => "es310.comp".into(),
            Target::Glsl430 => "gl430.comp".into(),
        }
    }
}

/// A translation: SPIR-V words or source text.
pub enum Output {
    Words(Vec<u32>),
    Text(String),
}

/// A translation and the name its entry point got: naga's HLSL and MSL writers rename
/// names ending in a digit (`relu_forward4` becomes `relu_forward4_`), and wgpu passes the
/// renamed one to FXC/DXC; GLSL's is `main`.
pub struct Translation {
    pub output: Output,
    pub entry: String,
}

impl Output {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Output::Words(w) => w.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Output::Text(t) => t.clone().into_bytes(),
        }
    }
}

fn policies() -> BoundsCheckPolicies {
    BoundsCheckPolicies {
        index: BoundsCheckPolicy::Restrict,
        buffer: BoundsCheckPolicy::Restrict,
        image_load: BoundsCheckPolicy::Restrict,
        binding_array: BoundsCheckPolicy::Restrict,
    }
}

/// The module cut down to entry point `entry` and what it uses, re-validated.
pub fn single_entry(p: &Parsed, entry: &str) -> Result<Parsed> {
    let mut module = p.module.clone();
    module.entry_points.retain(|e| e.name == entry);
    if module.entry_points.is_empty() {
        return Err(anyhow!("no entry point {entry}"));
    }
    naga::compact::compact(&mut module, naga::compact::KeepUnused::No);
    let info = super::kernels::validator(p.subgroups).validate(&module).map_err(|e| anyhow!("{entry} after compaction: {e}"))?;
    Ok(Parsed { module, info, subgroups: p.subgroups })
}

/// Translates entry point `entry` of `p` to `t`.
pub fn translate(p: &Parsed, entry: &str, t: Target) -> Result<Translation> {
    let one = single_entry(p, entry)?;
    let (m, info) = (&one.module, &one.info);
    let stage = naga::ShaderStage::Compute;
    let err = |e: &dyn std::fmt::Display| anyhow!("{entry} → {}: {e}", t.name());
    match t {
        Target::Spirv => {
            let opts = spv::Options {
                lang_version: if one.subgroups { (1, 3) } else { (1, 0) },
                bounds_check_policies: policies(),
                zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::None,
                ..Default::default()
            };
            let po = spv::PipelineOptions { shader_stage: stage, entry_point: entry.into() };
            let words = spv::write_vec(m, info, &opts, Some(&po)).map_err(|e| err(&e))?;
            Ok(Translation { output: Output::Words(words), entry: entry.into() })
        }
        Target::Msl(major, minor) => {
            let opts = msl::Options {
                lang_version: (major, minor),
                bounds_check_policies: policies(),
                zero_initialize_workgroup_memory: false,
                ..Default::default()
            };
            let po = msl::PipelineOptions { entry_point: Some((stage, entry.into())), ..Default::default() };
            let (s, ti) = msl::write_string(m, info, &opts, &po).map_err(|e| err(&e))?;
            let name = ti.entry_point_names.into_iter().next().ok_or_else(|| err(&"no entry point written"))?;
            Ok(Translation { output: Output::Text(s), entry: name.map_err(|e| err(&e))? })
        }
        Target::Hlsl51 | Target::Hlsl60 => {
            let opts = hlsl::Options {
                shader_model: if t == Target::Hlsl51 { hlsl::ShaderModel::V5_1 } else { hlsl::ShaderModel::V6_0 },
                // num_workgroups comes from root constants, as wgpu binds them (space 1 is free)
                special_constants_binding: Some(hlsl::BindTarget { space: 1, register: 0, ..Default::default() }),
                zero_initialize_workgroup_memory: false,
                restrict_indexing: true,
                force_loop_bounding: true,
                ..Default::default()
            };
            let po = hlsl::PipelineOptions { entry_point: Some((stage, entry.into())) };
            let mut s = String::new();
            let ri = hlsl::Writer::new(&mut s, &opts, &po).write(m, info, None).map_err(|e| err(&e))?;
            let name = ri.entry_point_names.into_iter().next().ok_or_else(|| err(&"no entry point written"))?;
            Ok(Translation { output: Output::Text(s), entry: name.map_err(|e| err(&e))? })
        }
        Target::GlslEs310 | Target::Glsl430 => {
            let version = if t == Target::GlslEs310 {
                glsl::Version::Embedded { version: 310, is_webgl: false }
            } else {
                glsl::Version::Desktop(430)
            };
            let opts = glsl::Options { version, zero_initialize_workgroup_memory: false, ..Default::default() };
            let po = glsl::PipelineOptions { shader_stage: stage, entry_point: entry.into(), multiview: None };
            let mut s = String::new();
            glsl::Writer::new(&mut s, m, info, &opts, &po, policies()).and_then(|mut w| w.write()).map_err(|e| err(&e))?;
            Ok(Translation { output: Output::Text(s), entry: "main".into() })
        }
    }
}
