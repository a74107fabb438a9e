"""What a run is: a detector, a scale, a schedule and a seed, resolved into one hashable config.

A scale fixes the data, backbone, image size and batch; a schedule fixes epochs and learning
rate drops (the paper's `ablation` and `final` schedules keep their epoch counts at every
scale, and the generated set is sized so that a run takes minutes on a CPU). Every field
that can change a result is in `RunConfig`, and the run's folder is named by its hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from mlc.data.shapes import ShapesSpec

DETECTORS = ("fcos", "fcos_minus", "retinanet", "rpn")
BACKBONES = ("resnet50", "tiny")


@dataclass(frozen=True)
class Schedule:
    """Epochs, the epochs after which the lr drops x0.1, and a linear warmup in iterations."""

    epochs: int
    lr_steps: tuple[int, ...]
    warmup_iters: int
    mlc_start_epoch: int  # MLC's terms (ML, IUR, alignment) train from this epoch on
    warmup_factor: float = 0.001


# The paper (Sec. 4.1): ablations 19 epochs, drops at 16 and 18; final 24, drops at 18 and 22;
# the first 12 epochs train the plain detector, then MLC's terms switch on.
SCHEDULES = {
    "ablation": Schedule(epochs=19, lr_steps=(16, 18), warmup_iters=500, mlc_start_epoch=12),
    "final": Schedule(epochs=24, lr_steps=(18, 22), warmup_iters=500, mlc_start_epoch=12),
    "smoke": Schedule(epochs=2, lr_steps=(1,), warmup_iters=2, mlc_start_epoch=1),
}


@dataclass(frozen=True)
class PretrainSpec:
    """The classification set and the schedule that make a scale's pretrained body."""

    images: int = 16_000
    val_images: int = 2_000
    data_seed: int = 1  # the generator's seed; every detection set is drawn with seed 0
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1  # SGD with momentum, cosine to 0 over every step
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0  # initialisation, image order and flips
    threads: int = 1  # CPU results depend on the thread count; the runs train at one

    def data(self, detection: ShapesSpec) -> ShapesSpec:
        """The classification set: the detection set's generator at this spec's seed and size."""
        return replace(detection, seed=self.data_seed, num_train=self.images, num_val=self.val_images)


@dataclass(frozen=True)
class Scale:
    """Data, model size and batch of one scale."""

    data: str  # "coco" or a generated set's name under data/
    backbone: str
    fpn_channels: int
    head_convs: int
    min_size: int
    max_size: int
    batch_size: int  # global, over all processes
    schedule: str
    warmup_iters: int | None = None  # overrides the schedule's warmup at this scale
    shapes: ShapesSpec | None = None
    tiny_widths: tuple[int, int, int, int] = (16, 32, 64, 128)  # the tiny backbone's stages
    lr_multiplier: float = 1.0  # on top of the paper's lr, linearly scaled to the batch
    detector_lr_multipliers: tuple[tuple[str, float], ...] = ()  # (detector, its own multiplier)
    dense_levels: str = "p2p6"  # the tiny backbone's FPN levels for FCOS and RetinaNet (or p3p7)
    pretrain: PretrainSpec | None = None  # how the tiny backbone is pretrained (mlc.models.pretrain)


# RPN at the `shapes` scale, swept on the baseline alone (seeds 0 and 1; the book's page "Choosing
# the shapes setting"): AR@100 rose with the lr up to 32x the paper's, and at 64x one run
# collapsed, so RPN trains at 16x, two doublings below the collapse (the others at 4x).
RPN_LR_MULTIPLIER = 16.0

SCALES = {
    "smoke": Scale(data="smoke", backbone="tiny", fpn_channels=64, head_convs=1, min_size=64,
                   max_size=64, batch_size=4, schedule="smoke", tiny_widths=(8, 16, 32, 64),
                   pretrain=PretrainSpec(images=64, val_images=16, epochs=2, batch_size=16),
                   shapes=ShapesSpec(num_train=8, num_val=4, image_size=64, max_objects=3,
                                     min_size=12, max_size=40, distractors=1)),
    "shapes": Scale(data="shapes", backbone="tiny", fpn_channels=32, head_convs=2, min_size=96,
                    max_size=96, batch_size=8, schedule="ablation", warmup_iters=50,
                    shapes=ShapesSpec(num_val=1200), lr_multiplier=4.0, pretrain=PretrainSpec(),
                    detector_lr_multipliers=(("rpn", RPN_LR_MULTIPLIER),)),
    # The setting study's other candidates (the book's page "Choosing the shapes setting"): the
    # set the book ran on before (heads of random colour, 0.32 of the body, objects up to 72 px,
    # 300 images), and the chosen set with 600 images.
    "shapes-v1": Scale(data="shapes-v1", backbone="tiny", fpn_channels=32, head_convs=2,
                       min_size=96, max_size=96, batch_size=8, schedule="ablation",
                       warmup_iters=50, lr_multiplier=4.0,
                       shapes=ShapesSpec(num_train=300, max_size=72.0, head_scale=0.32,
                                         head_colour="random")),
    "shapes-600": Scale(data="shapes-600", backbone="tiny", fpn_channels=32, head_convs=2,
                        min_size=96, max_size=96, batch_size=8, schedule="ablation",
                        warmup_iters=50, lr_multiplier=4.0, shapes=ShapesSpec(num_train=600)),
    "coco": Scale(data="coco", backbone="resnet50", fpn_channels=256, head_convs=4,
                  min_size=800, max_size=1333, batch_size=16, schedule="ablation"),
}

