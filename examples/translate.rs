//! Writes naga's translation of every kernel's entry point to every target into a folder, for
//! the external compilers of scripts/portability.sh:
//!   <dir>/<file>.<entry>.<target>   (e.g. conv2d.conv_forward_direct.sm51.hlsl)
//!   <dir>/<file>.wgsl               (the module as the program builds it, for Dawn)
//!   <dir>/kernels.tsv               (file, entry, storage bindings as r/w letters, the
//!                                    entry point's name in the HLSL naga wrote, and
//!                                    "subgroups" or "core": which targets it went to)
//! Usage: cargo run --release --example translate -- <dir>

use anyhow::{Context, Result};
use wgsl_cnn::gpu::context::{shader_source, Access};
use wgsl_cnn::gpu::kernels::{all_kernels, parse, SHADER_FILES};
use wgsl_cnn::gpu::translate::{targets, translate, Target};

fn main() -> Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).context("usage: translate <dir>")?);
    std::fs::create_dir_all(&dir)?;
    let mut tsv = String::new();
    let mut n = 0;
    for file in SHADER_FILES {
        std::fs::write(dir.join(format!("{file}.wgsl")), shader_source(file)?)?;
        let p = parse(file)?;
        for k in all_kernels().into_iter().filter(|k| k.file == *file) {
            let rw: String = k.bindings.iter().map(|a| if *a == Access::Read { 'r' } else { 'w' }).collect();
            let mut hlsl_entry = String::new();
            for t in targets(&p) {
                let tr = translate(&p, k.entry, *t)?;
                std::fs::write(dir.join(format!("{}.{}.{}", k.file, k.entry, t.name())), tr.output.bytes())?;
                if *t == Target::Hlsl60 {
                    hlsl_entry = tr.entry;
                }
                n += 1;
            }
            let kind = if p.subgroups { "subgroups" } else { "core" };
            tsv.push_str(&format!("{}\t{}\t{rw}\t{hlsl_entry}\t{kind}\n", k.file, k.entry));
        }
    }
    std::fs::write(dir.join("kernels.tsv"), tsv)?;
    println!("wrote {n} translations to {}", dir.display());
    Ok(())
}
