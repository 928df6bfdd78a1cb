#!/usr/bin/env python3
"""Parity of `wgsl-cnn step` with PyTorch: one training step of one of the program's models.

Models (`--model`, as `wgsl-cnn step --model`): lenet5 (the seed's LeNet-5, the default), mlp (the
seed notebook's one-hidden-layer network) and tied (one Linear(784, 784) + ReLU applied 10 times,
then Linear(784, 10)), or a model file (`examples/models/lenet1998.json`: its layers built as the
torch.nn modules they are written as, under the file's names).

Subcommands (see scripts/README.md):
  make    --dir D [--model M] [--batch-size N] [--seed S] [--mnist DIR] [--lr LR]
          [--optimizer adam|adamw|sgd] [--momentum MU] [--dampening D] [--nesterov] [--weight-decay WD]
          writes D/init.safetensors (PyTorch state_dict), D/batch.safetensors (x, y) and
          D/pytorch.safetensors (logits, loss, grad.*, after.*) from one PyTorch step of
          torch.optim.Adam (the default), AdamW or SGD with those hyper-parameters (as
          `wgsl-cnn step` takes them; recorded in the files' metadata).
  compare GOT.safetensors WANT.safetensors [--model M] [--lr LR] [--eps EPS]
          per-tensor errors of GOT against the reference WANT; exits 1 on any failure. The model
          (and so the bounds) is the one whose tensor names WANT holds, unless --model says.
  run     --dir D --bin PATH/wgsl-cnn [make's options]
          make, then `wgsl-cnn --backend cpu|gpu step [--model M] …`, each compared.
  selfcheck --dir D
          on what make wrote: WANT against itself, the float64 step (and for mlp and tied a
          sequential-sum fp32 step) against PyTorch's within the bounds, broken copies failing.

`make`, `run` and `selfcheck` need torch, numpy and safetensors; `compare` needs only numpy and
safetensors.
"""

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


class Model:
    """What the script needs to know of one model: its PyTorch names and its tolerances."""

    def __init__(self, name, layers, batchnorm, n_params, zero_grad, rtol, atol_scale, build, diagnostics,
                 chain=None, fragile_by="gradient"):
        self.name = name
        # The parameters, in PyTorch's names (the Adam-updated entries of the state_dict).
        self.params = [f"{layer}.{kind}" for layer in layers for kind in ["weight", "bias"]]
        # The state_dict in PyTorch's order, and the order of the comparison table.
        self.state_keys = [
            f"{layer}.{kind}"
            for layer in layers
            for kind in (
                ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
                if layer in batchnorm
                else ["weight", "bias"]
            )
        ]
        self.n_params = n_params
        # Parameters whose true gradient is exactly 0 (see ZERO_GRAD_META below).
        self.zero_grad_params = set(zero_grad)
        # Bound of logits, loss and grad.*: RTOL·|want| + ATOL_SCALE·max|want| (see Tolerances).
        self.rtol, self.atol_scale = rtol, atol_scale
        self.build = build  # () -> the nn.Module class
        self.diagnostics = diagnostics  # (init, x, y) -> (zero-grad noise scale, fragile decisions)
        # For a model that is a chain of Linear layers with a ReLU between each two: the layers in
        # the order applied (a shared layer repeats), for selfcheck's sequential-sum fp32 step.
        self.chain = chain
        # How the fragile decisions are listed: "gradient" (largest first) or "risk" (see FRAGILE_ABS).
        self.fragile_by = fragile_by
        self.table_order = ["logits", "loss"] + [f"grad.{p}" for p in self.params] + [f"after.{k}" for k in self.state_keys]

    def tensor_names(self):
        return set(self.table_order)


