"""Smoke tests of the performance benchmarks: each runs in --quick mode and prints its ratio lines;
the reference ST-GCN of train_speed.py is checked to be the same network as ours."""
from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
NUMBER = r"\d+\.\d+"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # load_speed imports train_speed as a sibling script, as `python benchmarks/load_speed.py` allows.
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_train_speed_quick_prints_ratios() -> None:
    # A subprocess, as the lead runs it: the script must work from the command line.
    proc = subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "--quick", "--warmup", "0",
                           "--repeats", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(rf"ratio ours/reference samples/s = {NUMBER} \(target >= 1.0: (met|NOT met)\)", out), out
    for variant in ("TFAM", "GIRL"):
        assert re.search(rf"overhead \+{variant}/ERM step time = {NUMBER}", out), out
    assert re.search(rf"overhead full/ERM step time = {NUMBER} \(target <= 1.25: (met|NOT met)\)", out), out
    for row in ("reference ST-GCN", "ours ERM", "ours +TFAM", "ours +GIRL", "ours full (TFAM+GIRL)"):
        assert re.search(rf"{re.escape(row)} +{NUMBER} ms/step +{NUMBER} samples/s", out), out
    diff = float(re.search(r"on shared weights = (\S+)", out).group(1))
    assert diff < 1e-4, out


@pytest.mark.slow
def test_reference_stgcn_is_our_network(monkeypatch: pytest.MonkeyPatch) -> None:
    ts = _load("train_speed", monkeypatch)
    from piumr_skel.models import create_backbone
    from piumr_skel.skeleton.layouts import get_layout

    torch.manual_seed(0)
    ours = create_backbone("stgcn", in_channels=3, num_classes=5, layout=get_layout("mp_pose"), base_channels=4)
    # Move the weights off their init values (BN affine, importance) so a wrong mapping shows.
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x = torch.randn(2, 3, 16, ours.layout.num_joints, generator=torch.Generator().manual_seed(1))
    assert ts.reference_agreement(ours, x) < 1e-4
    ref = ts.ReferenceSTGCN(3, 5, ours.graph.A, 4)
    assert ts.count_params(ref) == ts.count_params(ours)
    # A different network must not agree: swap two subsets' kernels in the reference.
    ts.copy_weights_from_ours(ref, ours)
    with torch.no_grad():
        w = ref.blocks[1].gcn.convs
        w[1].weight.copy_(w[2].weight.clone() + 0.5)
    ref.eval(), ours.eval()
    with torch.no_grad():
        assert (ref(x) - ours(x)).abs().max() > 1e-3


def test_train_speed_compile_wraps_only_the_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    # Building is cheap; inductor compiles on the first call, which the benchmark times apart.
    ts = _load("train_speed", monkeypatch)
    x, y = torch.randn(4, 3, 8, 35), torch.randint(5, (4,))
    steps = ts.build_steps(x, y, base_channels=4, num_classes=5, device=torch.device("cpu"), amp=False,
                           names=("erm", "full"), layout_name="mp_pose", compile=True)
    assert [s.name for s in steps] == ["erm+compile", "full+compile"]
    for s in steps:   # the optimiser's module stays the plain one
        assert not isinstance(s.model, torch._dynamo.eval_frame.OptimizedModule)
    cells = [c.cell_contents for c in steps[0].run.__closure__]
    assert any(isinstance(c, torch._dynamo.eval_frame.OptimizedModule) and c._orig_mod is steps[0].model
               for c in cells)
    assert ts.parse_args(["--compile"]).compile and not ts.parse_args([]).compile


def test_store_shape_matches_ma52(monkeypatch: pytest.MonkeyPatch) -> None:
    ls = _load("load_speed", monkeypatch)
    assert ls.store_shape(22_422) == (202, 111)   # MA-52's clip count exactly, ~205 people
    assert ls.store_shape(200) == (2, 100)
    subjects, per = ls.store_shape(997)           # a prime: no exact divisor, rounds up
    assert subjects * per >= 997 and subjects * (per - 1) < 997
    with pytest.raises(ValueError, match="--clips"):
        ls.store_shape(0)


@pytest.mark.slow
def test_load_speed_quick_prints_ratio_and_reuses_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ls = _load("load_speed", monkeypatch)
    # 48 clips = 6 batches of 8: 4 start-up batches with 2 workers, then the 2 timed ones.
    argv = ["--quick", "--clips", "48", "--batches", "2", "--single-batches", "1", "--model-steps", "1",
            "--workdir", str(tmp_path), "--gpu-samples-per-s", "1000"]
    first = ls.main(argv)
    out = capsys.readouterr().out
    assert re.search(rf"ratio loader/model = {NUMBER} \(.*target >= 3.0: (met|NOT met)\)", out), out
    assert re.search(r"required loader workers = \d+", out), out
    assert re.search(r"keep up: (yes|no)", out), out
    assert "recorded" not in out.split("cache size")[0]  # generated and built in this run
    assert first["clips"] == 48 and first["cache_disk_bytes"] > 0
    assert first["required_workers"] == math.ceil(1000 / first["loader_single"])

    second = ls.main(argv)
    out = capsys.readouterr().out
    assert "store generation" in out and "(recorded when generated)" in out, out
    assert "(recorded; --rebuild-cache to time again)" in out, out
    assert second["generation_s"] == first["generation_s"]


def test_augment_speed_quick_prints_its_ratio_and_agrees_with_the_loop_reference() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "augment_speed.py"), "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(rf"ratio person-style loop reference/ours time per clip = {NUMBER}", out), out
    for row in ("geometric", "person-style", "person-style, loop reference"):
        assert re.search(rf"{re.escape(row)} +{NUMBER} ms/clip", out), out
    assert float(re.search(r"loop reference\| = (\S+)", out).group(1)) < 1e-5, out
