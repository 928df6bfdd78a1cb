//! `wgsl-cnn summary`: a model's layers with their output shapes and its parameter table.

use super::state::{parameter_specs, state_dict_specs};
use super::Arch;
use crate::text::thousands;

pub fn summary(arch: &Arch) -> String {
    let mut s = format!("{} — {}\n", arch.name, arch.title);
    s.push_str(&format!("  {:<16} {:<44} {}\n", "input", "pixels / 255", arch.input));
    let mut leaves = Vec::new();
    arch.spec.leaves("", arch.input, &mut leaves).expect("the zoo's models build");
    for (path, spec, x, _) in leaves {
        let y = spec.output(&path, x).expect("the zoo's models build");
        s.push_str(&format!("  {:<16} {:<44} {y}\n", path, spec.describe()));
    }
    s.push_str(&format!("  {:<16} CrossEntropyLoss (mean over the batch)\n", "loss"));
    s.push('\n');
    s.push_str(&format!("{:<22} {:<16} {:>9}\n", "parameter", "shape", "count"));
    let params = parameter_specs(arch);
    let mut total = 0;
    for p in &params {
        let count: usize = p.shape.iter().product();
        total += count;
        s.push_str(&format!("{:<22} {:<16} {:>9}\n", p.name, format!("{:?}", p.shape), thousands(count as u64)));
    }
    let buffers: Vec<String> =
        state_dict_specs(arch).into_iter().filter(|e| !params.iter().any(|p| p.name == e.name)).map(|e| e.name).collect();
    s.push_str(&format!("{:<22} {:<16} {:>9}\n", "total", "", thousands(total as u64)));
    if !buffers.is_empty() {
        s.push_str(&format!("\nbuffers (state_dict, not trained): {}\n", buffers.join(", ")));
    }
    s
}