# ---------------------------------------------------------------------------------------------
# Tolerances (fp32 on both sides; the two compute the same math with sums in different orders).
#
# logits, loss, grad.* : |got − want| ≤ RTOL·|want| + ATOL_SCALE·max|want|. fp32 sums of up to
#   57,600 terms (conv1's weight gradient: batch 100 × 24 × 24 positions) reordered differ by a
#   few 1e-7 relative; 1e-5 leaves margin without hiding a wrong index or a missing term
#   (those show up at ≥ 1e-3). The floor scaled to the tensor's largest magnitude covers
#   elements near zero, whose relative error is meaningless.
#   How the bound of each model is checked (`selfcheck`): PyTorch's fp32 step against the same
#   step in float64, and (for mlp and tied) against an independent fp32 step in numpy whose every
#   sum is a naive sequential loop. Two fp32 implementations differ by up to about the sum of their
#   errors, so the worst err/bound of these must stay far below 1. Worst over batches 7, 100 and
#   256, seeds 0-3, MNIST and uniform random images, at 1e-5 (24 runs per model and check):
#     mlp     float64 0.054, sequential fp32 0.080          — a margin of ~12
#     tied    float64 0.051, sequential fp32 0.067          — a margin of ~15 (runs without a flip)
#     lenet5  float64 0.46 on MNIST (grad.conv1.weight, batch 256), 0.56 on random images at
#             batch 100, but 1.0–4.5 on random images at batch 256 (grad.conv1.weight, whose
#             sums there have 147,456 terms, not the 57,600 above); lenet5's bounds are left as
#             they were: check it on MNIST, or on random images at batch ≤ 100.
#   mlp keeps lenet5's bound: its longest sums are 784 terms (forward) and N terms (a weight
#   gradient), far shorter than lenet5's.
RTOL = 1e-5
ATOL_SCALE = 1e-5
# tied: every gradient of the shared Linear(784, 784) goes through up to 10 chained products
#   forward and 10 back, and sums the 10 passes' contributions, against mlp's one each way, so its
#   rounding should grow with that depth (√10 ≈ 3 for random-walk rounding, 10 worst case). It
#   grows less than that here: the relative L2 error of its gradients is 1–2× mlp's (2.2–5.5e-7
#   against 1.1–6.2e-7 at the sizes above) and its worst err/bound is no higher, because the
#   activations after the first passes are small and bias-dominated, so the chain barely
#   amplifies rounding. The bound takes the measured factor 2 (not the √10 the depth argument
#   allows): that keeps mlp's margin (the worst above becomes 0.034) for a GPU whose sums are
#   ordered otherwise, and a wrong index or a missing term (≥ 1e-3 relative) still fails 25×
#   over. What this bound cannot cover, and no smooth bound can, is a ReLU flip (see Fragile
#   decisions): with 784·10·N ReLU inputs, mostly O(0.03), tied has hundreds of inputs within
#   1e-5 of 0 per batch of 100, and PyTorch's own fp32 step took the other side of one (its
#   input |x| < 6e-9) against float64 in 3 of 12 seeds at batch 256 — one, with a gradient of
#   1e-8 through it, still within this bound (0.67), the other two at 6.5× and 594× it; each at
#   ≤ 0.027 of it once that one decision was matched — and in none of 20 seeds at batch 100 nor
#   of 20 at batch 7.
TIED_RTOL = 2e-5
TIED_ATOL_SCALE = 2e-5
# grad.conv1.bias / grad.conv2.bias: the true value is exactly 0 and each side returns the rounding
#   noise of an fp32 sum of the n = N·H·W terms t of BatchNorm's input gradient for that channel.
#   Rounding model (Higham & Mary's probabilistic bound, λ = 1): |noise| ≲ √n·u·Σ|t|, u = 2⁻²⁴.
#   `make` records Σ|t| and n per channel (from PyTorch, in float64) in pytorch.safetensors'
#   metadata, so the bound follows the data; PyTorch's own noise measured at batch 100 was ~0.2 of
#   it. A real bias gradient (e.g. BatchNorm's mean subtraction missing) would be ~|grad.batchnorm.bias|,
#   orders of magnitude above. Without that metadata (two wgsl-cnn files) a fixed 1e-6 absolute
#   bound applies, as in tests/model_gpu.rs.
F32_U = 2.0**-24
ZERO_GRAD_META = "zero_grad_noise_scale"
ZERO_GRAD_ATOL = 1e-6
# Fragile decisions (not a tolerance: reported only). ReLU and max-pool are not differentiable at
#   their thresholds; an activation (O(1) after BatchNorm) within FRAGILE_ABS of its threshold can
#   land on the other side under fp32 rounding (the backends' logits differ by up to ~1e-6), and
#   then the whole gradient through it goes elsewhere. `make` lists such points of the batch:
#   lenet5 with the largest gradients first (its lists are short); mlp and tied likeliest flip
#   first, by |gradient| / |distance to the threshold| (tied lists hundreds per batch of 100, and
#   the flips seen had inputs of |x| < 6e-9, whatever their gradient).
FRAGILE_ABS = 1e-5
FRAGILE_META = "fragile_decisions"
# after.running_mean / after.running_var: 0.9·old + 0.1·(batch statistic over N×H×W elements).
STAT_RTOL, STAT_ATOL = 1e-5, 1e-6
# after.<parameter>: Adam's first step moves p by lr·g/(|g| + eps) (m̂ = g, v̂ = g²). If the two
#   gradients differ by δ, the two updates differ by at most lr·eps·δ/(min|g| + eps)² (mean value
#   theorem on g/(|g|+eps), both gradients on one side of 0), and never by more than 2·lr (opposite
#   signs). So an element whose gradient is near eps (the conv biases above) may legitimately
#   differ by up to 2·lr, while one with a large gradient must agree to rounding. Per element:
#   bound = ADAM_FLOOR + min(2·lr, lr·eps·(2·δ)/(min(|g_got|, |g_want|) + eps)²), δ that element's
#   measured gradient difference (×2 for margin, as tests/model_gpu.rs does with its tensor-wide δ).
ADAM_FLOOR = 1e-7  # parameters are ≤ ~0.2 (ulp ~1.5e-8) and the update's rounding is ~1e-10
# The same with Adam's weight decay (g + wd·p: p is the same on both sides, so δ is the
#   gradients') and AdamW's (p·(1 − lr·wd) is the same on both sides, rounding aside).
# after.<parameter> with SGD: the first step is p − lr·c·(g + wd·p), c = 1 + μ with Nesterov
#   (the buffer is d itself), else 1, so two gradients δ apart give updates lr·c·δ apart:
#   bound = SGD_FLOOR + lr·c·(2·δ) (×2 for margin as above), SGD_FLOOR the rounding of p − lr·d.
SGD_FLOOR = 1e-7


def optimizer_of(meta):
    """(name, lr, momentum, dampening, nesterov, weight_decay) as a file's metadata records them
    (`make` and `wgsl-cnn step` write the same keys); Adam at the given defaults without them."""
    name = meta.get("optimizer", "adam")
    wd_default = "0.01" if name == "adamw" else "0"
    return (name, float(meta["lr"]) if "lr" in meta else None, float(meta.get("momentum", "0")),
            float(meta.get("dampening", "0")), meta.get("nesterov", "false") == "true",
            float(meta.get("weight_decay", wd_default)))


def torch_optimizer(torch, params, args):
    """The torch.optim optimizer `make` steps with, from its flags (PyTorch's defaults otherwise)."""
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, dampening=args.dampening,
                               nesterov=args.nesterov, weight_decay=args.weight_decay or 0.0)
    if args.momentum or args.dampening or args.nesterov:
        sys.exit("--momentum, --dampening and --nesterov are options of --optimizer sgd")
    if args.optimizer == "adamw":
        wd = 0.01 if args.weight_decay is None else args.weight_decay
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay or 0.0)


def optimizer_meta(args):
    """The metadata keys `wgsl-cnn step` writes for the same optimizer (OptimizerConfig::metadata)."""
    meta = {"optimizer": args.optimizer}
    if args.optimizer == "sgd":
        meta.update(momentum=str(args.momentum), dampening=str(args.dampening),
                    nesterov="true" if args.nesterov else "false", weight_decay=str(args.weight_decay or 0.0))
    else:
        wd = (0.01 if args.optimizer == "adamw" else 0.0) if args.weight_decay is None else args.weight_decay
        meta.update(weight_decay=str(wd))
    return meta


