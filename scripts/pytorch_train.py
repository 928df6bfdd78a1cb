#!/usr/bin/env python3
"""The seed notebook's training run in PyTorch, for comparing whole runs with `wgsl-cnn train`.

    python scripts/pytorch_train.py --mnist path/to/mnist [--model lenet5|mlp|tied] [--epochs 5]
        [--batch-size 100] [--lr 0.001] [--seed 0] [--threads N]

The notebook's recipe: its model (the classes of pytorch_parity.py), PyTorch's default init,
pixels / 255, CrossEntropyLoss, Adam, a shuffled DataLoader-style batch order; it prints the
notebook's lines ("Epoch [1/5], Step [100/600], Loss: …") and the test accuracy after each
epoch in eval mode (`model.eval()`), as `wgsl-cnn train` does. Float32 on the CPU. Its random
draws (init, shuffling) are torch's, not wgsl-cnn's, so the two runs agree in their range, not
in their digits (docs/results.md).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_parity import find_idx, lenet5_class, mlp_class, read_idx, tied_class  # noqa: E402


def load(directory, split):
    stem = "train" if split == "train" else "t10k"
    x = read_idx(find_idx(directory, f"{stem}-images-idx3-ubyte"))
    y = read_idx(find_idx(directory, f"{stem}-labels-idx1-ubyte"))
    if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
        sys.exit(f"{directory}: {split} images {x.shape} and labels {y.shape} do not match")
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist", required=True, help="directory with the four MNIST IDX files (.gz or raw)")
    ap.add_argument("--model", default="lenet5", choices=["lenet5", "mlp", "tied"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch's intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        sys.exit("--epochs and --batch-size must be at least 1, --lr above 0")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = {"lenet5": lenet5_class, "mlp": mlp_class, "tied": tied_class}[args.model]()()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    train_x, train_y = load(args.mnist, "train")
    test_x, test_y = load(args.mnist, "test")
    to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # noqa: E731
    train_x, train_y = to_x(train_x), torch.from_numpy(train_y.astype(np.int64))
    test_x, test_y = to_x(test_x), torch.from_numpy(test_y.astype(np.int64))
    n = train_x.shape[0]
    steps = (n + args.batch_size - 1) // args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, seed {args.seed}", file=sys.stderr)

    for epoch in range(args.epochs):
        model.train()
        start = time.time()
        order = torch.randperm(n)
        for i in range(steps):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            loss = criterion(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if (i + 1) % 100 == 0:
                print(f"Epoch [{epoch + 1}/{args.epochs}], Step [{i + 1}/{steps}], Loss: {loss.item():.4f}", flush=True)
        seconds = time.time() - start
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, test_x.shape[0], 1000):
                correct += (model(test_x[i : i + 1000]).argmax(1) == test_y[i : i + 1000]).sum().item()
        total = test_x.shape[0]
        print(f"Accuracy of the network on the {total} test images: {100 * correct / total} %", flush=True)
        print(f"epoch {epoch + 1} trained in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
