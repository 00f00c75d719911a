"""`piumr train`: a readable training loop for backbone + TFAM + GIRL, resumable, CPU/CUDA/DDP."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import engine
from .config import TrainConfig, save_config
from .runguard import guard_run, release_run

log = logging.getLogger("piumr.train")


class DivergenceError(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class RunExistsError(RuntimeError):
    """The run folder already holds a run and neither --resume nor a new --name was given."""


# ----------------------------------------------------------------------------- data
@dataclass
class RunData:
    """Datasets of one run and what is needed to report on them."""

    datasets: dict[str, Any]                   # split -> dataset (train, val, maybe test)
    clip_ids: dict[str, list[str]]             # split -> clip ids, in dataset order
    labels: dict[str, np.ndarray]              # split -> labels, in dataset order
    subjects: dict[str, np.ndarray]            # split -> subject ids (str), in dataset order
    class_names: list[str]
    split: dict[str, list[str]]
    layout: Any = None
    report: list[str] = field(default_factory=list)


def _subject_codes(subjects: np.ndarray) -> np.ndarray:
    _, codes = np.unique(subjects.astype(str), return_inverse=True)
    return codes.astype(np.int64)


def load_run_data(cfg: TrainConfig, run_dir: Path | None, splits: tuple[str, ...] = ("train", "val"),
                  test_list: str | None = None) -> RunData:
    """Labels + split + datasets for the config's modality; the split files go into run_dir."""
    from .data_setup import load_labelled_clips

    return load_labelled_clips(cfg, run_dir, splits, test_list=test_list)


# ----------------------------------------------------------------------------- model
def build_model(cfg: TrainConfig, num_classes: int, layout=None) -> torch.nn.Module:
    """Backbone (+ TFAM at cfg.tfam_after) wrapped in a Recognizer; same builder for train and eval."""
    tfam_kw = dict(num_anchors=cfg.tfam_anchors, gamma=cfg.tfam_gamma, sinkhorn_eps=cfg.tfam_eps,
                   sinkhorn_iters=cfg.tfam_iters, alpha=cfg.tfam_alpha, p=cfg.tfam_p,
                   joint_anchors=cfg.tfam_joint_anchors)
    if cfg.modality == "rgb":
        from .rgb.model import RGBRecognizer

        return RGBRecognizer(arch=cfg.backbone, num_classes=num_classes, num_segments=cfg.frames,
                             tfam=cfg.tfam, tfam_kwargs=tfam_kw, pretrained=cfg.pretrained,
                             dropout=cfg.drop_rate, width=cfg.base_channels)
    from .model import Recognizer
    from .models import create_backbone
    from .tfam import TFAM

    backbone = create_backbone(cfg.backbone, in_channels=3, num_classes=num_classes, layout=layout,
                               graph_mode=cfg.graph_mode, base_channels=cfg.base_channels,
                               num_blocks=cfg.num_blocks, dropout=cfg.drop_rate)
    tfam = None
    if cfg.tfam:
        after = cfg.tfam_after or backbone.stage_ends[-2]
        channels = backbone.block_out_channels[after - 1]
        tfam = TFAM(channels, num_joints=layout.num_joints, **tfam_kw)
    return Recognizer(backbone, tfam=tfam, tfam_after=cfg.tfam_after)


def build_girl(cfg: TrainConfig):
    from .girl import GIRLoss

    return GIRLoss(num_groups=cfg.girl_num_groups, tau=cfg.girl_tau, lambda_var=cfg.girl_lambda_var,
                   eta=cfg.girl_eta, grouping=cfg.girl_groups)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_scores(model: torch.nn.Module, loader, device: torch.device, amp: bool) -> tuple[np.ndarray, np.ndarray]:
    """Softmax scores averaged over the test clips of each sample -> (scores (N, K), dataset indices (N,))."""
    model.eval()
    all_scores, all_idx = [], []
    for x, _, idx in loader:
        x = x.to(device, non_blocking=True)
        clips = getattr(loader.dataset, "num_clips", 1)  # items are (clips, C, T, V) when > 1
        if clips > 1:
            x = x.flatten(0, 1)
        with engine.autocast(device, amp):
            logits = model(x)[0]
        probs = logits.float().softmax(-1)
        probs = probs.view(-1, clips, probs.shape[-1]).mean(1)
        all_scores.append(probs.cpu().numpy())
        all_idx.append(idx.numpy())
    return np.concatenate(all_scores), np.concatenate(all_idx)


