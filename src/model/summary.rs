//! `wgsl-cnn summary`: the architecture and the seed's parameter table.

use crate::model::params::{total_params, LENET5_PARAMS};

pub fn summary() -> String {
    let mut s = String::new();
    s.push_str("Lenet5 (the seed's PyTorch model)\n");
    for line in [
        "  input      [N, 1, 28, 28]   pixels / 255",
        "  conv1      Conv2d(1, 20, kernel_size=5)        -> [N, 20, 24, 24]",
        "  batchnorm1 BatchNorm2d(20, eps=1e-05, momentum=0.1)",
        "  maxpool    MaxPool2d(2)                         -> [N, 20, 12, 12]",
        "  relu",
        "  conv2      Conv2d(20, 50, kernel_size=5)       -> [N, 50, 8, 8]",
        "  batchnorm2 BatchNorm2d(50, eps=1e-05, momentum=0.1)",
        "  maxpool    MaxPool2d(2)                         -> [N, 50, 4, 4]",
        "  relu, flatten                                   -> [N, 800]",
        "  fc1        Linear(800, 500)                     -> [N, 500]",
        "  relu",
        "  fc2        Linear(500, 10)                      -> [N, 10]",
        "  loss       CrossEntropyLoss (mean over the batch)",
    ] {
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&format!("{:<20} {:<16} {:>9}\n", "parameter", "shape", "count"));
    for p in LENET5_PARAMS.iter() {
        s.push_str(&format!("{:<20} {:<16} {:>9}\n", p.name, format!("{:?}", p.shape), group(p.len())));
    }
    s.push_str(&format!("{:<20} {:<16} {:>9}\n", "total", "", group(total_params())));
    s.push_str("\nbuffers (state_dict, not trained): batchnorm{1,2}.running_mean, .running_var (f32),\n");
    s.push_str("  .num_batches_tracked (int64 scalar)\n");
    s
}

/// 431220 → "431,220".
pub fn group(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