# Base learning rate at a global batch of 16 (MMDetection's configs), scaled linearly. The
# randomly initialised tiny models of the `shapes` scale take 4x that (lr_multiplier; RPN 16x): with the
# paper's lr, FCOS- reached 8.7 AP in 19 epochs, with 4x 10.7 (on the set's earlier 600 images of
# 128 px; the set is now 1000 images of 96 px, chosen on the book's page "Choosing the shapes setting").
BASE_LR = {"fcos": 0.01, "fcos_minus": 0.01, "retinanet": 0.01, "rpn": 0.02}
# MMDetection clips FCOS's gradients at norm 35; the others are not clipped.
GRAD_CLIP = {"fcos": 35.0, "fcos_minus": 35.0, "retinanet": None, "rpn": None}
# Mutual labeling's candidate positives (DESIGN.md) and the paper's alpha per detector (Sec. 4.2).
ML_CANDIDATES = {
    "fcos": "locations inside the box on its FPN level (no centre sampling)",
    "fcos_minus": "locations inside the box on its FPN level (no centre sampling)",
    "retinanet": "anchors with IoU >= 0.4 (0.4-0.5 was ignored)",
    "rpn": "anchors with IoU >= 0.3 (0.3-0.7 was ignored)",
}
ML_CANDIDATE_IOU = {"retinanet": 0.4, "rpn": 0.3}
ALPHA = {"fcos": 0.0, "fcos_minus": 0.0, "retinanet": 0.5, "rpn": 2.0}
DENSE = ("fcos", "fcos_minus", "retinanet")  # one-stage detectors with a classification head
# Methods that would train the same thing twice, or one thing two ways (each pair, the reason).
REFUSED_PAIRS = (
    ("tal", "ml", "both choose the positives (TAL by s^alpha * u^beta, ML by Otsu thresholds); "
                  "one assignment has to be chosen"),
    ("tal", "vfl", "both set the classification target (TAL the normalised alignment metric, "
                   "VFL the IoU) of the same score"),
    ("tal", "alignment", "TAL already trains the class score toward its alignment target; "
                         "alignment's MSE toward the IoU would pull the same score elsewhere"),
    ("vfl", "alignment", "both train the class score of the positives toward the IoU "
                         "(VFL in its loss, alignment by an MSE beside it): the same term twice"),
)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result. Build with `make_config`."""

    detector: str
    scale: str = "shapes"
    schedule: str = "ablation"
    seed: int = 0
    epochs: int = 19
    lr_steps: tuple[int, ...] = (16, 18)
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float | None = None
    amp: bool = True
    pretrained: bool = True
    ml: bool = False  # mutual labeling (Sec. 3.1)
    alpha: float = 0.0  # weight exponent of originally ignored candidates (Eq. 7, 8)
    iur: bool = False  # IoU rescoring (Sec. 3.2)
    gamma: float = 1.0  # IUR loss weight; the paper does not give it
    alignment: bool = False  # baseline of Table 1: MSE between the GT-class score and the IoU
    vfl: bool = False  # varifocal loss (VarifocalNet) in place of the focal loss
    vfl_alpha: float = 0.75
    vfl_gamma: float = 2.0
    tal: bool = False  # task-aligned assignment (TOOD, without its T-head)
    tal_topk: int = 13
    tal_alpha: float = 1.0
    tal_beta: float = 6.0
    mlc_start_epoch: int = 12  # ML, IUR's loss and alignment train from this epoch (0-based) on
    center_sampling_radius: float | None = None
    head_offset: float | None = None  # generated sets: move the class-defining head (0-1)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    topk_candidates: int = 1000
    detections_per_img: int = 100
    proposals_per_img: int = 1000
    extra: dict = field(default_factory=dict)

    @property
    def scale_spec(self) -> Scale:
        return SCALES[self.scale]

    def to_json(self) -> dict:
        return asdict(self)

    def short_hash(self) -> str:
        """Eight hex digits of the canonical JSON of the config, of its scale (data set,
        backbone, image size) and of the training code's version: the run's identity, so
        editing a scale or the code that trains retrains its runs. The validation set's size
        and the evaluation code are not in it: they only change how a trained run is scored
        (its record's evaluation identity, mlc.runs)."""
        from mlc.version import code_version

        spec = asdict(self.scale_spec)
        if spec["shapes"] is not None:
            del spec["shapes"]["num_val"]
        blob = json.dumps({**self.to_json(), "scale_spec": spec, "code_version": code_version()},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @property
    def name(self) -> str:
        return f"{self.detector}-{self.short_hash()}"

    def run_dir(self, runs_root: Path) -> Path:
        return Path(runs_root) / self.scale / self.name


class ConfigError(ValueError):
    """A run was asked for with a value that is not allowed; the message lists what is."""


def _check_choice(what: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(allowed))}")


def make_config(detector: str, scale: str = "shapes", schedule: str | None = None,
                seed: int = 0, **overrides) -> RunConfig:
    """A RunConfig with the scale's and schedule's defaults, then `overrides` on top."""
    _check_choice("detector", detector, DETECTORS)
    _check_choice("scale", scale, SCALES)
    sc = SCALES[scale]
    schedule = schedule or sc.schedule
    _check_choice("schedule", schedule, SCHEDULES)
    sched = SCHEDULES[schedule]
    cfg = RunConfig(
        detector=detector, scale=scale, schedule=schedule, seed=seed,
        epochs=sched.epochs, lr_steps=sched.lr_steps,
        warmup_iters=sc.warmup_iters if sc.warmup_iters is not None else sched.warmup_iters,
        warmup_factor=sched.warmup_factor, batch_size=sc.batch_size,
        lr=BASE_LR[detector] * sc.batch_size / 16 * dict(sc.detector_lr_multipliers).get(
            detector, sc.lr_multiplier), grad_clip=GRAD_CLIP[detector],
        pretrained=sc.backbone == "resnet50", alpha=ALPHA[detector],
        mlc_start_epoch=sched.mlc_start_epoch,
    )
    known = {f.name for f in fields(RunConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)}; allowed: {sorted(known)}")
    if "lr_steps" in overrides:
        overrides["lr_steps"] = tuple(overrides["lr_steps"])
    cfg = replace(cfg, **overrides)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Reject a config that cannot train, before any work is done."""
    _check_choice("detector", cfg.detector, DETECTORS)
    _check_choice("scale", cfg.scale, SCALES)
    _check_choice("schedule", cfg.schedule, SCHEDULES)
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    if any(not 0 < s <= cfg.epochs for s in cfg.lr_steps):
        raise ConfigError(f"lr_steps {cfg.lr_steps} must lie in 1..epochs ({cfg.epochs})")
    if cfg.gamma < 0:
        raise ConfigError(f"gamma (the IUR loss weight) must be >= 0, got {cfg.gamma}")
    if cfg.alpha < 0:
        raise ConfigError(f"alpha (mutual labeling's weight exponent) must be >= 0, got {cfg.alpha}")
    if cfg.ml and cfg.detector in ("fcos", "fcos_minus") and cfg.center_sampling_radius is not None:
        rules = "; ".join(f"{d}: {r}" for d, r in ML_CANDIDATES.items())
        raise ConfigError(f"ml has no candidate rule for {cfg.detector} with centre sampling "
                          f"(center_sampling_radius={cfg.center_sampling_radius}); candidate rules: "
                          f"{rules}")
    for name in ("alignment", "vfl", "tal"):
        if getattr(cfg, name) and cfg.detector not in DENSE:
            raise ConfigError(f"{name} needs a classification head (rpn has objectness only); "
                              f"allowed: {', '.join(DENSE)}")
    for a, b, why in REFUSED_PAIRS:
        if getattr(cfg, a) and getattr(cfg, b):
            raise ConfigError(f"{a} and {b} do not combine: {why}")
    if not 0 <= cfg.mlc_start_epoch < cfg.epochs:
        raise ConfigError(f"mlc_start_epoch must lie in 0..epochs-1 ({cfg.epochs - 1}), "
                          f"got {cfg.mlc_start_epoch}")
    if cfg.head_offset is not None and (cfg.scale_spec.shapes is None
                                        or not 0 <= cfg.head_offset <= 1):
        raise ConfigError(f"head_offset applies to the generated sets only and must lie in "
                          f"[0, 1], got {cfg.head_offset} at scale {cfg.scale}")
    if cfg.pretrained and cfg.scale_spec.backbone == "tiny" and cfg.scale_spec.pretrain is None:
        raise ConfigError(f"scale {cfg.scale} has no pretraining for its tiny backbone; "
                          "pretrained=true needs one of: "
                          + ", ".join(n for n, s in SCALES.items() if s.pretrain or s.backbone != "tiny"))
    if cfg.batch_size < 1 or cfg.lr <= 0:
        raise ConfigError(f"batch_size and lr must be positive, got {cfg.batch_size}, {cfg.lr}")


def config_from_json(data: dict) -> RunConfig:
    """The RunConfig stored in a run's config.json."""
    data = dict(data)
    data["lr_steps"] = tuple(data["lr_steps"])
    cfg = RunConfig(**data)
    validate(cfg)
    return cfg
