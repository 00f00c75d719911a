"""Tests of the RGB variant: torchvision-compatible ResNet, temporal shift, RGBRecognizer, video data."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from piumr_skel.rgb import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNet,
    RGBRecognizer,
    VideoClipDataset,
    VideoReadError,
    find_videos,
    load_pretrained,
    read_frames,
    segment_indices,
    temporal_shift,
    tsm_resnet,
    video_frame_count,
)
from piumr_skel.rgb.tsm import TemporalShift

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "ma52" / "videos"
CLIPS = ["0030_01_0002", "0019_02_0078"]  # 75 and 50 frames, 1080×1296


def _real_videos() -> list[Path]:
    paths = [VIDEOS / f"{c}.mp4" for c in CLIPS]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real MA-52 clips not found under {VIDEOS} (../shared/ma52/videos)")
    return paths


# ----------------------------------------------------------------------------- ResNet


# Known torchvision facts: state-dict sizes (num_batches_tracked included) and parameter counts.
TORCHVISION = {"resnet18": (122, 11_689_512), "resnet50": (320, 25_557_032)}

SPOT_KEYS = {
    "resnet18": ["conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
                 "layer1.1.bn2.bias", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                 "layer4.1.conv2.weight", "fc.weight", "fc.bias"],
    "resnet50": ["layer1.0.downsample.0.weight", "layer1.2.conv3.weight", "layer1.2.bn3.weight",
                 "layer3.5.bn2.running_mean", "layer4.0.downsample.1.num_batches_tracked",
                 "layer4.2.conv3.weight", "fc.weight"],
}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_matches_torchvision_layout(arch):
    model = ResNet(arch)
    sd = model.state_dict()
    n_keys, n_params = TORCHVISION[arch]
    assert len(sd) == n_keys
    assert sum(p.numel() for p in model.parameters()) == n_params
    for key in SPOT_KEYS[arch]:
        assert key in sd, key
    # The temporal shift adds no keys: a TSM backbone is the same state dict minus fc.
    tsm_keys = set(tsm_resnet(arch, num_segments=8).state_dict())
    assert tsm_keys == {k for k in sd if not k.startswith("fc.")}
    # v1.5: the Bottleneck stride sits on the 3×3 conv.
    if arch == "resnet50":
        assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)


def test_load_pretrained_round_trip(tmp_path):
    src = ResNet("resnet18", width=8, num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save(src.state_dict(), path)
    dst = tsm_resnet("resnet18", num_segments=4, width=8)   # no fc: fc.* keys are skipped
    load_pretrained(dst, path)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    # A wrapped checkpoint with DDP prefixes loads too.
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    load_pretrained(ResNet("resnet18", width=8), path)


def test_load_pretrained_errors_name_file_and_keys(tmp_path):
    src = ResNet("resnet18", width=8).state_dict()
    path = tmp_path / "bad.pth"
    broken = dict(src)
    del broken["layer1.0.conv1.weight"]
    broken["layer9.weight"] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(ValueError) as err:
        load_pretrained(ResNet("resnet18", width=8), path)
    msg = str(err.value)
    assert str(path) in msg and "layer1.0.conv1.weight" in msg and "layer9.weight" in msg
    torch.save(src, path)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_pretrained(ResNet("resnet18", width=16), path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained(ResNet("resnet18", width=8), tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_pretrained(ResNet("resnet18", width=8), tmp_path / "junk.pth")


# ----------------------------------------------------------------------------- temporal shift


def test_temporal_shift_moves_channel_fractions_by_one_segment():
    n, t, c, h, w = 2, 4, 16, 3, 3
    # Every entry encodes (clip, segment, channel) so each moved value can be traced.
    x = torch.zeros(n, t, c, h, w)
    x += torch.arange(n).view(n, 1, 1, 1, 1) * 1000 + torch.arange(t).view(1, t, 1, 1, 1) * 100 \
        + torch.arange(c).view(1, 1, c, 1, 1) + 1
    y = temporal_shift(x.flatten(0, 1), num_segments=t, shift_div=8).view(n, t, c, h, w)
    fold = c // 8
    # First fold: segment s takes s+1's values; the last segment gets zeros.
    assert torch.equal(y[:, :-1, :fold], x[:, 1:, :fold])
    assert (y[:, -1, :fold] == 0).all()
    # Second fold: segment s takes s-1's values; the first gets zeros.
    assert torch.equal(y[:, 1:, fold:2 * fold], x[:, :-1, fold:2 * fold])
    assert (y[:, 0, fold:2 * fold] == 0).all()
    # The remaining 3/4 of the channels are untouched; nothing leaks between clips.
    assert torch.equal(y[:, :, 2 * fold:], x[:, :, 2 * fold:])
    assert ((y // 1000) == torch.arange(n).view(n, 1, 1, 1, 1))[y > 0].all()
    with pytest.raises(ValueError, match="multiple of num_segments"):
        TemporalShift(3)(x.flatten(0, 1))


def test_shift_is_in_residual_branch_only():
    # With every weight of the residual branch zeroed, a block returns relu(identity): a shift
    # on the identity path would show up, a shift inside the branch does not.
    net = tsm_resnet("resnet18", num_segments=4, width=8).eval()
    block = net.layer1[0]
    for m in (block.conv1, block.conv2):
        torch.nn.init.zeros_(m.weight)
    x = torch.rand(8, 8, 5, 5)
    assert torch.equal(block(x), torch.relu(x))


# ----------------------------------------------------------------------------- RGBRecognizer


def _tfam(channels: int, num_segments: int):
    from piumr_skel.method.tfam import TFAM

    return TFAM(channels, num_anchors=4, num_joints=1, num_frames=num_segments)


def test_erm_and_tfam_differ_only_by_tfam():
    plain = RGBRecognizer("tsm_r18", 5, num_segments=4, tfam=None, width=4)
    with_tfam = RGBRecognizer("tsm_r18", 5, num_segments=4, tfam=_tfam(32, 4), width=4)
    extra = {k for k in with_tfam.state_dict()} - set(plain.state_dict())
    assert extra and all(k.startswith("tfam.") for k in extra)
    assert set(plain.state_dict()) <= set(with_tfam.state_dict())
    # TFAM starts as the identity, so with the same weights both give the same eval output.
    with_tfam.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plain.eval(), with_tfam.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], with_tfam(x)[0], rtol=1e-4, atol=1e-5)


def test_rgb_recognizer_checks_input_and_loads_pretrained(tmp_path):
    model = RGBRecognizer("tsm_r18", 5, num_segments=4, width=8)
    with pytest.raises(ValueError, match="4 segments"):
        model(torch.zeros(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, T, 3, H, W\)"):
        model(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="unknown RGB backbone"):
        RGBRecognizer("tsm_r101", 5)
    src = ResNet("resnet18", width=8)
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    loaded = RGBRecognizer("tsm_r18", 5, num_segments=4, width=8, pretrained=tmp_path / "r18.pth")
    assert torch.equal(loaded.backbone.layer3[1].conv2.weight, src.layer3[1].conv2.weight)


def test_girl_loss_backpropagates_through_rgb_model():
    from piumr_skel.method.girl import GIRLoss, style_descriptor

    torch.manual_seed(0)
    model = RGBRecognizer("tsm_r18", num_classes=6, num_segments=4, tfam=_tfam(32, 4), width=4)
    x = torch.randn(8, 4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    target = torch.arange(8) % 6
    logits, feats, aux = model(x)
    style = style_descriptor(feats)
    assert style.shape == (8, 2 * feats.shape[1]) and not style.requires_grad
    loss, stats = GIRLoss(num_groups=2)(logits, target, style, generator=torch.Generator().manual_seed(0))
    (loss + 0.1 * aux["wasserstein"] + 0.1 * aux["consistency"]).backward()
    assert torch.isfinite(loss)
    assert model.fc.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- video data


def test_segment_indices_tsn():
    assert segment_indices(80, 8, train=False).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = segment_indices(75, 8, train=True, rng=rng)
        edges = np.linspace(0, 75, 9)
        assert ((idx >= np.floor(edges[:-1])) & (idx < edges[1:])).all()
    # Shorter than the number of segments: frames repeat, stay in range.
    short = segment_indices(3, 8, train=True, rng=rng)
    assert short.min() >= 0 and short.max() <= 2 and (np.diff(short) >= 0).all()
    with pytest.raises(ValueError, match="rng"):
        segment_indices(10, 4, train=True)


class _CountingCapture:
    """cv2.VideoCapture wrapper that counts decode calls, to prove only sampled frames are decoded."""

    counts: dict[str, int] = {}

    def __init__(self, *args):
        self._cap = _REAL_CAPTURE(*args)

    def __getattr__(self, name):
        return getattr(self._cap, name)

    def _count(self, name):
        _CountingCapture.counts[name] = _CountingCapture.counts.get(name, 0) + 1

    def grab(self):
        self._count("grab")
        return self._cap.grab()

    def retrieve(self, *a):
        self._count("retrieve")
        return self._cap.retrieve(*a)

    def read(self, *a):
        self._count("read")
        return self._cap.read(*a)

    def set(self, *a):
        self._count("set")
        return self._cap.set(*a)


_REAL_CAPTURE = cv2.VideoCapture


@pytest.mark.real
def test_dataset_on_real_clips_decodes_only_sampled_frames(monkeypatch):
    paths = _real_videos()
    num_frames = [video_frame_count(p) for p in paths]
    monkeypatch.setattr(cv2, "VideoCapture", _CountingCapture)
    for train in (True, False):
        ds = VideoClipDataset(paths, [3, 5], ["0030", "0019"], num_segments=8, train=train,
                              size=112, scale_size=128, seed=1)
        for i in range(len(ds)):
            _CountingCapture.counts = {}
            x, label, index = ds[i]
            assert x.shape == (8, 3, 112, 112) and x.dtype == torch.float32
            assert (label, index) == ([3, 5][i], i)
            counts = _CountingCapture.counts
            assert counts.get("retrieve") == 8 and counts.get("read", 0) == 0
            # Grabbing stops at the last sampled frame (short jumps are grabbed, not sought).
            assert counts.get("set", 0) == 0
            assert counts["grab"] <= num_frames[i]
            if not train:
                last = segment_indices(num_frames[i], 8, train=False)[-1]
                assert counts["grab"] == last + 1 < num_frames[i]
        # Normalised pixels lie inside the ImageNet-normalised [0, 1] range.
        lo, hi = -IMAGENET_MEAN / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD
        assert (x.amin(dim=(0, 2, 3)).numpy() >= lo - 1e-5).all()
        assert (x.amax(dim=(0, 2, 3)).numpy() <= hi + 1e-5).all()


@pytest.mark.real
def test_sparse_decoding_matches_sequential_read():
    path = _real_videos()[0]
    cap = _REAL_CAPTURE(str(path))
    full = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        full.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(full) == video_frame_count(path)
    idx = [70, 3, 40, 40, 12]
    for threshold in (0, 1000):  # always seek / always grab
        frames = read_frames(path, idx, seek_threshold=threshold)
        for got, i in zip(frames, idx):
            assert np.array_equal(got, full[i]), (threshold, i)
    with pytest.raises(VideoReadError, match=path.name):
        read_frames(path, [len(full) + 5])


@pytest.mark.real
def test_dataset_randomness_is_explicit_and_epoch_dependent():
    paths = _real_videos()[:1]
    kw = dict(num_segments=4, size=64, scale_size=72, seed=3)
    a = VideoClipDataset(paths, [0], ["s"], train=True, **kw)
    b = VideoClipDataset(paths, [0], ["s"], train=True, **kw)
    assert torch.equal(a[0][0], b[0][0])
    diffs = []
    for epoch in range(1, 4):
        b.set_epoch(epoch)
        diffs.append(not torch.equal(a[0][0], b[0][0]))
    assert any(diffs)
    test = VideoClipDataset(paths, [0], ["s"], train=False, **kw)
    first = test[0][0]
    test.set_epoch(5)
    assert torch.equal(first, test[0][0])


def test_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoClipDataset([tmp_path / "nope.mp4"], [0], ["s"], train=True)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00" * 1000)
    ds = VideoClipDataset([bad], [0], ["s"], train=False)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        ds[0]
    with pytest.raises(ValueError, match="same length"):
        VideoClipDataset([bad], [0, 1], ["s"], train=False)
    with pytest.raises(ValueError, match="scale_size 256 must be >= crop size 320"):
        VideoClipDataset([bad], [0], ["s"], train=False, size=320)
    assert VideoClipDataset([bad], [0], ["s"], train=False, size=112, scale_size=None).scale_size == 128


def test_find_videos(tmp_path):
    (tmp_path / "videos_train").mkdir()
    (tmp_path / "videos_val").mkdir()
    (tmp_path / "videos_train" / "0001_01_0001.mp4").write_bytes(b"x")
    (tmp_path / "videos_val" / "0002_01_0003.MP4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a video")
    found = find_videos(tmp_path)
    assert found == {"0001_01_0001": tmp_path / "videos_train" / "0001_01_0001.mp4",
                     "0002_01_0003": tmp_path / "videos_val" / "0002_01_0003.MP4"}
    (tmp_path / "videos_val" / "0001_01_0001.avi").write_bytes(b"x")
    with pytest.raises(ValueError, match="occurs twice"):
        find_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match="absent"):
        find_videos(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        find_videos(tmp_path / "empty")


@pytest.mark.real
def test_two_clip_smoke_run():
    """Decode 2 real clips, train a tiny TSM-R18 + TFAM with GIRL for 2 steps, evaluate."""
    from piumr_skel.method.girl import GIRLoss, style_descriptor

    paths = _real_videos()
    torch.manual_seed(0)
    t = 4
    train_ds = VideoClipDataset(paths, [3, 5], ["0030", "0019"], num_segments=t, train=True,
                                size=64, scale_size=72)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=2, shuffle=False)
    model = RGBRecognizer("tsm_r18", num_classes=52, num_segments=t, tfam=True, width=4,
                          tfam_kwargs={"num_anchors": 4})
    girl = GIRLoss(num_groups=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for epoch in range(2):
        train_ds.set_epoch(epoch)
        for x, y, _ in loader:
            logits, feats, aux = model(x)
            loss, _ = girl(logits, y, style_descriptor(feats), generator=gen)
            loss = loss + 0.1 * aux["wasserstein"] + 0.1 * aux["consistency"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
    model.eval()
    test_ds = VideoClipDataset(paths, [3, 5], ["0030", "0019"], num_segments=t, train=False,
                               size=64, scale_size=72)
    with torch.no_grad():
        x = torch.stack([test_ds[i][0] for i in range(2)])
        scores = model(x)[0].softmax(-1)
    assert scores.shape == (2, 52) and torch.allclose(scores.sum(-1), torch.ones(2))