def optimizer_flags(args):
    """`wgsl-cnn step`'s flags for the optimizer of `args`."""
    flags = ["--optimizer", args.optimizer, "--lr", str(args.lr)]
    if args.optimizer == "sgd":
        flags += ["--momentum", str(args.momentum), "--dampening", str(args.dampening)]
        flags += ["--nesterov"] if args.nesterov else []
    if args.weight_decay is not None:
        flags += ["--weight-decay", str(args.weight_decay)]
    return flags


def read_idx(path):
    """An IDX file (MNIST's format), gzip'd or raw → numpy uint8 array of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        sys.exit(f"{path}: header says {dims} ({int(np.prod(dims))} bytes), file has {body.size}")
    return body.reshape(dims)


def find_idx(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{directory}: neither {stem}.gz nor {stem} found")


# ---------------------------------------------------------------------------------------------
# make


def lenet5_class():
    import torch.nn as nn
    import torch.nn.functional as F

    class LeNet5(nn.Module):  # the seed notebook's model, verbatim
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 20, 5)
            self.batchnorm1 = nn.BatchNorm2d(20)
            self.conv2 = nn.Conv2d(20, 50, 5)
            self.batchnorm2 = nn.BatchNorm2d(50)
            self.fc1 = nn.Linear(800, 500)
            self.fc2 = nn.Linear(500, 10)

        def forward(self, x):
            x = F.relu(F.max_pool2d(self.batchnorm1(self.conv1(x)), 2))
            x = F.relu(F.max_pool2d(self.batchnorm2(self.conv2(x)), 2))
            x = x.view(-1, 800)
            x = F.relu(self.fc1(x))
            return self.fc2(x)

    return LeNet5


def mlp_class():
    import torch.nn as nn
    import torch.nn.functional as F

    class MLP(nn.Module):  # the seed notebook's "fully connected neural network with one hidden layer"
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 500)
            self.fc2 = nn.Linear(500, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x.reshape(x.shape[0], 784))))

    return MLP


def tied_class():
    import torch.nn as nn
    import torch.nn.functional as F

    # The seed's sketch of a block whose weights are shared by every application. The seed's
    # sketch forgot `super().__init__()` in both __init__s (nn.Module then refuses the attribute
    # assignment); this twin adds it and is otherwise the sketch, plus a head that maps the 784
    # features to the 10 classes.
    class NN_block(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.fc = nn.Linear(n, n)

        def forward(self, x):
            return F.relu(self.fc(x))

    class NN(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.block = NN_block(n)

        def forward(self, x):
            for _ in range(TIED_PASSES):  # the same weights applied 10 times
                x = self.block(x)
            return x

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = NN(784)
            self.head = nn.Linear(784, 10)

        def forward(self, x):
            return self.head(self.body(x.reshape(x.shape[0], 784)))

    return Tied


TIED_PASSES = 10


def relu_fragile(where, pre, post):
    """ReLU inputs within FRAGILE_ABS of 0, each with the gradient it gets when it counts as > 0
    (post must have had retain_grad() before backward)."""
    import torch

    fragile = []
    for i in torch.nonzero(pre.detach().abs().flatten() < FRAGILE_ABS).flatten().tolist():
        g = post.grad.flatten()[i].item()  # the gradient this input gets when it counts as > 0
        at = [int(v) for v in np.unravel_index(i, tuple(pre.shape))]
        fragile.append({"where": where, "at": at, "value": pre.flatten()[i].item(), "grad": g})
    return fragile


def float64_model(spec, init):
    """The model from init in float64, train mode, and a copy to check a written-out forward by."""
    import copy

    model = spec.build()()
    model.load_state_dict(init)
    model = model.double().train()
    return model, copy.deepcopy(model)


def lenet5_diagnostics(init, x, y):
    """The step once more in float64 (closest to exact), for two things the comparison needs:

    * for each conv bias (true gradient 0): n and Σ|t| per channel, t the gradient of the loss
      with respect to the conv's output (the terms summed into the bias gradient);
    * fragile decisions: ReLU inputs within FRAGILE_ABS of 0, and max-pool windows whose two
      largest inputs are within FRAGILE_ABS of each other, where an fp32 rounding difference can
      legitimately send the gradient another way (printed as a hint when a comparison fails).
    """
    import torch
    import torch.nn.functional as F

    model, check = float64_model(MODELS["lenet5"], init)
    x = x.double()
    # The seed's forward, written out to keep the intermediates (checked against forward below).
    c1 = model.conv1(x)
    b1 = model.batchnorm1(c1)
    p1 = F.max_pool2d(b1, 2)
    r1 = F.relu(p1)
    c2 = model.conv2(r1)
    b2 = model.batchnorm2(c2)
    p2 = F.max_pool2d(b2, 2)
    r2 = F.relu(p2)
    f1 = model.fc1(r2.view(-1, 800))
    a1 = F.relu(f1)
    logits = model.fc2(a1)
    if not torch.equal(logits, check(x)):
        sys.exit("internal error: the written-out forward differs from LeNet5.forward")
    for t in (c1, c2, p1, p2, r1, r2, a1):
        t.retain_grad()
    F.cross_entropy(logits, y).backward()

    scale = {
        f"{name}.bias": {"terms": c.shape[0] * c.shape[2] * c.shape[3], "abs_sum": c.grad.abs().sum((0, 2, 3)).tolist()}
        for name, c in (("conv1", c1), ("conv2", c2))
    }
    fragile = []
    for where, pre, post in (("relu after pool1", p1, r1), ("relu after pool2", p2, r2), ("relu after fc1", f1, a1)):
        fragile += relu_fragile(where, pre, post)
    for where, pre, pooled in (("max-pool 1", b1, p1), ("max-pool 2", b2, p2)):
        n, ch, h, w = pre.shape
        windows = pre.detach().reshape(n, ch, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(-1, 4)
        top2 = windows.topk(2, dim=1).values
        gap = top2[:, 0] - top2[:, 1]
        # Exact ties (gap 0) come from bit-identical inputs (blank image borders) and are settled
        # by the tie-break rule alike on every side; near ties are the rounding-fragile ones.
        for i in torch.nonzero((gap > 0) & (gap < FRAGILE_ABS)).flatten().tolist():
            g = pooled.grad.flatten()[i].item()
            if g != 0.0:
                at = [int(v) for v in np.unravel_index(i, tuple(pooled.shape))]
                fragile.append({"where": where, "at": at, "gap": gap[i].item(), "grad": g})
    return scale, fragile


def mlp_diagnostics(init, x, y):
    """As lenet5_diagnostics: no parameter of mlp has a zero true gradient; one ReLU to watch."""
    import torch
    import torch.nn.functional as F

    model, check = float64_model(MODELS["mlp"], init)
    x = x.double()
    f1 = model.fc1(x.reshape(x.shape[0], 784))
    a1 = F.relu(f1)
    logits = model.fc2(a1)
    if not torch.equal(logits, check(x)):
        sys.exit("internal error: the written-out forward differs from MLP.forward")
    a1.retain_grad()
    F.cross_entropy(logits, y).backward()
    return {}, relu_fragile("relu after fc1", f1, a1)


def tied_diagnostics(init, x, y):
    """As lenet5_diagnostics: no zero-gradient parameter; the ReLU of each of the 10 passes."""
    import torch
    import torch.nn.functional as F

    model, check = float64_model(MODELS["tied"], init)
    x = x.double()
    h = x.reshape(x.shape[0], 784)
    passes = []
    for _ in range(TIED_PASSES):
        pre = model.body.block.fc(h)
        h = F.relu(pre)
        h.retain_grad()
        passes.append((pre, h))
    logits = model.head(h)
    if not torch.equal(logits, check(x)):
        sys.exit("internal error: the written-out forward differs from Tied.forward")
    F.cross_entropy(logits, y).backward()
    fragile = []
    for k, (pre, post) in enumerate(passes):
        fragile += relu_fragile(f"relu of pass {k + 1}", pre, post)
    return {}, fragile


MODELS = {
    m.name: m
    for m in [
        Model("lenet5", ["conv1", "batchnorm1", "conv2", "batchnorm2", "fc1", "fc2"], {"batchnorm1", "batchnorm2"},
              431_220, {"conv1.bias", "conv2.bias"}, RTOL, ATOL_SCALE, lenet5_class, lenet5_diagnostics),
        Model("mlp", ["fc1", "fc2"], set(), 397_510, set(), RTOL, ATOL_SCALE, mlp_class, mlp_diagnostics,
              chain=["fc1", "fc2"], fragile_by="risk"),
        Model("tied", ["body.block.fc", "head"], set(), 623_290, set(), TIED_RTOL, TIED_ATOL_SCALE,
              tied_class, tied_diagnostics, chain=["body.block.fc"] * TIED_PASSES + ["head"],
              fragile_by="risk"),
    ]
}
DEFAULT_MODEL = "lenet5"


def file_model(path):
    """The Model of a `--model FILE.json` network (README "Your own network"): its layers as PyTorch
    modules under the file's names (so the state_dict keys are those `wgsl-cnn` uses), `repeat`
    blocks applied with one set of weights. No fragile-decision analysis (it is written per built-in
    model); the bounds are lenet5's."""
    import torch.nn as nn

    with open(path) as f:
        doc = json.load(f)
    kinds = {k: getattr(nn, k) for k in ["Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "ReLU", "Tanh", "Sigmoid", "Flatten", "Linear"]}
    scope = dict(kinds, nn=type("nn", (), kinds))

    class Repeat(nn.Module):
        def __init__(self, block_name, block, times):
            super().__init__()
            self.block_name, self.times = block_name, times
            self.add_module(block_name, block)

        def forward(self, x):
            for _ in range(self.times):
                x = getattr(self, self.block_name)(x)
            return x

    def sequential(layers):
        seq = nn.Sequential()
        for layer in layers:
            if "repeat" in layer:
                module = Repeat(layer.get("block", "block"), sequential(layer["layers"]), layer["repeat"])
            elif "layers" in layer:
                module = sequential(layer["layers"])
            else:
                module = eval(layer["layer"], {"__builtins__": {}}, scope)
            seq.add_module(layer["name"], module)
        return seq

    def build():
        return lambda: sequential(doc["layers"])

    probe = build()()
    state = list(probe.state_dict())
    params = [n for n, _ in probe.named_parameters()]
    layers = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in params))
    batchnorm = {n for n, m in probe.named_modules() if isinstance(m, nn.BatchNorm2d)}
    spec = Model(path, layers, batchnorm, sum(p.numel() for p in probe.parameters()), set(), RTOL, ATOL_SCALE, build,
                 lambda init, x, y: ({}, []))
    if spec.state_keys != state:
        sys.exit(f"{path}: the state_dict {state} is not in the layer order the script expects")
    return spec


