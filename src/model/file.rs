//! Model files (`--model net.json`): a network declared as JSON whose layers read like
//! PyTorch's `nn.Sequential` repr. Each layer is an object with the attribute `name` (the
//! state_dict prefix of its parameters) and either a `layer`, written as PyTorch prints it,
//! or children: `layers` (a nested Sequential), or `repeat` with `block` and `layers` (a block
//! applied several times with one set of weights, as the seed's weight-tied `NN`):
//!
//! ```json
//! { "name": "lenet1998",
//!   "title": "LeNet-5 as LeCun et al. published it in 1998",
//!   "input": [1, 28, 28],
//!   "classes": 10,
//!   "layers": [
//!     { "name": "conv1", "layer": "Conv2d(1, 6, kernel_size=5, padding=2)" },
//!     { "name": "tanh1", "layer": "Tanh()" },
//!     { "name": "body", "repeat": 3, "block": "block", "layers": [ … ] } ] }
//! ```
//!
//! The layers: `Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0)`,
//! `BatchNorm2d(num_features)`, `MaxPool2d(kernel_size, stride=kernel_size)`,
//! `AvgPool2d(kernel_size, stride=kernel_size)`, `ReLU()`, `Tanh()`, `Sigmoid()`, `Flatten()`,
//! `Linear(in_features, out_features)`; arguments by position or by PyTorch's keyword.
//! `input` and `classes` may be left out (an MNIST image, 10 classes; `classes` is checked
//! against the data set's labels when training). The same JSON, written by `to_json`,
//! goes into every checkpoint's metadata (`architecture`), so that `eval`, `predict` and
//! `--resume` rebuild the network without the file.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use super::{Arch, CLASSES, IMAGE};
use crate::nn::{Feat, Spec};

/// The leaf layers a file may name, with their arguments in PyTorch's order.
const LAYERS: &[(&str, &[&str])] = &[
    ("Conv2d", &["in_channels", "out_channels", "kernel_size", "stride", "padding"]),
    ("BatchNorm2d", &["num_features", "eps", "momentum"]),
    ("MaxPool2d", &["kernel_size", "stride"]),
    ("AvgPool2d", &["kernel_size", "stride"]),
    ("ReLU", &[]),
    ("Tanh", &[]),
    ("Sigmoid", &[]),
    ("Flatten", &[]),
    ("Linear", &["in_features", "out_features"]),
];

/// Largest size any argument may have (far beyond what fits in memory, and small enough
/// that no shape arithmetic can overflow).
const MAX_SIZE: usize = 1 << 24;

/// Parses a model file's text. `origin` (the file name) starts every error message.
pub fn parse(text: &str, origin: &str) -> Result<Arch> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("{origin}: not valid JSON: {e}"))?;
    from_value(&v).with_context(|| origin.to_string())
}

/// Reads and parses a model file (see the module doc), and checks that its shapes fit.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(path: &std::path::Path) -> Result<Arch> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read model file {}", path.display()))?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        bail!("{}: a model file must be a regular file of at most 1 MiB", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read model file {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// The architecture from its JSON value, with every shape checked.
pub fn from_value(v: &Value) -> Result<Arch> {
    let o = v.as_object().ok_or_else(|| anyhow!("a model file is a JSON object with `name` and `layers`"))?;
    only_keys(o, &["name", "title", "input", "classes", "layers"], "the model")?;
    let name = o.get("name").and_then(Value::as_str).ok_or_else(|| anyhow!("the model needs a `name` (a string)"))?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("model name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'");
    }
    let title = match o.get("title") {
        None => format!("a model file's network ({name})"),
        Some(t) => t.as_str().ok_or_else(|| anyhow!("`title` must be a string"))?.to_string(),
    };
    let input = match o.get("input") {
        None => IMAGE,
        Some(i) => {
            let dims: Vec<usize> = i.as_array().map(|a| a.iter().filter_map(size).collect()).unwrap_or_default();
            match dims[..] {
                [c, h, w] if i.as_array().map(Vec::len) == Some(3) => Feat::image(c, h, w),
                _ => bail!("`input` must be [channels, height, width], each from 1 to {MAX_SIZE}"),
            }
        }
    };
    if input != IMAGE {
        bail!("`input` {input} is not what the data sets give (28 × 28 grey images: [1, 28, 28])");
    }
    let classes = match o.get("classes") {
        None => CLASSES,
        Some(c) => size(c).ok_or_else(|| anyhow!("`classes` must be a whole number from 1 to {MAX_SIZE}"))?,
    };
    let layers = o.get("layers").ok_or_else(|| anyhow!("the model needs `layers` (a list)"))?;
    let spec = sequential(layers, "")?;
    let arch = Arch { name: name.to_string(), title, input, classes, spec };
    check(&arch)?;
    Ok(arch)
}

