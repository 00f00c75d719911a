"""ResNet-18/50 in plain torch with torchvision's parameter names, so ImageNet state dicts load as-is.

torchvision itself is not imported: its PyPI wheels do not load beside the CPU torch wheel this
project pins (.ci/run). The layout follows torchvision's ResNet v1.5 (stride on the 3×3 conv
of a Bottleneck), key for key, so `model.load_state_dict(torchvision_checkpoint)` works.

Each residual block carries a parameter-free `shift` module applied to the input of its residual
branch only (identity by default); `piumr_skel.rgb.tsm` replaces it with a temporal shift. Because
the shift has no parameters, the state-dict keys stay exactly torchvision's.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

# torchvision's stage depths and block types.
ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def _conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs; (B, C_in, H, W) -> (B, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.shift: nn.Module = nn.Identity()  # replaced by TemporalShift in a TSM network
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carries the stride, v1.5), 1×1 expand; output channels planes·4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.shift: nn.Module = nn.Identity()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift(x))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-compatible ResNet.

    width: channels of conv1 and layer1 (64 in torchvision; small values give tiny test models,
    which then cannot load ImageNet weights). num_classes=None builds no `fc` (a feature extractor).
    forward_features: (B, 3, H, W) -> (B, out_channels, H/32, W/32).
    """

    def __init__(self, arch: str = "resnet50", *, width: int = 64, num_classes: int | None = 1000):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown ResNet arch {arch!r}; choices: {', '.join(ARCHS)}")
        if width < 1:
            raise ValueError(f"ResNet width must be >= 1, got {width}")
        kind, depths = ARCHS[arch]
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.arch = arch
        self.width = width
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, depths[0])
        self.layer2 = self._make_layer(block, width * 2, depths[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, depths[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, depths[3], stride=2)
        self.out_channels = width * 8 * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.out_channels, num_classes) if num_classes is not None else None
        self._init_weights()

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's init (Kaiming fan-out for convs, unit BN); uses torch's global generator,
        # which the trainer seeds once for model init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def blocks(self) -> list[nn.Module]:
        """Every residual block, in order (where TSM places its shifts)."""
        return [b for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for b in layer]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> unpooled (B, out_channels, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, num_classes), or pooled features (B, out_channels) without fc."""
        x = self.avgpool(self.forward_features(x)).flatten(1)
        return x if self.fc is None else self.fc(x)


def resnet18(**kw) -> ResNet:
    return ResNet("resnet18", **kw)


def resnet50(**kw) -> ResNet:
    return ResNet("resnet50", **kw)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types; name the file either way
        raise ValueError(f"pretrained weights {path}: cannot be read as a torch state dict ({exc})") from exc
    # Accept the common wrappers ({"state_dict": ...}, {"model": ...}) besides a bare state dict.
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"pretrained weights {path}: expected a state dict of tensors, "
                         f"got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pretrained(model: ResNet, path: str | Path) -> None:
    """Load an ImageNet ResNet state dict (torchvision key layout) into `model`, skipping `fc`.

    Strict on the backbone: any missing or unexpected key, or a shape mismatch (e.g. a tiny
    `width`), raises ValueError naming the file and the keys.
    """
    path = Path(path)
    src = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = sorted(own.keys() - src.keys()), sorted(src.keys() - own.keys())
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            if not keys:
                return "none"
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        raise ValueError(f"pretrained weights {path} do not match {model.arch}: "
                         f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}")
    bad = [f"{k} {tuple(src[k].shape)} vs {tuple(v.shape)}"
           for k, v in own.items() if src[k].shape != v.shape]
    if bad:
        raise ValueError(f"pretrained weights {path} do not match {model.arch} (width {model.width}): "
                         f"shape mismatch (file vs model) for {'; '.join(bad[:5])}"
                         + (f" ... ({len(bad)} in all)" if len(bad) > 5 else ""))
    model.load_state_dict(src, strict=False)