def model_spec(name):
    """A built-in model by name, or the network of a model file (a path ending in .json)."""
    if name in MODELS:
        return MODELS[name]
    if name.endswith(".json"):
        return file_model(name)
    sys.exit(f"unknown model {name!r}: {', '.join(MODELS)} or a model file (.json)")


def make(args):
    import torch
    from safetensors.torch import save_file

    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    os.makedirs(args.dir, exist_ok=True)
    n = args.batch_size
    if n < 1:
        sys.exit("--batch-size must be at least 1")

    spec = model_spec(args.model)
    torch.manual_seed(args.seed)
    model = spec.build()()
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    # The names and the size `wgsl-cnn step --model` expects (a slip here would make every
    # comparison fail on names, far from its cause).
    names = [name for name, _ in model.named_parameters()]
    count = sum(p.numel() for p in model.parameters())
    if names != spec.params or list(init) != spec.state_keys or count != spec.n_params:
        sys.exit(f"internal error: {spec.name} built parameters {names} ({count}), state_dict {list(init)}; "
                 f"expected {spec.params} ({spec.n_params}), {spec.state_keys}")

    if args.mnist:
        images = read_idx(find_idx(args.mnist, "train-images-idx3-ubyte"))
        labels = read_idx(find_idx(args.mnist, "train-labels-idx1-ubyte"))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
            sys.exit(f"{args.mnist}: images {images.shape} and labels {labels.shape} do not match")
        gen = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(images.shape[0], generator=gen)[:n].numpy()
        x = torch.from_numpy(images[idx].astype(np.float32) / 255.0).reshape(n, 1, 28, 28)
        y = torch.from_numpy(labels[idx].astype(np.int64))
        source = f"MNIST train images {args.mnist} (seeded random pick)"
    else:
        gen = torch.Generator().manual_seed(args.seed + 1)
        x = torch.rand(n, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen, dtype=torch.int64)
        source = "uniform random x in [0, 1), random labels"
    x, y = x.contiguous(), y.contiguous()

    # One step exactly as the seed's training loop does it (with the optimizer asked for).
    model.train()
    opt = torch_optimizer(torch, model.parameters(), args)
    crit = torch.nn.CrossEntropyLoss()
    opt.zero_grad()
    out = model(x)
    loss = crit(out, y)
    loss.backward()
    result = {"logits": out.detach().clone(), "loss": loss.detach().clone()}
    for name, p in model.named_parameters():
        result[f"grad.{name}"] = p.grad.detach().clone()
    opt.step()
    for k, v in model.state_dict().items():
        result[f"after.{k}"] = v.detach().clone()

    scale, fragile = spec.diagnostics(init, x, y)
    meta = {"torch": torch.__version__, "seed": str(args.seed), "lr": str(args.lr), "batch": source,
            ZERO_GRAD_META: json.dumps(scale), FRAGILE_META: json.dumps(fragile), **optimizer_meta(args)}
    save_file(init, os.path.join(args.dir, "init.safetensors"), metadata=meta)
    save_file({"x": x, "y": y}, os.path.join(args.dir, "batch.safetensors"), metadata=meta)
    save_file({k: v.contiguous() for k, v in result.items()}, os.path.join(args.dir, "pytorch.safetensors"), metadata=meta)
    what = "" if spec.name == DEFAULT_MODEL else f"model {spec.name} ({spec.n_params:,} parameters), "
    print(f"torch {torch.__version__}: {what}batch {n} ({source}), seed {args.seed}, loss {loss.item():.6f}, {opt.__class__.__name__} {opt.defaults}")
    print(f"wrote {args.dir}/init.safetensors, batch.safetensors, pytorch.safetensors")
    print_fragile(fragile, spec.fragile_by)