def score_split(scores: np.ndarray, labels: np.ndarray, subjects: np.ndarray) -> dict[str, float]:
    """Every official MA-52 metric plus the person-level robustness figures."""
    from .metrics import ma52_metrics, subject_robustness

    out = dict(ma52_metrics(scores, labels))
    out.update(subject_robustness(scores.argmax(1) == labels, subjects))
    return out


def girl_ramp_weight(girl_epochs: float, ramp_epochs: int) -> float:
    """Weight w of GIRL in `w·GIRL + (1 − w)·CE` after `girl_epochs` epochs of GIRL (counting the
    current step): 1 without a ramp, else rising linearly to 1 over `ramp_epochs` epochs.

    Switching at once from cross-entropy to GIRL changes the objective abruptly (on the synthetic
    benchmark the gradient norm jumped ~15×); a ramp spreads that change over a few epochs. It
    depends on (epoch, step in epoch) only, so a resumed run ramps exactly as an uninterrupted one.
    """
    if ramp_epochs <= 0:
        return 1.0
    return min(1.0, max(girl_epochs, 0.0) / ramp_epochs)


# ----------------------------------------------------------------------------- training
def _close_logging() -> None:
    """Detach and close the train.log handler of the previous run, if any."""
    root = logging.getLogger("piumr")
    for h in list(root.handlers):
        if getattr(h, "_piumr_run", False):
            root.removeHandler(h)
            h.close()


def _setup_logging(run_dir: Path, main: bool) -> None:
    root = logging.getLogger("piumr")
    root.setLevel(logging.INFO)
    _close_logging()
    if main:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        fh._piumr_run = True  # type: ignore[attr-defined]
        root.addHandler(fh)


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    pd.DataFrame(history).to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps(history, indent=1))


def _checkpoint(model, optimizer, cfg, data: RunData, epoch: int, step: int, history, best) -> dict[str, Any]:
    layout = data.layout
    return {
        "format": "piumr-checkpoint-1",
        "config": cfg.to_dict(),
        "class_names": data.class_names,
        "layout": None if layout is None else {"name": layout.name, "joints": list(layout.joints),
                                                "edges": [list(e) for e in layout.edges]},
        "model": engine.unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "history": history,
        "best": best,
    }


def run_dir_for(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir) / cfg.recipe_name()


def train(cfg: TrainConfig, *, resume: bool = False, echo: Callable[[str], None] = print,
          extend_epochs: bool = False) -> Path:
    """Train one recipe into artifacts/runs/<recipe>/ and return that folder.

    Resuming continues from last.pt; because every epoch reseeds from (seed, epoch) and the data
    pipeline derives its randomness from (seed, epoch, index), a resumed CPU run ends with the
    same metrics as an uninterrupted one.
    """
    device = engine.resolve_device(cfg.device)
    dist_ = engine.init_distributed(device)
    try:  # the guard checks the options against the run's own and locks the folder, writing nothing
        guard_run(cfg, run_dir_for(cfg), resume=resume, extend_epochs=extend_epochs, lock=dist_.main)
        return _train(cfg, dist_, device, resume, echo)
    finally:
        release_run(run_dir_for(cfg))
        _close_logging()
        engine.close_distributed(dist_)


