"""`piumr train`: a readable training loop for backbone + TFAM + GIRL, resumable, CPU/CUDA/DDP.

`train(cfg)` reads top to bottom: prepare (run folder, data, model, objective, resume), then per
epoch regroup (GIRL v2), train one epoch, validate and save; then the final report on val.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import pandas as pd
import torch
from tqdm.auto import tqdm

from piumr_skel.engine import runtime
from piumr_skel.engine.atomic import atomic_to_csv, atomic_write_text
from piumr_skel.engine.averaging import WeightEMA
from piumr_skel.engine.build import build_loss, build_model
from piumr_skel.engine.checkpoint import make_checkpoint, read_checkpoint
from piumr_skel.engine.config import TrainConfig, save_config, with_absolute_paths
from piumr_skel.engine.data_setup import RunData, load_run_data, subject_codes
from piumr_skel.engine.evaluate import predict_scores
from piumr_skel.engine.losses import Batch, TrainLoss
from piumr_skel.engine.metrics import score_split
from piumr_skel.engine.runguard import guard_run, release_run

log = logging.getLogger("piumr.train")


class DivergenceError(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class RunExistsError(RuntimeError):
    """The run folder already holds a run and neither --resume nor a new --name was given."""


def run_dir_for(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir) / cfg.recipe_name()


# ----------------------------------------------------------------------------- the loop
def train(cfg: TrainConfig, *, resume: bool = False, echo: Callable[[str], None] = print,
          extend_epochs: bool = False) -> Path:
    """Train one recipe into artifacts/runs/<recipe>/ and return that folder.

    Resuming continues from last.pt; because every epoch reseeds from (seed, epoch), the data
    pipeline derives its randomness from (seed, epoch, index) and GIRL v2's groups from
    (seed, epoch), a resumed CPU run ends with the same metrics as an uninterrupted one.
    """
    cfg = with_absolute_paths(cfg)  # the saved config and checkpoints name the data from anywhere
    device = runtime.resolve_device(cfg.device)
    dist_ = runtime.init_distributed(device)
    try:  # the guard checks the options against the run's own and locks the folder, writing nothing
        guard_run(cfg, run_dir_for(cfg), resume=resume, extend_epochs=extend_epochs, lock=dist_.main)
        run = _prepare(cfg, dist_, device, resume, echo)
        for epoch in range(run.start_epoch, cfg.epochs):
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, TFAM perturbation, GIRL v1 k-means
            run.groups = _epoch_groups(run, epoch)
            row = _train_one_epoch(run, epoch)
            row.update(_group_agreement(run))
            _validate_and_save(run, epoch, row)
        if dist_.main:
            _plot_curves(run.dir, run.history)
            _final_report(run)
        if dist_.enabled:
            torch.distributed.barrier()
        return run.dir
    except Exception:
        if _run_log_open():  # the run folder exists: its train.log says how the run ended
            log.exception("training stopped by an error")
        raise
    finally:
        release_run(run_dir_for(cfg))
        _close_logging()
        runtime.close_distributed(dist_)


@dataclass
class Run:
    """Everything one training run holds between epochs."""

    cfg: TrainConfig
    dir: Path
    dist: runtime.Dist
    device: torch.device
    amp: bool
    data: RunData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    objective: TrainLoss
    note: Callable[[str], None]
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    subjects: torch.Tensor                      # (N_train,) subject code of every training clip
    ema: WeightEMA | None = None                # --ema: the weight average that is validated and saved
    descriptors: torch.Tensor | None = None     # GIRL v2 "input": (N_train, D) person-style descriptors
    groups: torch.Tensor | None = None          # GIRL v2: this epoch's pseudo-group of every training clip
    start_epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "action_top1": -1.0})


# ----------------------------------------------------------------------------- 1. prepare
def _prepare(cfg: TrainConfig, dist_: runtime.Dist, device: torch.device, resume: bool,
             echo: Callable[[str], None]) -> Run:
    if dist_.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_.local_rank)
        torch.cuda.set_device(device)
    run_dir = run_dir_for(cfg)
    last_path = run_dir / "last.pt"
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
    train_subjects = subject_codes(data.subjects["train"])
    num_groups = int(train_subjects.max()) + 1 if cfg.girl_groups == "subject" else None
    model = build_model(cfg, len(data.class_names), data.layout).to(device)
    objective = build_loss(cfg, num_groups)
    if objective.girl is not None:
        objective.girl.to(device)
    optimizer = _make_optimizer(cfg, model)

    train_ds = data.datasets["train"]
    steps_per_epoch = math.ceil(len(train_ds) / (cfg.batch_size * dist_.world))
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    run = Run(cfg=cfg, dir=run_dir, dist=dist_, device=device, amp=cfg.amp and device.type == "cuda",
              data=data, model=model, optimizer=optimizer, objective=objective, note=note,
              steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * cfg.epochs,
              warmup_steps=steps_per_epoch * min(cfg.warmup_epochs, max(cfg.epochs - 1, 0)),
              subjects=torch.from_numpy(train_subjects))
    if cfg.ema:
        run.ema = WeightEMA(model, cfg.ema_time_constant * steps_per_epoch)
    if cfg.girl and cfg.girl_version == 2 and cfg.girl_groups == "input":
        from piumr_skel.method.girl import input_descriptors

        run.descriptors = torch.from_numpy(input_descriptors(
            [train_ds.cache[c] for c in train_ds.clip_ids], data.layout))

    if resume and last_path.exists():
        ckpt = read_checkpoint(last_path)
        model.load_state_dict(ckpt.get("train_model") or ckpt["model"])  # with --ema, "model" is the average
        if run.ema is not None:
            run.ema.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if objective.girl is not None and ckpt.get("loss_state"):
            objective.girl.load_state_dict(ckpt["loss_state"])
        run.start_epoch, run.step, run.history, run.best = ckpt["epoch"], ckpt["step"], ckpt["history"], ckpt["best"]
        note(f"resumed {run_dir} at epoch {run.start_epoch}/{cfg.epochs}")
    elif resume:
        note(f"--resume: no checkpoint in {run_dir} yet, starting from scratch")

    if dist_.enabled:
        run.model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    note(f"run {run_dir}: {len(train_ds)} train / {len(data.datasets['val'])} val clips, "
         f"{len(data.class_names)} classes, device {device}{' (bf16 AMP)' if run.amp else ''}, "
         f"world {dist_.world}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    note(f"machine: {runtime.machine_line(device)}")
    return run


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = runtime.param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.base_lr)


# ----------------------------------------------------------------------------- 2. GIRL v2 groups
def _epoch_groups(run: Run, epoch: int) -> torch.Tensor | None:
    """GIRL v2's pseudo-group of every training clip for this epoch (None before/without it).

    A pure function of (descriptors, seed, epoch), so a resumed run regroups identically.
    """
    cfg = run.cfg
    if not (cfg.girl and cfg.girl_version == 2 and run.objective.girl_active(epoch)):
        return None
    from piumr_skel.method.girl import GIRLossV2, assign_epoch_groups

    girl = cast(GIRLossV2, run.objective.girl)  # girl_version 2 and active: build_girl made a GIRLossV2
    descriptors = run.descriptors
    if cfg.girl_groups == "features":
        descriptors = _feature_descriptors(run)
    groups = assign_epoch_groups(cfg.girl_groups, girl.num_groups, seed=cfg.seed, epoch=epoch,
                                 descriptors=descriptors, subjects=run.data.subjects["train"],
                                 n=len(run.data.datasets["train"]))
    if cfg.girl_groups != "subject":
        girl.reset_dro()  # redrawn groups: old GroupDRO weights mean nothing
    return groups


def _group_agreement(run: Run) -> dict[str, float]:
    """This epoch's GIRL v2 groups against the true people and the actions (NMI, 0..1), for the
    history: do the pseudo-groups carry person style (`piumr groups` asks the same before training)?"""
    if run.groups is None:
        return {}
    from piumr_skel.engine.metrics import nmi

    groups = run.groups.cpu().numpy()
    return {"groups_nmi_subject": nmi(groups, run.data.subjects["train"]),
            "groups_nmi_action": nmi(groups, run.data.labels["train"])}


@torch.no_grad()
def _feature_descriptors(run: Run) -> torch.Tensor:
    """Channel mean and std of the final features of every training clip, in an eval-mode pass."""
    from piumr_skel.data.dataset import make_loader
    from piumr_skel.method.girl import style_descriptor

    ds = run.data.datasets["train"].eval_view()
    loader = make_loader(ds, batch_size=run.cfg.batch_size, shuffle=False, num_workers=run.cfg.num_workers,
                         seed=run.cfg.seed, epoch=0, drop_last=False)
    model = runtime.unwrap(run.model)
    model.eval()
    out = torch.zeros(len(ds), 0)
    for x, _, idx in loader:
        with runtime.autocast(run.device, run.amp):
            feats = model(x.to(run.device))[1]
        d = style_descriptor(feats.float()).cpu()
        if out.shape[1] == 0:
            out = torch.zeros(len(ds), d.shape[1])
        out[idx] = d
    return out


# ----------------------------------------------------------------------------- 3. one epoch
def _train_one_epoch(run: Run, epoch: int) -> dict[str, Any]:
    from piumr_skel.data.dataset import make_loader

    cfg, ds = run.cfg, run.data.datasets["train"]
    ds.set_epoch(epoch)
    loader = make_loader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                         seed=cfg.seed, epoch=epoch, drop_last=len(ds) > cfg.batch_size,
                         distributed=run.dist.enabled)
    run.model.train()
    n_steps = max(min(len(loader), run.steps_per_epoch), 1)
    sums: dict[str, float] = {}
    seen = correct = 0
    lr = cfg.base_lr
    t0 = time.perf_counter()
    bar = tqdm(loader, total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=None if run.dist.main else True, leave=False)
    for it, (x, y, idx) in enumerate(bar):
        if it >= n_steps:
            break
        lr = runtime.lr_at(run.step, base_lr=cfg.base_lr, total_steps=run.total_steps, warmup_steps=run.warmup_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batch = Batch(x=x.to(run.device, non_blocking=True), y=y.to(run.device, non_blocking=True), index=idx,
                      subject=run.subjects[idx].to(run.device),
                      group=None if run.groups is None else run.groups[idx].to(run.device))
        with runtime.autocast(run.device, run.amp):
            outputs = run.model(batch.x)
        loss, parts = run.objective(outputs, batch, epoch + it / n_steps)
        # Under DDP a rank that stopped here would leave the others waiting in the gradient
        # all-reduce; there the (all-reduced) gradient-norm check below stops every rank at once.
        if not run.dist.enabled and not torch.isfinite(loss):
            _diverged(run, f"loss became {loss.item()}", epoch, lr, "Lower --lr or check the input data for NaN.")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The norm is computed either way (max_norm inf = measure only): it goes into the history,
        # and a non-finite one stops the run before the step poisons the weights.
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(),
                                                   cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if not torch.isfinite(grad_norm):
            _diverged(run, f"the gradient became {grad_norm.item()}", epoch, lr,
                      "Lower --lr, set --grad-clip, or check the input data for NaN.")
        parts["grad_norm"] = grad_norm.detach()
        run.optimizer.step()
        if run.ema is not None:
            run.ema.update(runtime.unwrap(run.model), run.step)
        run.step += 1
        n = y.shape[0]
        seen += n
        correct += int((outputs[0].detach().argmax(1) == batch.y).sum())
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.3g}")
    bar.close()
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "girl": run.objective.girl_active(epoch),
                           "train_acc": 100.0 * correct / max(seen, 1),
                           "time_s": round(time.perf_counter() - t0, 2)}
    row.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
    return row


def _diverged(run: Run, what: str, epoch: int, lr: float, hint: str) -> None:
    last = run.dir / "last.pt"
    raise DivergenceError(f"{what} at epoch {epoch + 1}, step {run.step} (lr {lr:.4g}); the last good "
                          f"checkpoint is kept in {last if last.exists() else run.dir}. {hint}")


# ----------------------------------------------------------------------------- 4. validate and save
def _validate_and_save(run: Run, epoch: int, row: dict[str, Any]) -> None:
    cfg = run.cfg
    is_best = False
    if run.dist.main and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
        from piumr_skel.data.dataset import make_loader

        val_loader = make_loader(run.data.datasets["val"], batch_size=cfg.batch_size, shuffle=False,
                                 num_workers=cfg.num_workers, seed=cfg.seed, epoch=0, drop_last=False)
        scores, idx = predict_scores(_eval_model(run), val_loader, run.device, run.amp)
        metrics = score_split(scores, run.data.labels["val"][idx], run.data.subjects["val"][idx],
                              class_names=run.data.class_names)
        row.update({f"val_{k}": v for k, v in metrics.items()})
        if metrics["action_top1"] > run.best["action_top1"]:
            run.best = {"epoch": epoch + 1, **metrics}
            is_best = True
    run.history.append(row)
    if run.dist.main:
        girl = run.objective.girl
        extra: dict[str, Any] = {"loss_state": girl.state_dict() if girl is not None else {}}
        if run.ema is not None:  # "model" is what eval and predict load: the average; resume needs both
            extra["train_model"] = runtime.unwrap(run.model).state_dict()
        ckpt = make_checkpoint(model_state=_eval_model(run).state_dict(),
                               optimizer_state=run.optimizer.state_dict(), config=cfg.to_dict(),
                               class_names=run.data.class_names, layout=run.data.layout, epoch=epoch + 1,
                               step=run.step, history=run.history, best=run.best, extra=extra)
        if is_best:
            runtime.atomic_save(ckpt, run.dir / "best.pt")
        runtime.atomic_save(ckpt, run.dir / "last.pt")  # last.pt written last: it marks the epoch as done
        _write_history(run.dir, run.history)
        if cfg.plot_every and (epoch + 1) % cfg.plot_every == 0:
            _plot_curves(run.dir, run.history)
        msg = (f"epoch {epoch + 1:3d}/{cfg.epochs} loss {row.get('train_loss', float('nan')):.4f}"
               f" train {row['train_acc']:.1f}%")
        if "val_action_top1" in row:
            msg += f" | val top1 {row['val_action_top1']:.2f} top5 {row['val_action_top5']:.2f}"
            if "val_f1_mean" in row:
                msg += f" F1_mean {row['val_f1_mean']:.2f}"
            msg += f" subj-std {row['val_subj_acc_std']:.2f}"
        run.note(msg + f" | {row['time_s']:.1f}s{' *' if is_best else ''}")
    if run.dist.enabled:
        torch.distributed.barrier()


def _eval_model(run: Run) -> torch.nn.Module:
    """The model that is validated and saved: the weight average with --ema, else the trained one."""
    return run.ema.module if run.ema is not None else runtime.unwrap(run.model)


# ----------------------------------------------------------------------------- outputs
def _run_log_open() -> bool:
    return any(getattr(h, "_piumr_run", False) for h in logging.getLogger("piumr").handlers)


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
    """metrics.csv and metrics.json, each all or nothing: a kill mid-write keeps its last whole version."""
    atomic_to_csv(pd.DataFrame(history), run_dir / "metrics.csv", index=False)
    atomic_write_text(run_dir / "metrics.json", json.dumps(history, indent=1))


def _plot_curves(run_dir: Path, history: list[dict[str, Any]]) -> None:
    from piumr_skel.engine.plots import plot_training_curves

    try:
        plot_training_curves(pd.DataFrame(history), run_dir / "curves.png")
    except Exception as err:  # a plot must never kill a training run
        log.warning("could not draw curves.png: %s", err)


def _final_report(run: Run) -> None:
    """Evaluate best.pt on val, save eval_val.json and the confusion matrix."""
    from piumr_skel.engine.evaluate import evaluate_run

    if not (run.dir / "best.pt").exists():
        return
    result = evaluate_run(run.dir, split="val", device=str(run.device), data=run.data, quiet=True)
    run.note(f"best epoch {result['epoch']}: val " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["metrics"].items() if isinstance(v, float)))