def print_fragile(fragile, by="gradient"):
    if not fragile:
        print(f"fragile decisions: none (no ReLU input or max-pool tie within {FRAGILE_ABS:g}, float64)")
        return
    print(f"fragile decisions: {len(fragile)} within {FRAGILE_ABS:g} of their threshold (float64); a backend may")
    print("  take the other side under fp32 rounding and route this gradient differently:")
    if by == "risk":  # the likeliest to flip and the costliest first
        order = sorted(fragile, key=lambda f: -abs(f["grad"]) / max(abs(f.get("value", f.get("gap", 0.0))), 1e-300))
    else:
        order = sorted(fragile, key=lambda f: -abs(f["grad"]))
    for f in order[:12]:
        what = f"input {f['value']:+.3e}" if "value" in f else f"top-2 gap {f['gap']:.3e}"
        print(f"  {f['where']:<17} at {str(f['at']):<16} {what}  gradient {f['grad']:+.6e}")
    if len(fragile) > 12:
        print(f"  ... and {len(fragile) - 12} more " + ("less likely to matter" if by == "risk" else "with smaller gradients"))


# ---------------------------------------------------------------------------------------------
# compare


def detect_model(names):
    """The model whose tensor names a step file holds (exactly, or else the one sharing the most
    names with it, the default on a tie); and whether the match is exact."""
    names = set(names)
    exact = [m for m in MODELS.values() if m.tensor_names() == names]
    if exact:
        return exact[0], True
    best = max(MODELS.values(), key=lambda m: (len(m.tensor_names() & names), m.name == DEFAULT_MODEL))
    return best, False


