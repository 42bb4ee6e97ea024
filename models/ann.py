"""ANNs to convert into SNNs: CIFAR-style ResNets (any depth 6n+2) and VGG-style nets.

Both are plain ``torch.nn.Sequential`` models of Conv2d / BatchNorm2d / ReLU (or
clip-floor-shift) / AvgPool2d / Linear and residual :class:`BasicBlock` s, the structure
:mod:`snn2loihi.conversion` reads. Inputs are images with pixels in [0, 1] (no normalisation
layer: BN after the first conv does that job and folds into it). This module, :func:`train`
and the checkpoint helpers run on any torch device (e.g. a GPU machine; no Lava runtime).

- :func:`resnet`: He et al. 2016 §4.2 CIFAR ResNet: 3×3 conv stem (w channels), three
  stages of n basic blocks with w, 2w, 4w channels (stride 2 into stages 2 and 3, projection
  shortcut = 1×1 conv + BN, "option B"), global average pooling, linear classifier;
  ``depth = 6n + 2`` (20, 56, 110, 164 ...), ``w = width`` (16 in the paper).
- :func:`vgg`: conv3×3-BN-ReLU stacks separated by 2×2 average pooling, then a linear
  classifier on the flattened features.

Both take ``activation="relu"`` (default) or ``"qcfs"``: the clip-floor-shift activation
with ``levels`` L and a trainable clip (:class:`snn2loihi.conversion.activation.ClipFloorShift`,
Bu et al. 2022), which makes the ANN convert at small T.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`) hold the builder arguments
and the state dict only, so they load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from snn2loihi.atomic import atomic_path
from snn2loihi.conversion.activation import ClipFloorShift

__all__ = ["BasicBlock", "activation_layer", "activation_label", "resnet_file", "resnet", "vgg", "build",
           "save_checkpoint", "load_checkpoint", "train", "evaluate", "count_layers"]


def activation_layer(activation: str = "relu", levels: int = 8) -> nn.Module:
    """``"relu"`` → ``nn.ReLU()``; ``"qcfs"`` → ``ClipFloorShift(levels)``."""
    if activation == "relu":
        return nn.ReLU()
    if activation == "qcfs":
        return ClipFloorShift(levels)
    raise ValueError(f"unknown activation {activation!r} (relu or qcfs)")


def activation_label(activation: str = "relu", levels: int = 8) -> str:
    """``"relu"`` or ``"qcfs-L{levels}"``: how reports name an ANN's activation."""
    return activation if activation == "relu" else f"{activation}-L{levels}"


def resnet_file(depth: int, width: int, activation: str = "relu", levels: int = 8) -> str:
    """Checkpoint file name of a ResNet: ``resnet{depth}_w{width}_{activation label}.pt``."""
    return f"resnet{depth}_w{width}_{activation_label(activation, levels)}.pt"


