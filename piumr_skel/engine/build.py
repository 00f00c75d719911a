"""Builders from a TrainConfig: the model (backbone + TFAM) and the training loss, shared by
training, evaluation and the benchmarks."""
from __future__ import annotations

from typing import Any, cast

import torch

from piumr_skel.engine.config import TrainConfig


def build_model(cfg: TrainConfig, num_classes: int, layout=None) -> torch.nn.Module:
    """Backbone (+ TFAM at cfg.tfam_after) wrapped in a Recognizer; same builder for train and eval."""
    tfam_kw: dict[str, Any] = dict(num_anchors=cfg.tfam_anchors, gamma=cfg.tfam_gamma, sinkhorn_eps=cfg.tfam_eps,
                   sinkhorn_iters=cfg.tfam_iters, alpha=cfg.tfam_alpha, p=cfg.tfam_p,
                   joint_anchors=cfg.tfam_joint_anchors)
    if cfg.modality == "rgb":
        from piumr_skel.rgb.model import RGBRecognizer

        return RGBRecognizer(arch=cfg.backbone, num_classes=num_classes, num_segments=cfg.frames,
                             tfam=cfg.tfam, tfam_kwargs=tfam_kw, pretrained=cfg.pretrained,
                             dropout=cfg.drop_rate, width=cfg.base_channels)
    from piumr_skel.method.tfam import TFAM
    from piumr_skel.models import create_backbone
    from piumr_skel.models.recognizer import Recognizer

    backbone = create_backbone(cfg.backbone, in_channels=3, num_classes=num_classes, layout=layout,
                               graph_mode=cfg.graph_mode, base_channels=cfg.base_channels,
                               num_blocks=cfg.num_blocks, dropout=cfg.drop_rate)
    tfam = None
    if cfg.tfam:
        after = cfg.tfam_after or backbone.stage_ends[-2]
        channels = backbone.block_out_channels[after - 1]
        tfam = TFAM(channels, num_joints=layout.num_joints, **tfam_kw)
    return Recognizer(backbone, tfam=tfam, tfam_after=cfg.tfam_after)


def build_girl(cfg: TrainConfig, num_groups: int | None = None) -> torch.nn.Module:
    """GIRL v1 or v2 as the config says; v2 needs the number of groups of the epoch assignment
    (cfg.girl_num_groups, or the number of training subjects with grouping 'subject')."""
    from piumr_skel.method.girl import GIRLoss, GIRLossV2
    from piumr_skel.method.groupings import GroupingV1

    if cfg.girl_version == 1:
        return GIRLoss(num_groups=cfg.girl_num_groups, tau=cfg.girl_tau, lambda_var=cfg.girl_lambda_var,
                       eta=cfg.girl_eta, grouping=cast("GroupingV1", cfg.girl_groups))  # checked by the config
    return GIRLossV2(num_groups=num_groups or cfg.girl_num_groups, tau=cfg.girl_tau, beta=cfg.girl_beta,
                     lambda_var=cfg.girl_lambda_var, eta=cfg.girl_eta, eta_q=cfg.girl_eta_q)


def build_loss(cfg: TrainConfig, num_groups: int | None = None):
    """The training objective (`piumr_skel.engine.losses.TrainLoss`) of a config."""
    from piumr_skel.engine.losses import TrainLoss

    return TrainLoss(cfg, build_girl(cfg, num_groups) if cfg.girl else None)