def compare_files(got_path, want_path, lr, eps, label=None, model=None):
    """Prints one row per tensor; returns True when every tensor passes. The bounds are model's
    (a name in MODELS), or by default those of the model whose tensor names WANT holds."""
    for path in (got_path, want_path):
        if not os.path.isfile(path):
            sys.exit(f"{path}: no such file")
    got, want = load_file(got_path), load_file(want_path)
    with safe_open(want_path, framework="np") as f:
        meta = f.metadata() or {}
    noise_scale = json.loads(meta.get(ZERO_GRAD_META, "{}"))
    fragile = json.loads(meta.get(FRAGILE_META, "[]"))
    optimizer, _, momentum, _, nesterov, weight_decay = optimizer_of(meta)
    with safe_open(got_path, framework="np") as f:
        got_optimizer = optimizer_of(f.metadata() or {})[0]
    if got_optimizer != optimizer:
        print(f"{got_path} took a step of {got_optimizer}, {want_path} of {optimizer}")
        return False
    spec, exact = detect_model(want)
    if model is not None and model != spec.name:
        if exact:
            sys.exit(f"{want_path} holds model {spec.name}'s tensors, not {model}'s")
        spec = model_spec(model)
    elif not exact:
        print(f"note: the tensor names of {want_path} are not exactly those of any model; "
              f"comparing with {spec.name}'s bounds")
    ok = True
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        print(f"tensor names differ: missing from {got_path}: {missing}; extra: {extra}")
        ok = False
    print(f"\n{label or got_path} vs {want_path}" + ("" if spec.name == DEFAULT_MODEL else f" [model {spec.name}]"))
    header = f"{'tensor':<38} {'elements':>8} {'max abs err':>12} {'rel L2 err':>11} {'worst err/bound':>15}  result"
    print(header)
    print("-" * len(header))
    names = sorted((k for k in want if k in got), key=lambda k: (spec.table_order + [k]).index(k))
    for name in names:
        g, w = got[name], want[name]
        if g.shape != w.shape:
            print(f"{name:<38} shape {g.shape} vs {w.shape}  FAIL")
            ok = False
            continue
        if w.dtype.kind in "iu" or g.dtype.kind in "iu":
            same = g.dtype == w.dtype and np.array_equal(g, w)
            print(f"{name:<38} {w.size:>8} {'exact':>12} {'':>11} {'':>15}  {'ok' if same else 'FAIL'}")
            ok &= same
            continue
        g64, w64 = g.astype(np.float64).ravel(), w.astype(np.float64).ravel()
        diff = np.abs(g64 - w64)
        param = name[len("after."):] if name.startswith("after.") else None
        if param in spec.params:
            # A gradient that is missing (or misshapen) on one side, already a failure above or in
            # its own row, counts as equal to the other's: δ = 0, the strict bound.
            gg, gw = got.get(f"grad.{param}"), want.get(f"grad.{param}")
            if gg is None or gg.shape != w.shape:
                gg = gw if gw is not None and gw.shape == w.shape else np.zeros(w.shape)
            if gw is None or gw.shape != w.shape:
                gw = gg
            gg, gw = gg.astype(np.float64).ravel(), gw.astype(np.float64).ravel()
            delta = 2.0 * np.abs(gg - gw)
            if optimizer == "sgd":
                c = 1.0 + momentum if nesterov and momentum > 0 else 1.0
                bound = SGD_FLOOR + lr * c * delta
            else:
                # Gradients of opposite signs: the interval between them contains 0, where the slope
                # of g/(|g|+eps) is 1/eps, so the bound is lr·δ/eps (capped at 2·lr).
                slack = 0.0
                if optimizer == "adam" and weight_decay > 0:
                    # Adam's L2 term: the step sees g + wd·p (δ unchanged, p the same on both
                    # sides). p is taken as WANT's value after the step, within about lr of the
                    # init, so gmin is lowered by wd·lr to stay on the safe side.
                    p_after = w64
                    gg, gw = gg + weight_decay * p_after, gw + weight_decay * p_after
                    slack = 1.01 * weight_decay * lr
                gmin = np.where(np.sign(gg) == np.sign(gw), np.minimum(np.abs(gg), np.abs(gw)), 0.0)
                gmin = np.maximum(gmin - slack, 0.0)
                bound = ADAM_FLOOR + np.minimum(2.0 * lr, lr * eps * delta / (gmin + eps) ** 2)
        elif param is not None:  # running statistics
            bound = STAT_ATOL + STAT_RTOL * np.abs(w64)
        elif name[len("grad."):] in spec.zero_grad_params:
            scale = noise_scale.get(name[len("grad."):])
            if scale is None:
                bound = np.full_like(w64, ZERO_GRAD_ATOL)
            else:
                bound = np.sqrt(scale["terms"]) * F32_U * np.asarray(scale["abs_sum"], dtype=np.float64)
        else:  # logits, loss, gradients
            scale = np.max(np.abs(w64)) if w64.size else 0.0
            bound = spec.atol_scale * scale + spec.rtol * np.abs(w64)
        passed = bool(np.all(diff <= bound))  # False for any NaN
        ratio = float(np.max(diff / bound)) if diff.size else 0.0
        norm = np.linalg.norm(w64)
        rel = np.linalg.norm(g64 - w64) / norm if norm > 0 else np.linalg.norm(g64 - w64)
        row = f"{name:<38} {w.size:>8} {diff.max():>12.3e} {rel:>11.3e} {ratio:>15.3f}  {'ok' if passed else 'FAIL'}"
        print(row)
        if not passed:
            bad = np.flatnonzero(~(diff <= bound))
            for i in bad[:5]:
                print(f"    [{i}] got {g64[i]:.9e} want {w64[i]:.9e} |diff| {diff[i]:.3e} > bound {bound[i]:.3e}")
            print(f"    {bad.size} of {w.size} elements outside the bound")
            ok = False
    print(f"=> {'PASS' if ok else 'FAIL'} ({len(names)} tensors)")
    if not ok and fragile:
        print("hint: ", end="")
        print_fragile(fragile, spec.fragile_by)
    return ok


def compare(args):
    lr = args.lr
    if lr is None:
        with safe_open(args.want, framework="np") as f:
            lr = optimizer_of(f.metadata() or {})[1]
    sys.exit(0 if compare_files(args.got, args.want, 1e-3 if lr is None else lr, args.eps, model=args.model) else 1)


# ---------------------------------------------------------------------------------------------
# selfcheck


def float64_step(spec, init, x, y, lr):
    """make's step once more in float64, rounded to float32 at the end: what an fp32
    implementation would return if its only error were the final rounding."""
    import torch

    model = spec.build()()
    model.load_state_dict(init)
    model = model.double().train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    opt.zero_grad()
    out = model(x.double())
    loss = torch.nn.CrossEntropyLoss()(out, y)
    loss.backward()
    result = {"logits": out.detach(), "loss": loss.detach()}
    for name, p in model.named_parameters():
        result[f"grad.{name}"] = p.grad.detach()
    opt.step()
    for k, v in model.state_dict().items():
        result[f"after.{k}"] = v.detach()
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in result.items()}