def _train(cfg: TrainConfig, dist_: engine.Dist, device: torch.device, resume: bool,
           echo: Callable[[str], None]) -> Path:
    if dist_.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_.local_rank)
        torch.cuda.set_device(device)
    run_dir = run_dir_for(cfg)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if last_path.exists() and not resume:
        raise RunExistsError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it, "
                             f"or choose another --name")
    if dist_.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if dist_.enabled:
        torch.distributed.barrier()
    _setup_logging(run_dir, dist_.main)
    say = echo if dist_.main else (lambda s: None)

    def note(msg: str) -> None:
        say(msg)
        if dist_.main:
            log.info(msg)

    torch.manual_seed(cfg.seed)  # model init; the only use of torch's global generator at start-up
    data = load_run_data(cfg, run_dir if dist_.main else None, ("train", "val"))
    for line in data.report:
        note(line)
    if dist_.main:
        save_config(cfg, run_dir / "config.yaml")
    num_classes = len(data.class_names)
    model = build_model(cfg, num_classes, data.layout).to(device)
    girl = build_girl(cfg) if cfg.girl else None
    from .girl import style_descriptor
    optimizer = _make_optimizer(cfg, model)

    start_epoch, step, history, best = 0, 0, [], {"epoch": -1, "action_top1": -1.0}
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, step, history, best = ckpt["epoch"], ckpt["step"], ckpt["history"], ckpt["best"]
        note(f"resumed {run_dir} at epoch {start_epoch}/{cfg.epochs}")
    elif resume:
        note(f"--resume: no checkpoint in {run_dir} yet, starting from scratch")

    if dist_.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    from .data import make_loader

    train_ds, val_ds = data.datasets["train"], data.datasets["val"]
    steps_per_epoch = math.ceil(len(train_ds) / (cfg.batch_size * dist_.world))
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = steps_per_epoch * min(cfg.warmup_epochs, max(cfg.epochs - 1, 0))
    subj_codes = torch.from_numpy(_subject_codes(data.subjects["train"]))
    amp = cfg.amp and device.type == "cuda"
    note(f"run {run_dir}: {len(train_ds)} train / {len(val_ds)} val clips, {num_classes} classes, "
         f"device {device}{' (bf16 AMP)' if amp else ''}, world {dist_.world}, "
         f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, TFAM perturbation, GIRL k-means
        train_ds.set_epoch(epoch)
        loader = make_loader(train_ds, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                             seed=cfg.seed, epoch=epoch, drop_last=len(train_ds) > cfg.batch_size,
                             distributed=dist_.enabled)
        use_girl = girl is not None and epoch >= cfg.warmup_girl
        model.train()
        sums: dict[str, float] = {}
        seen = correct = 0
        t0 = time.perf_counter()
        bar = tqdm(loader, total=min(len(loader), steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=None if dist_.main else True, leave=False)
        epoch_steps = max(min(len(loader), steps_per_epoch), 1)
        for it, (x, y, idx) in enumerate(bar):
            if it >= steps_per_epoch:
                break
            lr = engine.lr_at(step, base_lr=cfg.base_lr, total_steps=total_steps, warmup_steps=warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with engine.autocast(device, amp):
                logits, feats, aux = model(x)
            logits = logits.float()
            parts: dict[str, torch.Tensor] = {}
            if use_girl:
                loss, gstats = girl(logits, y, style_descriptor(feats.float()),
                                    subject=subj_codes[idx].to(device))
                parts["girl"] = loss.detach()
                mix = girl_ramp_weight(epoch - cfg.warmup_girl + (it + 1) / epoch_steps, cfg.girl_ramp)
                if mix < 1:
                    loss = mix * loss + (1 - mix) * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if "variance" in gstats:
                    parts["girl_var"] = torch.as_tensor(float(gstats["variance"]))
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            parts["ce"] = F.cross_entropy(logits.detach(), y)
            if aux:
                loss = loss + cfg.lambda_w * aux["wasserstein"].float() + cfg.lambda_c * aux["consistency"].float()
                parts["wasserstein"] = aux["wasserstein"].detach()
                parts["consistency"] = aux["consistency"].detach()
            # Under DDP a rank that stopped here would leave the others waiting in the gradient
            # all-reduce; there the (all-reduced) gradient-norm check below stops every rank at once.
            if not dist_.enabled and not torch.isfinite(loss):
                raise DivergenceError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step} (lr {lr:.4g}); "
                    f"the last good checkpoint is kept in {last_path if last_path.exists() else run_dir}. "
                    f"Lower --lr or check the input data for NaN.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The norm is computed either way (max_norm inf = measure only): it goes into the
            # history, and a non-finite one stops the run before the step poisons the weights.
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                       cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            if not torch.isfinite(grad_norm):
                raise DivergenceError(
                    f"the gradient became {grad_norm.item()} at epoch {epoch + 1}, step {step} (lr {lr:.4g}); "
                    f"the last good checkpoint is kept in {last_path if last_path.exists() else run_dir}. "
                    f"Lower --lr, set --grad-clip, or check the input data for NaN.")
            parts["grad_norm"] = grad_norm.detach()
            optimizer.step()
            step += 1
            n = y.shape[0]
            seen += n
            correct += int((logits.argmax(1) == y).sum())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.3g}")
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "girl": use_girl,
                               "train_acc": 100.0 * correct / max(seen, 1),
                               "time_s": round(time.perf_counter() - t0, 2)}
        row.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
        if dist_.main and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            val_loader = make_loader(val_ds, batch_size=cfg.batch_size, shuffle=False,
                                     num_workers=cfg.num_workers, seed=cfg.seed, epoch=0, drop_last=False)
            scores, idx = predict_scores(engine.unwrap(model), val_loader, device, amp)
            metrics = score_split(scores, data.labels["val"][idx], data.subjects["val"][idx])
            row.update({f"val_{k}": v for k, v in metrics.items()})
            if metrics["action_top1"] > best["action_top1"]:
                best = {"epoch": epoch + 1, **metrics}
                is_best = True
            else:
                is_best = False
        else:
            is_best = False
        history.append(row)
        if dist_.main:
            ckpt = _checkpoint(model, optimizer, cfg, data, epoch + 1, step, history, best)
            if is_best:
                engine.atomic_save(ckpt, best_path)
            engine.atomic_save(ckpt, last_path)  # last.pt written last: it marks the epoch as done
            _write_history(run_dir, history)
            _plot_curves(run_dir, history)
            msg = (f"epoch {epoch + 1:3d}/{cfg.epochs} loss {row.get('train_loss', float('nan')):.4f} "
                   f"train {row['train_acc']:.1f}%")
            if "val_action_top1" in row:
                msg += (f" | val top1 {row['val_action_top1']:.2f} top5 {row['val_action_top5']:.2f} "
                        f"F1_mean {row['val_f1_mean']:.2f} subj-std {row['val_subj_acc_std']:.2f}")
            note(msg + f" | {row['time_s']:.1f}s{' *' if is_best else ''}")
        if dist_.enabled:
            torch.distributed.barrier()
    if dist_.main:
        _final_report(run_dir, data, cfg, device, amp, note)
    if dist_.enabled:
        torch.distributed.barrier()
    return run_dir


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = engine.param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.base_lr)


def _plot_curves(run_dir: Path, history: list[dict[str, Any]]) -> None:
    from .plots import plot_training_curves

    try:
        plot_training_curves(pd.DataFrame(history), run_dir / "curves.png")
    except Exception as err:  # a plot must never kill a training run
        log.warning("could not draw curves.png: %s", err)


def _final_report(run_dir: Path, data: RunData, cfg: TrainConfig, device, amp, note) -> None:
    """Evaluate best.pt on val, save eval_val.json and the confusion matrix."""
    from .evaluate import evaluate_run

    if not (run_dir / "best.pt").exists():
        return
    result = evaluate_run(run_dir, split="val", device=str(device), data=data, quiet=True)
    note(f"best epoch {result['epoch']}: val " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["metrics"].items() if isinstance(v, float)))