/// That every layer takes what the one before gives, and the last gives one score per class.
pub fn check(arch: &Arch) -> Result<()> {
    let out = arch.spec.output("", arch.input)?;
    if out != Feat::flat(arch.classes) {
        let th = |n: usize| crate::text::thousands(n as u64);
        let last = last_leaf(&arch.spec).unwrap_or_else(|| "the model".into());
        bail!("the model has {} classes, but its last layer ({last}) gives {out}; it must give [N, {}]", th(arch.classes), arch.classes);
    }
    Ok(())
}

/// The path of the last leaf layer.
fn last_leaf(spec: &Spec) -> Option<String> {
    match spec {
        Spec::Sequential(children) => {
            let (name, child) = children.last()?;
            Some(match last_leaf(child) {
                Some(p) if !p.is_empty() => format!("{name}.{p}"),
                _ => name.clone(),
            })
        }
        Spec::Repeat { name, block, .. } => Some(match last_leaf(block) {
            Some(p) if !p.is_empty() => format!("{name}.{p}"),
            _ => name.clone(),
        }),
        _ => Some(String::new()),
    }
}

fn size(v: &Value) -> Option<usize> {
    v.as_u64().filter(|&n| (1..=MAX_SIZE as u64).contains(&n)).map(|n| n as usize)
}

fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<()> {
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        bail!("{what}: unknown key `{k}` (the keys are {})", allowed.join(", "));
    }
    Ok(())
}

/// A list of layers under `path`.
fn sequential(v: &Value, path: &str) -> Result<Spec> {
    let list = v.as_array().ok_or_else(|| anyhow!("{}: `layers` must be a list", or_model(path)))?;
    if list.is_empty() {
        bail!("{}: `layers` is empty", or_model(path));
    }
    let mut children: Vec<(String, Spec)> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let where_ = format!("layer {} of {}", i + 1, or_model(path));
        let o = item.as_object().ok_or_else(|| anyhow!("{where_}: a layer is an object with `name` and `layer`"))?;
        let name = o.get("name").and_then(Value::as_str).ok_or_else(|| anyhow!("{where_}: needs a `name` (a string)"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("{where_}: name {name:?}: use letters, digits and '_' (it becomes part of the state_dict keys)");
        }
        if children.iter().any(|(n, _)| n == name) {
            bail!("{where_}: two layers named {name:?}");
        }
        let full = crate::nn::join(path, name);
        let spec = if let Some(times) = o.get("repeat") {
            only_keys(o, &["name", "repeat", "block", "layers", "layer"], &full)?;
            let times = size(times).ok_or_else(|| anyhow!("{full}: `repeat` must be a whole number from 1 to {MAX_SIZE}"))?;
            let block = o.get("block").and_then(Value::as_str).unwrap_or("block");
            if block.is_empty() || !block.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("{full}: block name {block:?}: use letters, digits and '_'");
            }
            let inner = match (o.get("layers"), o.get("layer")) {
                (Some(layers), None) => sequential(layers, &crate::nn::join(&full, block))?,
                (None, Some(layer)) => leaf_of(layer, &crate::nn::join(&full, block))?,
                _ => bail!("{full}: a `repeat` needs either the `layers` of its block or one `layer`"),
            };
            Spec::Repeat { times, name: block.to_string(), block: Box::new(inner) }
        } else if let Some(layer) = o.get("layer") {
            only_keys(o, &["name", "layer"], &full)?;
            leaf_of(layer, &full)?
        } else if let Some(layers) = o.get("layers") {
            only_keys(o, &["name", "layers"], &full)?;
            sequential(layers, &full)?
        } else {
            bail!("{full}: needs a `layer` (such as \"ReLU()\"), `layers` (a Sequential) or `repeat` with `layers`");
        };
        children.push((name.to_string(), spec));
    }
    Ok(Spec::Sequential(children))
}

/// A `layer` string under `path`.
fn leaf_of(layer: &Value, path: &str) -> Result<Spec> {
    let text = layer.as_str().ok_or_else(|| anyhow!("{path}: `layer` must be a string such as \"Linear(800, 500)\""))?;
    leaf(text).with_context(|| format!("{path}: {text}"))
}

fn or_model(path: &str) -> &str {
    if path.is_empty() {
        "the model"
    } else {
        path
    }
}