def sequential_fp32_step(spec, init, x, y, lr, betas=(0.9, 0.999), eps=1e-8):
    """The step of a Linear/ReLU chain (spec.chain) in plain numpy float32, every sum a sequential
    loop of fp32 adds in the most naive order (as a simple shader or CPU loop would do it): an
    independent fp32 implementation, to measure how far two such can honestly differ."""
    f32 = np.float32
    p = {k: v.numpy().astype(f32) for k, v in init.items()}
    n = x.shape[0]
    h = x.numpy().astype(f32).reshape(n, -1)
    acts, pres = [h], []
    for i, layer in enumerate(spec.chain):
        w, b = p[f"{layer}.weight"], p[f"{layer}.bias"]
        z = np.zeros((n, w.shape[0]), f32)
        for k in range(w.shape[1]):  # z[n, o] = Σ_k h[n, k]·w[o, k], k in order
            z += h[:, k : k + 1] * w[None, :, k]
        z += b
        pres.append(z)
        h = np.maximum(z, f32(0)) if i + 1 < len(spec.chain) else z
        acts.append(h)
    logits = acts[-1]
    labels = y.numpy()
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    total = np.zeros((n, 1), f32)
    for c in range(logits.shape[1]):
        total += e[:, c : c + 1]
    loss = f32(0)
    for i in range(n):
        loss += np.log(total[i, 0]) + m[i, 0] - logits[i, labels[i]]
    loss = f32(loss / f32(n))
    dz = (e / total).astype(f32)
    dz[np.arange(n), labels] -= f32(1)
    dz /= f32(n)
    grads = {}
    for i in reversed(range(len(spec.chain))):
        layer = spec.chain[i]
        w, h_in = p[f"{layer}.weight"], acts[i]
        gw = np.zeros_like(w)
        gb = np.zeros(w.shape[0], f32)
        for j in range(n):  # Σ over the batch, in order
            gw += dz[j][:, None] * h_in[j][None, :]
            gb += dz[j]
        for name, g in ((f"{layer}.weight", gw), (f"{layer}.bias", gb)):  # a shared layer adds up its uses
            grads[name] = grads[name] + g if name in grads else g
        if i > 0:
            dh = np.zeros_like(h_in)
            for o in range(w.shape[0]):  # dh[n, k] = Σ_o dz[n, o]·w[o, k], o in order
                dh += dz[:, o : o + 1] * w[None, o, :]
            dz = dh * (pres[i - 1] > 0)
    result = {"logits": logits, "loss": np.asarray(loss, f32)}
    for name in spec.params:
        result[f"grad.{name}"] = grads[name]
    b1, b2 = f32(betas[0]), f32(betas[1])
    for name in spec.state_keys:  # Adam's first step: m̂ = g, v̂ = g² (up to rounding)
        g = grads[name]
        m_hat = ((f32(1) - b1) * g) / (f32(1) - b1)
        v_hat = ((f32(1) - b2) * g * g) / (f32(1) - b2)
        result[f"after.{name}"] = p[name] - f32(lr) * m_hat / (np.sqrt(v_hat) + f32(eps))
    return {k: np.array(v, dtype=f32, order="C") for k, v in result.items()}


def quietly(fn, *args, **kwargs):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as out:
        value = fn(*args, **kwargs)
    return value, out.getvalue()


