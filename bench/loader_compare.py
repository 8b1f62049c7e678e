"""ResNet-18 training throughput: the project's loop (uint8 data on the device, batched augmentation) versus a
plain torchvision ``DataLoader`` + per-image PIL transforms (the kuangliu/pytorch-cifar way), same model, batch
size, optimizer and images. Prints images/s of each and their ratio.

    python bench/loader_compare.py [--width 1.0] [--batch-size 128] [--steps 30] [--workers 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import record  # noqa: E402

from lib import augment  # noqa: E402
from lib import data as D  # noqa: E402
from lib.batches import BatchLoader  # noqa: E402
from lib.methods.classifier import Classifier  # noqa: E402
from lib.models import build_model  # noqa: E402
from lib.train import amp_dtype, make_optimizer, pick_device  # noqa: E402


def timed(method, batches, steps: int, device) -> float:
    it = iter(batches)
    for _ in range(3):  # warm-up (and DataLoader worker start-up)
        method.train_step(next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        x, y = next(it)
        method.train_step((x, y))
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def plain_dataloader(ds, batch_size: int, workers: int, device):
    import torchvision.transforms as T
    from PIL import Image

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(augment.MEAN, augment.STD)])
    images = ds.train_x.permute(0, 2, 3, 1).numpy()

    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i])), int(ds.train_y[i])

    loader = torch.utils.data.DataLoader(Plain(), batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", default="auto")
    args = ap.parse_args()
    device = pick_device("auto")
    ds = D.load_cifar10(args.data)
    rates = {}
    for name in ("project loop", "DataLoader + PIL"):
        torch.manual_seed(0)
        model = build_model("resnet18", width=args.width)
        method = Classifier(model, make_optimizer(model.parameters(), name="sgd", lr=0.05, nesterov=True))
        method.setup(device, amp_dtype(device))
        if name == "project loop":
            batches = BatchLoader(ds.train_x, ds.train_y, batch_size=args.batch_size, device=device,
                                    channels_last=device.type == "cuda").forever()
        else:
            batches = plain_dataloader(ds, args.batch_size, args.workers, device)
        rates[name] = timed(method, batches, args.steps, device)
        print(f"{name}: {rates[name]:.1f} images/s", flush=True)
    ratio = rates["project loop"] / rates["DataLoader + PIL"]
    setting = (f"resnet18 width {args.width:g}, batch {args.batch_size}, {args.steps} steps, {device}, "
               f"{args.workers} workers, data {ds.source}")
    print(f"ratio project / DataLoader: {ratio:.2f}x ({setting})")
    record.save(f"loader_compare_w{args.width:g}", [{"loader": k, "images_per_s": v} for k, v in rates.items()],
                f"{ratio:.2f}x ({rates['project loop']:.1f} vs {rates['DataLoader + PIL']:.1f} images/s; "
                f"{setting})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