/// One leaf layer from PyTorch's repr: `Type(positional, …, keyword=value, …)`.
fn leaf(text: &str) -> Result<Spec> {
    let text = text.trim();
    let open = text.find('(').filter(|_| text.ends_with(')')).ok_or_else(|| anyhow!("write a layer as Type(arguments), e.g. \"ReLU()\""))?;
    let kind = text[..open].trim();
    let kind = kind.strip_prefix("nn.").unwrap_or(kind);
    let Some(&(kind, names)) = LAYERS.iter().find(|(k, _)| *k == kind) else {
        let known: Vec<&str> = LAYERS.iter().map(|(k, _)| *k).collect();
        bail!("unknown layer type `{kind}` (the layers are {})", known.join(", "));
    };
    let inner = text[open + 1..text.len() - 1].trim();
    let mut args: Vec<Option<String>> = vec![None; names.len()];
    let mut positional = true;
    for (i, part) in inner.split(',').map(str::trim).enumerate().filter(|(_, p)| !p.is_empty()) {
        let (slot, value) = match part.split_once('=') {
            Some((k, v)) => {
                positional = false;
                let k = k.trim();
                let slot = names.iter().position(|n| *n == k).ok_or_else(|| {
                    if names.is_empty() {
                        anyhow!("{kind} takes no arguments")
                    } else {
                        anyhow!("{kind} has no argument `{k}` (it takes {})", names.join(", "))
                    }
                })?;
                (slot, v.trim())
            }
            None => {
                if !positional {
                    bail!("a positional argument after a keyword one");
                }
                if i >= names.len() {
                    bail!("{kind} takes at most {} arguments ({})", names.len(), names.join(", "));
                }
                (i, part)
            }
        };
        if args[slot].is_some() {
            bail!("`{}` given twice", names[slot]);
        }
        args[slot] = Some(value.to_string());
    }
    let get = |name: &str| -> Result<Option<usize>> {
        let slot = names.iter().position(|n| *n == name).expect("a known argument");
        args[slot]
            .as_deref()
            .map(|v| {
                v.parse::<usize>().ok().filter(|n| (1..=MAX_SIZE).contains(n)).ok_or_else(|| {
                    if v.starts_with('(') {
                        anyhow!("`{name}` must be one number (square kernels and equal strides only), not {v}")
                    } else {
                        anyhow!("`{name}` must be a whole number from 1 to {MAX_SIZE}, not {v}")
                    }
                })
            })
            .transpose()
    };
    let need = |name: &str| -> Result<usize> { get(name)?.ok_or_else(|| anyhow!("{kind} needs `{name}`")) };
    Ok(match kind {
        "Conv2d" => {
            let slot = names.iter().position(|n| *n == "padding").expect("known");
            let pad = match args[slot].as_deref() {
                None | Some("0") => 0,
                Some(_) => need("padding")?,
            };
            Spec::Conv2d { c_in: need("in_channels")?, c_out: need("out_channels")?, k: need("kernel_size")?, stride: get("stride")?.unwrap_or(1), pad }
        }
        "BatchNorm2d" => {
            for (key, default) in [("eps", 1e-5), ("momentum", 0.1)] {
                let slot = names.iter().position(|n| *n == key).expect("known");
                if let Some(v) = &args[slot] {
                    if v.parse::<f64>().ok() != Some(default) {
                        bail!("only PyTorch's default {key}={default} is supported, not {v}");
                    }
                }
            }
            Spec::BatchNorm2d { c: need("num_features")? }
        }
        "MaxPool2d" | "AvgPool2d" => {
            let k = need("kernel_size")?;
            let stride = get("stride")?.unwrap_or(k);
            if kind == "MaxPool2d" {
                Spec::MaxPool2d { k, stride }
            } else {
                Spec::AvgPool2d { k, stride }
            }
        }
        "ReLU" => Spec::ReLU,
        "Tanh" => Spec::Tanh,
        "Sigmoid" => Spec::Sigmoid,
        "Flatten" => Spec::Flatten,
        "Linear" => Spec::Linear { d_in: need("in_features")?, d_out: need("out_features")? },
        _ => unreachable!("every entry of LAYERS is handled"),
    })
}

/// The model file of `arch` (what `parse` reads back to the same architecture).
pub fn to_json(arch: &Arch) -> String {
    let layers = match &arch.spec {
        Spec::Sequential(children) => layers_json(children),
        other => layers_json(&[("model".to_string(), other.clone())]),
    };
    let v = json!({
        "name": arch.name,
        "title": arch.title,
        "input": [arch.input.c, arch.input.h, arch.input.w],
        "classes": arch.classes,
        "layers": layers,
    });
    serde_json::to_string(&v).expect("JSON values serialise")
}

fn layers_json(children: &[(String, Spec)]) -> Value {
    Value::Array(
        children
            .iter()
            .map(|(name, spec)| match spec {
                Spec::Sequential(inner) => json!({ "name": name, "layers": layers_json(inner) }),
                Spec::Repeat { times, name: block, block: inner } => match &**inner {
                    Spec::Sequential(c) => json!({ "name": name, "repeat": times, "block": block, "layers": layers_json(c) }),
                    leaf => json!({ "name": name, "repeat": times, "block": block, "layer": leaf.describe() }),
                },
                leaf => json!({ "name": name, "layer": leaf.describe() }),
            })
            .collect(),
    )
}