def selfcheck(args):
    """Checks `compare` and the bounds on a directory that `make` wrote:

    1. pytorch.safetensors against itself passes (every error 0);
    2. the same step in float64 (rounded to float32) against pytorch.safetensors passes: PyTorch's
       own fp32 rounding must sit well inside the bounds, since another fp32 implementation's
       differs from it by up to about twice that (the worst err/bound column shows the margin);
    3. copies of pytorch.safetensors with one deliberate error each (a wrong element, a scaled
       tensor, a moved parameter, a missing tensor) fail.
    Exits 1 if any of these does not hold."""
    import torch
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file

    want = os.path.join(args.dir, "pytorch.safetensors")
    for path in (want, os.path.join(args.dir, "init.safetensors"), os.path.join(args.dir, "batch.safetensors")):
        if not os.path.isfile(path):
            sys.exit(f"{path}: no such file (run make first)")
    ref = load_torch(want)
    spec, exact = detect_model(ref)
    if not exact:
        sys.exit(f"{want}: its tensor names are not those of any model")
    with safe_open(want, framework="np") as f:
        meta = f.metadata() or {}
    lr = float(meta.get("lr", args.lr))
    if optimizer_of(meta)[0] != "adam" or optimizer_of(meta)[5] != 0:
        sys.exit(f"{want}: selfcheck's float64 and sequential steps are Adam's without weight decay; "
                 "make the directory without optimizer flags (`run` checks the other optimizers)")
    ok = True

    print(f"1. {want} against itself (model {spec.name})")
    passed, text = quietly(compare_files, want, want, lr, 1e-8)
    print(text.rstrip().splitlines()[-1])
    ok &= passed

    print(f"\n2. the step in float64 (rounded to float32) against PyTorch's float32 step")
    batch = load_torch(os.path.join(args.dir, "batch.safetensors"))
    f64 = os.path.join(args.dir, "float64.safetensors")
    save_file(float64_step(spec, load_torch(os.path.join(args.dir, "init.safetensors")), batch["x"], batch["y"], lr), f64)
    ok &= compare_files(f64, want, lr, 1e-8, label="float64 step")

    if spec.chain:
        print(f"\n2b. the step in plain numpy float32 with sequential sums against PyTorch's float32 step")
        from safetensors.numpy import save_file as save_np

        seq = os.path.join(args.dir, "sequential-fp32.safetensors")
        save_np(sequential_fp32_step(spec, load_torch(os.path.join(args.dir, "init.safetensors")), batch["x"], batch["y"], lr), seq)
        ok &= compare_files(seq, want, lr, 1e-8, label="sequential fp32 step")

    print("\n3. deliberate errors, each of which must fail:")
    weight, bias = spec.params[0], spec.params[-1]
    tol = spec.rtol + spec.atol_scale

    def at_max(t):
        return int(t.abs().flatten().argmax())

    def bump(name, how):
        def change(d):
            t = d[name].clone()
            flat = t.view(-1)
            how(t, flat)
            d[name] = t
        return change

    cases = [
        ("logits: largest element + 1e-3·max|logits| (a wrong index or term)",
         bump("logits", lambda t, f: f.__setitem__(at_max(t), f[at_max(t)] + 1e-3 * t.abs().max()))),
        ("loss × (1 + 1e-4)", bump("loss", lambda t, f: f.mul_(1 + 1e-4))),
        (f"grad.{weight} × (1 + 10·(rtol + atol_scale)) = × {1 + 10 * tol:g} (a scale slip)",
         bump(f"grad.{weight}", lambda t, f: f.mul_(1 + 10 * tol))),
        (f"grad.{bias}: largest element set to 0 (a missing term)",
         bump(f"grad.{bias}", lambda t, f: f.__setitem__(at_max(t), 0.0))),
        (f"after.{weight}: the element with the largest gradient moved by lr/10",
         bump(f"after.{weight}", lambda t, f: f.__setitem__(at_max(ref[f"grad.{weight}"]),
                                                            f[at_max(ref[f"grad.{weight}"])] + lr / 10))),
        (f"grad.{weight} missing", lambda d: d.pop(f"grad.{weight}")),
    ]
    if spec.zero_grad_params:
        zero = sorted(spec.zero_grad_params)[0]
        # The bug this bound is there for (BatchNorm's mean subtraction missing) gives a bias
        # gradient ~|grad.batchnorm.bias|; a tenth of that must fail already.
        bn = zero.replace("conv", "batchnorm")
        cases.append((f"grad.{zero} (true value 0) + 0.1·max|grad.{bn}| (mean not subtracted)",
                      bump(f"grad.{zero}", lambda t, f: f.add_(0.1 * ref[f"grad.{bn}"].abs().max()))))
    stats = [k for k in spec.state_keys if k.endswith("running_mean")]
    if stats:
        cases.append((f"after.{stats[0]}: first element + 1e-4", bump(f"after.{stats[0]}", lambda t, f: f.__setitem__(0, f[0] + 1e-4))))
        tracked = stats[0].replace("running_mean", "num_batches_tracked")
        cases.append((f"after.{tracked} + 1", bump(f"after.{tracked}", lambda t, f: f.add_(1))))
    bad = os.path.join(args.dir, "perturbed.safetensors")
    for what, change in cases:
        d = dict(ref)
        change(d)
        save_file(d, bad)
        passed, _ = quietly(compare_files, bad, want, lr, 1e-8)
        print(f"  {what:<96} {'passed: WRONG' if passed else 'fails, as it must'}")
        ok &= not passed
    os.remove(bad)
    print(f"\nselfcheck: {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------------------------------------
# run


def run(args):
    make(args)
    want = os.path.join(args.dir, "pytorch.safetensors")
    ok = True
    for backend in ["cpu", "gpu"]:
        out = os.path.join(args.dir, f"wgsl-cnn-{backend}.safetensors")
        # --model is an option of `step` (global flags such as --backend go before it). The
        # default model goes without it, so lenet5 runs with binaries older than the option too.
        model = [] if args.model == DEFAULT_MODEL else ["--model", args.model]
        cmd = [args.bin, "--backend", backend, "step", *model,
               "--init", os.path.join(args.dir, "init.safetensors"),
               "--batch", os.path.join(args.dir, "batch.safetensors"),
               "--out", out, *optimizer_flags(args)]
        print("\n$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            print(f"wgsl-cnn step --backend {backend} failed")
            ok = False
            continue
        ok &= compare_files(out, want, args.lr, 1e-8, label=f"wgsl-cnn --backend {backend}",
                            model=args.model)
    print(f"\nparity with PyTorch: {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def make_options(p):
        p.add_argument("--dir", required=True, help="output directory")
        p.add_argument("--model", default=DEFAULT_MODEL,
                       help="the model to build, a name or a model file (as `wgsl-cnn step --model`) [default: %(default)s]")
        p.add_argument("--batch-size", type=int, default=100)
        p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the model; also picks the images")
        p.add_argument("--mnist", help="directory with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]; random x if absent")
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam",
                       help="torch.optim.Adam, AdamW or SGD, as `wgsl-cnn step --optimizer` [default: %(default)s]")
        p.add_argument("--momentum", type=float, default=0.0, help="SGD's momentum")
        p.add_argument("--dampening", type=float, default=0.0, help="SGD's dampening")
        p.add_argument("--nesterov", action="store_true", help="SGD's Nesterov momentum")
        p.add_argument("--weight-decay", type=float, default=None,
                       help="weight decay [default: PyTorch's: 0, for adamw 0.01]")

    make_options(sub.add_parser("make", help="init, batch and PyTorch's step output"))
    p = sub.add_parser("compare", help="compare a step output (GOT) to the reference (WANT)")
    p.add_argument("got")
    p.add_argument("want")
    p.add_argument("--lr", type=float, default=None,
                   help="the step's learning rate (for the after-step bound) [default: WANT's `lr` metadata, else 1e-3]")
    p.add_argument("--eps", type=float, default=1e-8, help="Adam's eps (for the Adam bound)")
    p.add_argument("--model",
                   help="whose bounds to use, a name or a model file [default: the model whose tensor names WANT holds]")
    p = sub.add_parser("run", help="make, then wgsl-cnn step on cpu and gpu, each compared")
    make_options(p)
    p.add_argument("--bin", required=True, help="path to the wgsl-cnn binary (target/release/wgsl-cnn)")

    p = sub.add_parser("selfcheck", help="check compare and the bounds on a directory make wrote")
    p.add_argument("--dir", required=True, help="a directory written by make")
    p.add_argument("--lr", type=float, default=1e-3, help="the step's learning rate if the files do not say")

    args = ap.parse_args()
    {"make": make, "compare": compare, "run": run, "selfcheck": selfcheck}[args.command](args)


if __name__ == "__main__":
    main()
