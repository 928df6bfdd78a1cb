#!/usr/bin/env python3
"""Parity of `wgsl-cnn step` with PyTorch: one training step of the seed's LeNet-5.

Subcommands (see scripts/README.md):
  make    --dir D [--batch-size N] [--seed S] [--mnist DIR] [--lr LR]
          writes D/init.safetensors (PyTorch state_dict), D/batch.safetensors (x, y) and
          D/pytorch.safetensors (logits, loss, grad.*, after.*) from one PyTorch step.
  compare GOT.safetensors WANT.safetensors [--lr LR] [--eps EPS]
          per-tensor errors of GOT against the reference WANT; exits 1 on any failure.
  run     --dir D --bin PATH/wgsl-cnn [make's options]
          make, then `wgsl-cnn step` on --backend cpu and --backend gpu, each compared.

`make` and `run` need torch, numpy and safetensors; `compare` needs only numpy and safetensors.
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

# The parameters of the model, in PyTorch's names (the Adam-updated entries of the state_dict).
PARAMS = [
    f"{layer}.{kind}"
    for layer in ["conv1", "batchnorm1", "conv2", "batchnorm2", "fc1", "fc2"]
    for kind in ["weight", "bias"]
]
# Conv biases feed BatchNorm, which subtracts the per-channel mean: their true gradient is 0.
ZERO_GRAD_PARAMS = {"conv1.bias", "conv2.bias"}
# The state_dict in PyTorch's order, and the order of the comparison table.
STATE_KEYS = [
    f"{layer}.{kind}"
    for layer in ["conv1", "batchnorm1", "conv2", "batchnorm2", "fc1", "fc2"]
    for kind in (
        ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
        if layer.startswith("batchnorm")
        else ["weight", "bias"]
    )
]
TABLE_ORDER = ["logits", "loss"] + [f"grad.{p}" for p in PARAMS] + [f"after.{k}" for k in STATE_KEYS]

# ---------------------------------------------------------------------------------------------
# Tolerances (fp32 on both sides; the two compute the same math with sums in different orders).
#
# logits, loss, grad.* : |got − want| ≤ RTOL·|want| + ATOL_SCALE·max|want|. fp32 sums of up to
#   57,600 terms (conv1's weight gradient: batch 100 × 24 × 24 positions) reordered differ by a
#   few 1e-7 relative; 1e-5 leaves margin without hiding a wrong index or a missing term
#   (those show up at ≥ 1e-3). The floor scaled to the tensor's largest magnitude covers
#   elements near zero, whose relative error is meaningless.
RTOL = 1e-5
ATOL_SCALE = 1e-5
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
#   then the whole gradient through it goes elsewhere. `make` lists such points of the batch.
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


def float64_diagnostics(init, x, y):
    """The step once more in float64 (closest to exact), for two things the comparison needs:

    * for each conv bias (true gradient 0): n and Σ|t| per channel, t the gradient of the loss
      with respect to the conv's output (the terms summed into the bias gradient);
    * fragile decisions: ReLU inputs within FRAGILE_ABS of 0, and max-pool windows whose two
      largest inputs are within FRAGILE_ABS of each other, where an fp32 rounding difference can
      legitimately send the gradient another way (printed as a hint when a comparison fails).
    """
    import copy

    import torch
    import torch.nn.functional as F

    model = lenet5_class()()
    model.load_state_dict(init)
    model = model.double().train()
    check = copy.deepcopy(model)
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
        for i in torch.nonzero(pre.detach().abs().flatten() < FRAGILE_ABS).flatten().tolist():
            g = post.grad.flatten()[i].item()  # the gradient this input gets when it counts as > 0
            at = [int(v) for v in np.unravel_index(i, tuple(pre.shape))]
            fragile.append({"where": where, "at": at, "value": pre.flatten()[i].item(), "grad": g})
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


def make(args):
    import torch
    from safetensors.torch import save_file

    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    os.makedirs(args.dir, exist_ok=True)
    n = args.batch_size
    if n < 1:
        sys.exit("--batch-size must be at least 1")

    torch.manual_seed(args.seed)
    model = lenet5_class()()
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

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

    # One step exactly as the seed's training loop does it.
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
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

    scale, fragile = float64_diagnostics(init, x, y)
    meta = {"torch": torch.__version__, "seed": str(args.seed), "lr": str(args.lr), "batch": source,
            ZERO_GRAD_META: json.dumps(scale), FRAGILE_META: json.dumps(fragile)}
    save_file(init, os.path.join(args.dir, "init.safetensors"), metadata=meta)
    save_file({"x": x, "y": y}, os.path.join(args.dir, "batch.safetensors"), metadata=meta)
    save_file({k: v.contiguous() for k, v in result.items()}, os.path.join(args.dir, "pytorch.safetensors"), metadata=meta)
    print(f"torch {torch.__version__}: batch {n} ({source}), seed {args.seed}, loss {loss.item():.6f}")
    print(f"wrote {args.dir}/init.safetensors, batch.safetensors, pytorch.safetensors")
    print_fragile(fragile)


def print_fragile(fragile):
    if not fragile:
        print(f"fragile decisions: none (no ReLU input or max-pool tie within {FRAGILE_ABS:g}, float64)")
        return
    print(f"fragile decisions: {len(fragile)} within {FRAGILE_ABS:g} of their threshold (float64); a backend may")
    print("  take the other side under fp32 rounding and route this gradient differently:")
    for f in sorted(fragile, key=lambda f: -abs(f["grad"]))[:12]:
        what = f"input {f['value']:+.3e}" if "value" in f else f"top-2 gap {f['gap']:.3e}"
        print(f"  {f['where']:<17} at {str(f['at']):<16} {what}  gradient {f['grad']:+.6e}")
    if len(fragile) > 12:
        print(f"  ... and {len(fragile) - 12} more with smaller gradients")


# ---------------------------------------------------------------------------------------------
# compare


def compare_files(got_path, want_path, lr, eps, label=None):
    """Prints one row per tensor; returns True when every tensor passes."""
    for path in (got_path, want_path):
        if not os.path.isfile(path):
            sys.exit(f"{path}: no such file")
    got, want = load_file(got_path), load_file(want_path)
    with safe_open(want_path, framework="np") as f:
        meta = f.metadata() or {}
    noise_scale = json.loads(meta.get(ZERO_GRAD_META, "{}"))
    fragile = json.loads(meta.get(FRAGILE_META, "[]"))
    ok = True
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        print(f"tensor names differ: missing from {got_path}: {missing}; extra: {extra}")
        ok = False
    print(f"\n{label or got_path} vs {want_path}")
    header = f"{'tensor':<38} {'elements':>8} {'max abs err':>12} {'rel L2 err':>11} {'worst err/bound':>15}  result"
    print(header)
    print("-" * len(header))
    names = sorted((k for k in want if k in got), key=lambda k: (TABLE_ORDER + [k]).index(k))
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
        if param in PARAMS:
            gg = got[f"grad.{param}"].astype(np.float64).ravel()
            gw = want[f"grad.{param}"].astype(np.float64).ravel()
            delta = 2.0 * np.abs(gg - gw)
            # Gradients of opposite signs: the interval between them contains 0, where the slope
            # of g/(|g|+eps) is 1/eps, so the bound is lr·δ/eps (capped at 2·lr).
            gmin = np.where(np.sign(gg) == np.sign(gw), np.minimum(np.abs(gg), np.abs(gw)), 0.0)
            bound = ADAM_FLOOR + np.minimum(2.0 * lr, lr * eps * delta / (gmin + eps) ** 2)
        elif param is not None:  # running statistics
            bound = STAT_ATOL + STAT_RTOL * np.abs(w64)
        elif name[len("grad."):] in ZERO_GRAD_PARAMS:
            scale = noise_scale.get(name[len("grad."):])
            if scale is None:
                bound = np.full_like(w64, ZERO_GRAD_ATOL)
            else:
                bound = np.sqrt(scale["terms"]) * F32_U * np.asarray(scale["abs_sum"], dtype=np.float64)
        else:  # logits, loss, gradients
            scale = np.max(np.abs(w64)) if w64.size else 0.0
            bound = ATOL_SCALE * scale + RTOL * np.abs(w64)
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
        print_fragile(fragile)
    return ok


def compare(args):
    sys.exit(0 if compare_files(args.got, args.want, args.lr, args.eps) else 1)


# ---------------------------------------------------------------------------------------------
# run


def run(args):
    make(args)
    want = os.path.join(args.dir, "pytorch.safetensors")
    ok = True
    for backend in ["cpu", "gpu"]:
        out = os.path.join(args.dir, f"wgsl-cnn-{backend}.safetensors")
        cmd = [args.bin, "--backend", backend, "step",
               "--init", os.path.join(args.dir, "init.safetensors"),
               "--batch", os.path.join(args.dir, "batch.safetensors"),
               "--out", out, "--lr", str(args.lr)]
        print("\n$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            print(f"wgsl-cnn step --backend {backend} failed")
            ok = False
            continue
        ok &= compare_files(out, want, args.lr, 1e-8, label=f"wgsl-cnn --backend {backend}")
    print(f"\nparity with PyTorch: {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def make_options(p):
        p.add_argument("--dir", required=True, help="output directory")
        p.add_argument("--batch-size", type=int, default=100)
        p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the model; also picks the images")
        p.add_argument("--mnist", help="directory with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]; random x if absent")
        p.add_argument("--lr", type=float, default=1e-3)

    make_options(sub.add_parser("make", help="init, batch and PyTorch's step output"))
    p = sub.add_parser("compare", help="compare a step output (GOT) to the reference (WANT)")
    p.add_argument("got")
    p.add_argument("want")
    p.add_argument("--lr", type=float, default=1e-3, help="the step's learning rate (for the Adam bound)")
    p.add_argument("--eps", type=float, default=1e-8, help="Adam's eps (for the Adam bound)")
    p = sub.add_parser("run", help="make, then wgsl-cnn step on cpu and gpu, each compared")
    make_options(p)
    p.add_argument("--bin", required=True, help="path to the wgsl-cnn binary (target/release/wgsl-cnn)")

    args = ap.parse_args()
    {"make": make, "compare": compare, "run": run}[args.command](args)


if __name__ == "__main__":
    main()