class BasicBlock(nn.Module):
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``, 3×3 convs without bias,
    act = ReLU or clip-floor-shift (:func:`activation_layer`).

    Shapes: (N, C_in, H, W) → (N, C_out, H/stride, W/stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, activation: str = "relu",
                 levels: int = 8):
        super().__init__()
        self.act1 = activation_layer(activation, levels)
        self.act2 = activation_layer(activation, levels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet(depth: int = 20, width: int = 16, in_channels: int = 1, num_classes: int = 10,
           activation: str = "relu", levels: int = 8) -> nn.Sequential:
    """CIFAR-style ResNet-``depth`` (depth = 6n + 2) with ``width`` stem channels and
    ``activation`` (:func:`activation_layer`) after every conv."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n + 2 with n >= 1 (20, 56, 110 ...), found {depth}")
    n = (depth - 2) // 6
    layers: list = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                    activation_layer(activation, levels)]
    channels = width
    for stage in range(3):
        out = width << stage
        for k in range(n):
            layers.append(BasicBlock(channels, out, 2 if stage and k == 0 else 1, activation, levels))
            channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return _init(nn.Sequential(*layers))


def vgg(config: Sequence = (16, "A", 32, "A", 64), in_channels: int = 1, num_classes: int = 10,
        input_size: int = 28, activation: str = "relu", levels: int = 8) -> nn.Sequential:
    """VGG-style net: integers are conv3×3-BN-act with that many channels, ``"A"`` a 2×2
    average pool (act: :func:`activation_layer`)."""
    layers: list = []
    channels, size = in_channels, input_size
    for item in config:
        if item == "A":
            layers.append(nn.AvgPool2d(2))
            size //= 2
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False), nn.BatchNorm2d(int(item)),
                       activation_layer(activation, levels)]
            channels = int(item)
    layers += [nn.Flatten(), nn.Linear(channels * size * size, num_classes)]
    return _init(nn.Sequential(*layers))


def _init(model: nn.Sequential) -> nn.Sequential:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


BUILDERS: dict = {"resnet": resnet, "vgg": vgg}


def build(arch: dict) -> nn.Sequential:
    """``{"name": "resnet" | "vgg", **builder arguments}`` → model."""
    args = dict(arch)
    name = args.pop("name", None)
    if name not in BUILDERS:
        raise ValueError(f"unknown architecture {name!r} (known: {', '.join(BUILDERS)})")
    return BUILDERS[name](**args)


def count_layers(model: nn.Module) -> int:
    """Weight layers (Conv2d + Linear): the depth in ResNet-n naming (shortcut 1×1 convs excluded)."""
    return sum(1 for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name)


def save_checkpoint(path: str, model: nn.Module, arch: dict, meta: Optional[dict] = None) -> None:
    """Write ``{"arch", "state_dict", "meta"}`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        torch.save({"arch": dict(arch), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "meta": dict(meta or {})}, tmp)


def load_checkpoint(path: str) -> tuple[nn.Sequential, dict, dict]:
    """(model in eval mode, arch, meta) from :func:`save_checkpoint`'s file (weights only)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "arch" not in data or "state_dict" not in data:
        raise ValueError(f"{path}: not an ANN checkpoint (needs 'arch' and 'state_dict')")
    model = build(data["arch"])
    model.load_state_dict(data["state_dict"])
    return model.eval(), data["arch"], data.get("meta", {})


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random shifts by up to 2 pixels (zero padding)."""
    flip = torch.rand(len(x), generator=gen, device="cpu") < 0.5
    x = torch.where(flip.to(x.device).reshape(-1, 1, 1, 1), x.flip(-1), x)
    pad = F.pad(x, (2, 2, 2, 2))
    dy, dx = torch.randint(0, 5, (2,), generator=gen).tolist()
    return pad[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


#: Smallest QCFS clip λ training leaves: λ is projected back to it after every step. (A 2-epoch
#: ResNet-110 run at lr 0.1 drove two clips below 0, which the converter refuses.)
CLIP_FLOOR = 1e-2


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 128,
          lr: float = 0.1, weight_decay: float = 5e-4, seed: int = 0, augment: bool = True,
          device: str = "cpu", log: Optional[Callable[[str], None]] = print) -> list:
    """SGD (Nesterov momentum 0.9, cosine learning rate with a one-epoch warm-up) on images
    ``x`` (N, C, H, W) in [0, 1] and labels ``y`` (N,); QCFS clips are kept ≥ ``CLIP_FLOOR``.
    Returns per-epoch (loss, accuracy)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x) / batch_size)
    warm = max(1, steps // max(epochs, 1))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    clips = [m.clip for m in model.modules() if isinstance(m, ClipFloorShift)]
    history = []
    for epoch in range(epochs):
        start, order = time.time(), torch.randperm(len(x), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for k in range(0, len(x), batch_size):
            idx = order[k:k + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if augment:
                xb = _augment(xb, gen)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # keep every QCFS clip λ positive (it becomes the SNN's threshold)
                for clip in clips:
                    clip.clamp_(min=CLIP_FLOOR)
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
        history.append((total / seen, correct / seen))
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f} train acc {correct / seen:.4f} "
                f"({time.time() - start:.0f} s)")
    return history


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500, device: str = "cpu") -> float:
    """Accuracy of ``model`` on (x, y)."""
    model.to(device).eval()
    correct = sum(int((model(x[k:k + batch_size].to(device)).argmax(1) == y[k:k + batch_size].to(device)).sum())
                  for k in range(0, len(x), batch_size))
    return correct / len(x)
