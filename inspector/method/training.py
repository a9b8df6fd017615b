"""Training the student and the autoencoder on good images (EfficientAD, Algorithm 1).

:func:`train` runs the whole recipe: teacher statistics, the training loop, and the map quantiles
on held-out good images; it returns the trained :class:`EfficientAD`. The loop is deterministic
for a seed, checkpoints to a safetensors file it can resume from, shows a progress bar, reports
progress to a callback, and stops cleanly when a ``threading.Event`` is set.

Two recipes, and the budget picks one (:func:`recipe_for`):

``paper``  Algorithm 1 as published: batch 1, student and autoencoder, the three-term loss, Adam
           at 1e-4 dropped x0.1 after 95 % of 70,000 iterations. Hours on a GPU, days on a CPU.
``short``  for the minutes a CPU line PC has (the quick teach): the student alone against the
           teacher (no autoencoder), the teacher's outputs on the training images computed once
           and cached (:class:`TeacherTargets`), 8 images a step, and a higher learning rate
           decayed on a cosine to the end of the budget. The losses are the paper's L_hard
           and L_penalty. Measured against the paper's recipe on the same CPU in
           ``docs/evidence/short_recipe_*.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from inspector import ASSETS_DIR, WEIGHTS_DIR, __version__
from inspector.devices import bf16_supported, pick_device
from inspector.method.efficientad import (
    EfficientAD,
    efficientad_loss,
    hard_feature_loss,
    penalty_loss,
    map_quantiles,
    IMAGE_SIZE,
    normalize_input,
    teacher_channel_stats,
)
from inspector.errors import DataError, InspectorError, ModelFileError
from inspector.image_io import read_image, to_square
from inspector.method.modes import PAPER_ITERATIONS, QUICK_MAX_ITERATIONS, QUICK_TRAIN_S, SHORT_RECIPE_BELOW, TRAIN_MODES
from inspector.model_file import load_teacher, load_tensors, optimizer_tensors, restore_optimizer, save_tensors, unprefixed

if TYPE_CHECKING:
    from inspector.framing import Framing

log = logging.getLogger(__name__)

#: Fewest good images a model can be trained on: at least one is held out for the map quantiles.
MIN_GOOD_IMAGES = 10
#: The autoencoder sees the training image with one of these, factor in [0.8, 1.2] (Section 3.3).
AUGMENT_FACTOR_RANGE = (0.8, 1.2)
#: Runs this long get a time estimate before they start; for shorter ones it would cost more than it says.
ESTIMATE_FROM_ITERATIONS = 50
#: Fewer iterations than this make a weak model: a time-budgeted run that fits fewer says so.
LOW_ITERATIONS = 500
#: Natural images for the penalty are resized to twice the input, grey with this probability.
PENALTY_GRAYSCALE_P = 0.3


class TrainingCancelled(InspectorError):
    """Training was stopped from another thread; the checkpoint holds the work done so far."""


RECIPES = ("paper", "short")
#: Teacher outputs are cached (fp16) only up to this size; beyond it they are computed per step.
TARGET_CACHE_MAX_BYTES = 2 << 30


@dataclass(frozen=True)
class TrainConfig:
    size: str = "s"
    iterations: int = PAPER_ITERATIONS
    seed: int = 42
    #: The settings below are the paper's recipe; :func:`short_recipe` sets the short one's.
    recipe: str = "paper"
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    #: "step": x0.1 after ``lr_drop_fraction`` of the iterations (paper); "cosine": decays to 0.
    schedule: str = "step"
    lr_drop_fraction: float = 0.95
    #: Training images per step, and natural images for the penalty per step.
    batch_size: int = 1
    penalty_batch_size: int = 1
    #: Train the autoencoder (and the student's second 384 channels that imitate it).
    autoencoder: bool = True
    #: Short recipe without autoencoder: train on random square crops of this many pixels (0:
    #: whole images). The PDN has no padding, so a crop at an offset that is a multiple of the
    #: network's stride gives exactly that window of the whole image's output: the cached
    #: targets are cropped alike, and a step sees more images for the same compute. Inputs no
    #: larger than the crop train whole.
    crop_size: int = 0
    image_size: int = 256
    resize_mode: str = "resize"
    validation_fraction: float = 0.1
    checkpoint_every: int = 500
    #: ... and at least this often in seconds: a CPU step can take seconds, and a power cut or a
    #: killed process should cost minutes of training, not half a quick teach.
    checkpoint_every_s: float = 120.0
    #: bf16 autocast for the forward passes where the hardware has it (CUDA, AVX-512 BF16 CPUs):
    #: 1.7x faster steps on this project's CPU; losses and statistics stay float32.
    amp: bool = True
    #: Train as many iterations as fit in this many seconds (``iterations`` is then the cap). The
    #: count is fixed before the first step from a measured step time, so the learning-rate
    #: schedule still ends where the recipe says; a resumed run keeps the count it chose.
    time_budget_s: float | None = None


def default_mode(device: str = "auto") -> str:
    """The training mode a device gets unless told otherwise: ``full`` on a CUDA GPU (the paper's
    run takes about an hour there), ``quick`` on a CPU (where the paper's run takes days)."""
    return "full" if pick_device(device).type == "cuda" else "quick"


#: The short recipe's settings (docs/evidence/short_recipe_*.json has the runs that chose them).
SHORT_RECIPE = {
    "recipe": "short",
    "learning_rate": 1e-3,
    "schedule": "cosine",
    # Whole images: 16 crops of 128 px a step (crop_size=128) scored 3.5 points lower on magnetic
    # tile and 20 lower on ELPV at the same CPU time.
    "batch_size": 8,
    "crop_size": 0,
    "penalty_batch_size": 2,
    "autoencoder": False,
}


def short_recipe(iterations: int, **settings: Any) -> TrainConfig:
    """The short-budget recipe (see the module docstring) for ``iterations`` steps."""
    return TrainConfig(iterations=iterations, **{**SHORT_RECIPE, **settings})


def recipe_for(iterations: int | None, time_budget_s: float | None = None) -> str:
    """The recipe a budget gets: ``short`` for a time budget (the quick mode) or fewer than
    SHORT_RECIPE_BELOW iterations, ``paper`` for the full budget."""
    if time_budget_s is not None or (iterations is not None and iterations < SHORT_RECIPE_BELOW):
        return "short"
    return "paper"


def mode_config(mode: str, iterations: int | None = None, recipe: str | None = None, **settings: Any) -> TrainConfig:
    """The TrainConfig of a training mode; ``iterations`` overrides the mode's count (and, for
    ``quick``, its time budget: an explicit count is trained in full). The recipe follows the
    budget (:func:`recipe_for`) unless ``recipe`` names one."""
    if mode not in TRAIN_MODES:
        raise InspectorError(f"mode must be one of {', '.join(TRAIN_MODES)}, not {mode!r}")
    if recipe is not None and recipe not in RECIPES:
        raise InspectorError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
    budget = None
    if iterations is None:
        iterations = QUICK_MAX_ITERATIONS if mode == "quick" else PAPER_ITERATIONS
        budget = QUICK_TRAIN_S if mode == "quick" else None
    recipe = recipe or recipe_for(iterations if budget is None else None, budget)
    if recipe == "short":
        return short_recipe(iterations, time_budget_s=budget, **settings)
    return TrainConfig(iterations=iterations, time_budget_s=budget, **settings)


@dataclass(frozen=True)
class TrainPlan:
    """What a run is about to do, told before its first step: ``iterations`` in all, of which
    ``start`` are done (a resumed run), at a measured ``seconds_per_iteration``."""

    iterations: int
    start: int
    seconds_per_iteration: float
    device: str

    @property
    def eta_s(self) -> float:
        return (self.iterations - self.start) * self.seconds_per_iteration


@dataclass(frozen=True)
class TrainProgress:
    iteration: int  # iterations done
    total: int
    loss: float
    seconds_per_iteration: float

    @property
    def eta_s(self) -> float:
        return (self.total - self.iteration) * self.seconds_per_iteration


@dataclass
class TrainResult:
    model: EfficientAD
    metadata: dict[str, Any]
    losses: list[float] = field(default_factory=list)


def default_teacher_path(size: str) -> Path:
    return WEIGHTS_DIR / f"teacher_{'small' if size == 's' else 'medium'}.safetensors"


def default_penalty_dir() -> Path:
    return ASSETS_DIR / "natural"



# --- Data ----------------------------------------------------------------------------------------


def load_squares(paths: Sequence[Path], size: int, mode: str) -> torch.Tensor:
    """Reads images into a uint8 (N, 3, size, size) tensor; ImageError names an unreadable file."""
    squares = [to_square(read_image(p), size, mode)[0] for p in paths]
    return (torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2) * 255).round().to(torch.uint8)


def load_training_squares(
    paths: Sequence[Path], size: int, mode: str, train_idx: Sequence[int], val_idx: Sequence[int],
    framing: Framing | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(training squares, validation squares, frames the part was not found in): uint8
    (N, 3, size, size). With a ``framing`` the model learns from what it will be shown at the
    line: each frame's region (found first, with ``align``), tile by tile (:meth:`FramedScorer.cuts`).
    A frame without the part is left out; DataError when that leaves nothing on either side."""
    if framing is None:
        images = load_squares(paths, size, mode)
        return images[list(train_idx)], images[list(val_idx)], 0
    from inspector.framing import FramedScorer

    cutter = FramedScorer(None, framing, input_px=size)
    missing: list[Path] = []

    def squares(indices: Sequence[int]) -> list[np.ndarray]:
        out = []
        for i in indices:
            frame = read_image(paths[i])
            framing.check_frame(frame.shape, paths[i])
            pieces = cutter.cuts(frame)
            if not pieces:
                missing.append(paths[i])
                log.warning("%s: the part was not found (match under %.2f); left out of training", paths[i], framing.min_quality)
            out += [to_square(piece, size, mode)[0] for piece in pieces]
        return out

    train, val = squares(train_idx), squares(val_idx)
    if not train or not val:
        raise DataError(f"the part was not found in {len(missing)} of {len(paths)} training images "
                        f"(first: {missing[0] if missing else '-'}): check the reference and its region")
    as_tensor = lambda squares: (torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2) * 255).round().to(torch.uint8)
    return as_tensor(train), as_tensor(val), len(missing)


def framed_counts(framing: Framing | None, train: torch.Tensor, val: torch.Tensor, without_part: int) -> dict[str, int]:
    """What a framed training learnt from, for the model's card (nothing without a framing)."""
    if framing is None:
        return {}
    return {"train_pieces": len(train), "validation_pieces": len(val), "frames_without_part": without_part}


def load_penalty_images(folder: Path, size: int, limit: int = 1000) -> torch.Tensor:
    """Natural images resized to 2x the input and centre-cropped to it: uint8 (N, 3, size, size)."""
    from inspector.image_io import list_images

    paths = list_images(folder)[:limit]
    if not paths:
        raise DataError(f"{folder}: no natural images for the penalty loss")
    big = load_squares(paths, 2 * size, "resize")
    o = size // 2
    return big[:, :, o : o + size, o : o + size].contiguous()


def content_hash(paths: Sequence[Path]) -> str:
    """SHA-256 over the training images' names and bytes, recorded in the model file."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def split_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, validation) index split; at least one image in each."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(n - 1, max(1, math.ceil(fraction * n)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One of random brightness, contrast or saturation on (1, 3, H, W) in [0, 1] (Section 3.3)."""
    lo, hi = AUGMENT_FACTOR_RANGE
    factor = lo + (hi - lo) * torch.rand((), generator=g).item()
    choice = int(torch.randint(3, (), generator=g))
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    if choice == 0:  # brightness: blend with black
        out = x * factor
    elif choice == 1:  # contrast: blend with the mean grey level
        out = (x - gray.mean()) * factor + gray.mean()
    else:  # saturation: blend with the grey image
        out = (x - gray) * factor + gray
    return out.clamp(0, 1)


def to_input(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return normalize_input(batch_u8.to(device).float() / 255)


# --- Checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(path: Path, iteration: int, total: int, model: EfficientAD, optimizer: torch.optim.Optimizer, sampler: torch.Generator, fingerprint: str) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optimizer_tensors(optimizer))
    tensors["rng.torch"] = torch.get_rng_state()  # dropout
    tensors["rng.sampler"] = sampler.get_state()  # image choice and augmentation
    meta = {"kind": "checkpoint", "iteration": iteration, "fingerprint": fingerprint, "total_iterations": total}
    save_tensors(path, tensors, meta)


def checkpoint_total(path: Path | None) -> int | None:
    """The iteration count the run that wrote ``path`` was aiming at (None if no usable checkpoint)."""
    if path is None or not path.is_file():
        return None
    try:
        total = load_tensors(path, "checkpoint")[1].get("total_iterations")
    except ModelFileError:
        return None
    return int(total) if total else None


def framing_fingerprint(framing: Framing) -> list:
    """What of the frames a training learns from, for its checkpoint's fingerprint: a run cancelled
    and started again on another region, mask, reference or tiling must start afresh, not resume
    a student taught on other cuts."""
    from inspector.framing.recipe import framing_file_parts

    entry, tensors = framing_file_parts(framing)
    return [entry, {name: hashlib.sha256(t.numpy().tobytes()).hexdigest() for name, t in sorted(tensors.items())}]


def load_checkpoint(path: Path, model: EfficientAD, optimizer: torch.optim.Optimizer, sampler: torch.Generator, fingerprint: str) -> int:
    """Restores model, optimiser and RNG; returns the iteration to continue from (0 if unusable)."""
    try:
        tensors, meta = load_tensors(path, "checkpoint")
    except ModelFileError as e:
        log.warning("ignoring checkpoint: %s", e)
        return 0
    if meta.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: it was made with other data or settings", path)
        return 0
    model.load_state_dict(unprefixed("model", tensors))
    restore_optimizer(optimizer, tensors)
    torch.set_rng_state(tensors["rng.torch"])
    sampler.set_state(tensors["rng.sampler"])
    return int(meta["iteration"])


# --- The recipe ----------------------------------------------------------------------------------


def load_teacher_weights(model: EfficientAD, teacher: str | Path | None) -> dict[str, Any]:
    """Puts the teacher's weights into ``model``; returns what the model file records about it."""
    if teacher == "random":
        log.warning("training with a random teacher: expect much weaker detection than a distilled one")
        return {"teacher": "random"}
    path = Path(teacher) if teacher else default_teacher_path(model.size)
    if teacher is None and not path.is_file():
        log.warning("no shipped PDN-%s teacher at %s; using a random teacher", model.size.upper(), path)
        return {"teacher": "random"}
    state, card = load_teacher(path, model.size)
    model.teacher.load_state_dict(state)
    return {"teacher": str(path.name), "teacher_sha256": card.get("tensor_sha256")}


def train(
    good_images: Sequence[Path],
    config: TrainConfig = TrainConfig(),
    teacher: str | Path | None = None,
    penalty_dir: Path | None = None,
    device: str = "auto",
    checkpoint: Path | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    cancel: threading.Event | None = None,
    show_progress: bool = True,
    confirm: Callable[[TrainPlan], bool] | None = None,
    on_snapshot: Callable[[int, EfficientAD], None] | None = None,
    snapshot_every: int = 0,
    keep_checkpoint: bool = False,
    framing: Framing | None = None,
) -> TrainResult:
    """Trains EfficientAD on good images and calibrates its maps on a held-out 10 % of them.

    ``confirm`` sees the plan (iterations and measured time) of every run long enough to be
    estimated, before the first step; when it returns False nothing is trained and
    :class:`TrainingCancelled` is raised (a command line asks its user there; the core never does).
    ``on_snapshot(iteration, model)`` is called every ``snapshot_every`` iterations with the model
    in training (accuracy-against-time curves use it; it must leave the model as it found it).

    A completed run removes its ``checkpoint``, unless ``keep_checkpoint``: then it checkpoints
    its last iteration too and leaves the file for the caller to remove once the model file is
    durable, so a failed save (a full disk) loses no training: the same call resumes at the end
    and goes straight to the model.

    ``framing``: what of each frame the model sees (:func:`load_training_squares`); save it with
    the model (:func:`inspector.model_file.save_model`) so the engine frames alike.
    """
    if len(good_images) < MIN_GOOD_IMAGES:
        raise DataError(f"{len(good_images)} good images given; training needs at least {MIN_GOOD_IMAGES}")
    if config.recipe not in RECIPES:
        raise InspectorError(f"recipe must be one of {', '.join(RECIPES)}, not {config.recipe!r}")
    if config.crop_size and config.crop_size < config.image_size:
        crop_window(config.image_size, config.crop_size, torch.Generator())  # refuses an unusable size now, not mid-run
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    model = EfficientAD(config.size, autoencoder=config.autoencoder)
    teacher_info = load_teacher_weights(model, teacher)
    model.to(dev)

    train_idx, val_idx = split_holdout(len(good_images), config.validation_fraction, config.seed)
    train_images, val_images, without_part = load_training_squares(good_images, config.image_size, config.resize_mode,
                                                                   train_idx, val_idx, framing)
    penalty = load_penalty_images(penalty_dir or default_penalty_dir(), config.image_size)
    data_hash = content_hash(good_images)

    model.teacher.eval().requires_grad_(False)
    targets = None
    if config.recipe == "short":  # one teacher pass gives the statistics and the cached targets
        targets = TeacherTargets(model, train_images, dev)
        mean, std = targets.mean, targets.std
    else:
        mean, std = teacher_channel_stats(model.teacher, (to_input(train_images[i : i + 8], dev) for i in range(0, len(train_images), 8)))
    model.set_teacher_stats(mean, std)

    step_s, budgeted = None, config.time_budget_s is not None
    if budgeted:  # _fit_budget says what it fitted
        config, step_s = _fit_budget(config, model, dev, checkpoint)
    elif config.iterations >= ESTIMATE_FROM_ITERATIONS:
        step_s = estimate_step_seconds(model, dev, amp=config.amp and bf16_supported(dev), config=config)

    params = [*model.student.parameters(), *(model.autoencoder.parameters() if model.has_autoencoder else ())]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    # Without a framing, the fingerprint a checkpoint made before framings existed has: it resumes.
    made_with = [asdict(config), data_hash, teacher_info] + ([framing_fingerprint(framing)] if framing else [])
    fingerprint = hashlib.sha256(json.dumps(made_with, sort_keys=True).encode()).hexdigest()
    sampler = torch.Generator().manual_seed(config.seed)
    start = load_checkpoint(checkpoint, model, optimizer, sampler, fingerprint) if checkpoint and checkpoint.is_file() else 0
    if start:
        log.info("resuming from iteration %d of %d (%s)", start, config.iterations, checkpoint)
    if step_s is not None:
        plan = TrainPlan(config.iterations, start, step_s, str(dev))
        if not budgeted:
            log.info(
                "training EfficientAD-%s (%s recipe) for %d iterations on %s: about %s (%.2f s per iteration)",
                config.size.upper(), config.recipe, plan.iterations - plan.start, dev, format_duration(plan.eta_s), step_s,
            )
        if confirm is not None and not confirm(plan):
            raise TrainingCancelled("training not started")

    amp = config.amp and bf16_supported(dev)
    if config.recipe == "short":
        def step(it: int) -> float:
            return short_step(model, optimizer, train_images, targets, penalty, sampler, dev, config, amp)
    else:
        def step(it: int) -> float:
            return train_step(model, optimizer, train_images, penalty, sampler, dev, amp)
    losses = _train_loop(model, optimizer, sampler, step, config, start, checkpoint, fingerprint, on_progress, cancel, show_progress, on_snapshot, snapshot_every)
    if checkpoint and keep_checkpoint:
        if start < config.iterations:
            try:
                save_checkpoint(checkpoint, config.iterations, config.iterations, model, optimizer, sampler, fingerprint)
            except ModelFileError as e:  # the last periodic checkpoint stays; the model may still fit
                log.warning("the last iteration was not checkpointed: %s", e)
    elif checkpoint:
        checkpoint.unlink(missing_ok=True)

    model.eval()
    quantiles = validation_quantiles(model, val_images, dev)
    model.set_map_quantiles(quantiles)
    metadata = {
        "architecture": f"EfficientAD-{config.size.upper()}" + ("" if config.autoencoder else " (student-teacher only)"),
        "autoencoder": config.autoencoder,
        "recipe": config.recipe,
        "batch_size": config.batch_size,
        "image_size": config.image_size,
        "resize_mode": config.resize_mode,
        "iterations": config.iterations,
        "seed": config.seed,
        "train_images": len(train_idx),
        "validation_images": len(val_idx),
        **framed_counts(framing, train_images, val_images, without_part),
        "training_content_sha256": data_hash,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "software_version": __version__,
        "final_loss": float(np.mean(losses[-100:])) if losses else None,
        **teacher_info,
    }
    return TrainResult(model.cpu(), metadata, losses)


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The learning rate of 0-based ``iteration``: the paper's step drop, or a cosine to 0."""
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * iteration / config.iterations))
    if config.schedule != "step":
        raise InspectorError(f"schedule must be step or cosine, not {config.schedule!r}")
    return config.learning_rate * (0.1 if iteration >= int(config.lr_drop_fraction * config.iterations) else 1.0)


def _train_loop(model, optimizer, g, step, config, start, checkpoint, fingerprint, on_progress, cancel, show_progress, on_snapshot, snapshot_every) -> list[float]:
    model.student.train()
    if model.has_autoencoder:
        model.autoencoder.train()
    losses: list[float] = []
    bar = tqdm(total=config.iterations, initial=start, desc="training", unit="it", disable=not show_progress, dynamic_ncols=True)
    t0, done_here = time.perf_counter(), 0
    last_checkpoint = t0
    try:
        for it in range(start, config.iterations):
            if cancel is not None and cancel.is_set():
                if checkpoint:
                    save_checkpoint(checkpoint, it, config.iterations, model, optimizer, g, fingerprint)
                raise TrainingCancelled(f"training cancelled at iteration {it} of {config.iterations}")
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, it)
            loss = step(it)
            losses.append(loss)
            done_here += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if on_progress is not None:
                on_progress(TrainProgress(it + 1, config.iterations, loss, (time.perf_counter() - t0) / done_here))
            if on_snapshot is not None and snapshot_every and (it + 1) % snapshot_every == 0:
                on_snapshot(it + 1, model)
            due = (it + 1) % config.checkpoint_every == 0 or time.perf_counter() - last_checkpoint >= config.checkpoint_every_s
            if checkpoint and due and it + 1 < config.iterations:
                save_checkpoint(checkpoint, it + 1, config.iterations, model, optimizer, g, fingerprint)
                last_checkpoint = time.perf_counter()
    finally:
        bar.close()
    return losses


def train_step(
    model: EfficientAD,
    optimizer: torch.optim.Optimizer,
    train_images: torch.Tensor,
    penalty: torch.Tensor,
    g: torch.Generator,
    dev: torch.device,
    amp: bool = False,
) -> float:
    """One iteration of Algorithm 1 with batch size 1; returns the total loss."""
    image = train_images[int(torch.randint(len(train_images), (), generator=g))][None].float() / 255
    image_aug = augment(image, g)
    natural = penalty[int(torch.randint(len(penalty), (), generator=g))][None].float() / 255
    if torch.rand((), generator=g).item() < PENALTY_GRAYSCALE_P:
        natural = natural.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    x, x_aug, x_nat = (normalize_input(t.to(dev)) for t in (image, image_aug, natural))
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        with torch.no_grad():
            teacher_out = (model.teacher(torch.cat([x, x_aug])).float() - model.teacher_mean) / model.teacher_std
        student_out = model.student(torch.cat([x, x_nat, x_aug])).float()
        ae_out = model.autoencoder(x_aug).float()
    losses = efficientad_loss(teacher_out[:1], student_out[:1], student_out[1:2], teacher_out[1:], student_out[2:], ae_out)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()
    return float(losses["total"].detach())


class TeacherTargets:
    """The teacher's normalised outputs on the training images, for the short recipe.

    The teacher is frozen and the student learns from the un-augmented image, so its target for an
    image never changes: one teacher pass (fp32) gives every target and the channel statistics
    (Section 3.1) at once, and the steps then run the student alone. Kept as fp16 (2.4 MB an image
    at 256 px); past TARGET_CACHE_MAX_BYTES only the statistics are kept and the teacher runs per
    step, as in the paper's recipe.
    """

    def __init__(self, model: EfficientAD, images: torch.Tensor, dev: torch.device, batch: int = 8) -> None:
        self.model = model
        self.dev = dev
        self._cache: torch.Tensor | None = None
        total = total_sq = None
        count, outs = 0, []
        keep = None
        with torch.no_grad():
            for i in range(0, len(images), batch):
                out = model.teacher(to_input(images[i : i + batch], dev))  # (n, 384, 56, 56)
                if keep is None:
                    keep = out[0].numel() * 2 * len(images) <= TARGET_CACHE_MAX_BYTES
                    if not keep:
                        log.info("teacher outputs of %d images exceed the cache limit: computed per step", len(images))
                d = out.double()
                s, sq = d.sum(dim=(0, 2, 3)), (d**2).sum(dim=(0, 2, 3))
                total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
                count += out.shape[0] * out.shape[2] * out.shape[3]
                if keep:
                    outs.append(out.half())
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(0).sqrt()
        self.mean = mean.float()[None, :, None, None]
        self.std = std.float()[None, :, None, None]
        if keep:
            self._cache = torch.cat(outs)
        self._images = images

    @property
    def cached(self) -> bool:
        return self._cache is not None

    @torch.no_grad()
    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """Normalised float32 targets (B, 384, 56, 56) of the training images at ``index``."""
        if self._cache is not None:
            raw = self._cache[index.to(self._cache.device)].float()
        else:
            raw = self.model.teacher(to_input(self._images[index], self.dev)).float()
        return (raw - self.mean.to(raw.device)) / self.std.to(raw.device)


#: The PDN's output moves one position per this many input pixels (two stride-2 poolings), and
#: loses this many pixels at the edges (no padding): 256 px in, 56 positions out.
PDN_STRIDE = 4
PDN_BORDER = 32


def crop_window(image_size: int, crop_size: int, g: torch.Generator) -> tuple[int, int, int]:
    """A random (top, left, size) input window whose offsets are multiples of PDN_STRIDE."""
    if crop_size > image_size or crop_size <= PDN_BORDER or (crop_size - PDN_BORDER) % PDN_STRIDE:
        raise InspectorError(f"crop size {crop_size} does not fit {image_size} px inputs (a multiple of {PDN_STRIDE} above {PDN_BORDER})")
    steps = (image_size - crop_size) // PDN_STRIDE + 1
    top, left = (int(v) * PDN_STRIDE for v in torch.randint(steps, (2,), generator=g))
    return top, left, crop_size


def feature_window(window: tuple[int, int, int]) -> tuple[int, int, int]:
    """The PDN output window computed from input ``window`` alone."""
    top, left, size = window
    return top // PDN_STRIDE, left // PDN_STRIDE, (size - PDN_BORDER) // PDN_STRIDE


def crop(x: torch.Tensor, window: tuple[int, int, int]) -> torch.Tensor:
    top, left, size = window
    return x[..., top : top + size, left : left + size]


def short_step(
    model: EfficientAD,
    optimizer: torch.optim.Optimizer,
    train_images: torch.Tensor,
    targets: TeacherTargets,
    penalty: torch.Tensor,
    g: torch.Generator,
    dev: torch.device,
    config: TrainConfig,
    amp: bool = False,
) -> float:
    """One step of the short recipe: L_hard on a batch of training images against their cached
    targets, plus L_penalty on a few natural images (and, with an autoencoder, Algorithm 1's
    L_AE and L_STAE on augmented copies). Returns the total loss."""
    index = torch.randint(len(train_images), (config.batch_size,), generator=g)
    images = train_images[index].float() / 255
    natural = penalty[torch.randint(len(penalty), (config.penalty_batch_size,), generator=g)].float() / 255
    window = None
    if config.crop_size and config.crop_size < images.shape[-1] and not model.has_autoencoder:
        window = crop_window(images.shape[-1], config.crop_size, g)
        images, natural = crop(images, window), crop(natural, window)
    gray = torch.rand(config.penalty_batch_size, generator=g) < PENALTY_GRAYSCALE_P
    natural[gray] = natural[gray].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    x, x_nat = normalize_input(images.to(dev)), normalize_input(natural.to(dev))
    b = config.batch_size
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        if model.has_autoencoder:
            x_aug = normalize_input(torch.cat([augment(images[i : i + 1], g) for i in range(b)]).to(dev))
            with torch.no_grad():
                teacher_aug = (model.teacher(x_aug).float() - model.teacher_mean) / model.teacher_std
            student_out = model.student(torch.cat([x, x_nat, x_aug])).float()
            ae_out = model.autoencoder(x_aug).float()
        else:
            student_out = model.student(torch.cat([x, x_nat])).float()
    teacher_out = targets(index)
    if window is not None:
        teacher_out = crop(teacher_out, feature_window(window))
    if model.has_autoencoder:
        p = config.penalty_batch_size
        loss = efficientad_loss(teacher_out, student_out[:b], student_out[b : b + p], teacher_aug, student_out[b + p :], ae_out)["total"]
    else:
        loss = hard_feature_loss(teacher_out, student_out[:b]) + penalty_loss(student_out[b:])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def validation_quantiles(model: EfficientAD, val_images: torch.Tensor, dev: torch.device) -> dict[str, torch.Tensor]:
    """Map quantiles over held-out good images (Section 3.4), computed exactly."""
    maps = [model.raw_maps(to_input(val_images[i : i + 8], dev)) for i in range(0, len(val_images), 8)]
    map_st = torch.cat([m[0] for m in maps])
    map_ae = torch.cat([m[1] for m in maps]) if model.has_autoencoder else None
    return {k: v.cpu() for k, v in map_quantiles(map_st, map_ae).items()}


@torch.no_grad()
def estimate_step_seconds(
    model: EfficientAD, dev: torch.device, steps: int = 3, amp: bool = False, config: TrainConfig | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Times forward and backward passes like a training step's of ``config``'s recipe (the
    paper's when None), leaving weights and RNG as they were. ``clock`` may be
    ``time.process_time``: CPU seconds, which other jobs on a shared machine barely change."""
    size = config.image_size if config else IMAGE_SIZE
    x = torch.zeros(1, 3, size, size, device=dev)
    short = config is not None and config.recipe == "short"
    times = []
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        for _ in range(steps + 1):
            t = clock()
            with torch.enable_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                if short:
                    b, p = config.batch_size, config.penalty_batch_size
                    ae = model.has_autoencoder
                    if ae:
                        model.teacher(x.expand(b, -1, -1, -1))
                    c = min(config.crop_size, size) if config.crop_size and not ae else size
                    out = model.student(x[..., :c, :c].expand(b * (2 if ae else 1) + p, -1, -1, -1)).sum()
                    if ae:
                        out = out + model.autoencoder(x.expand(b, -1, -1, -1)).sum()
                else:
                    model.teacher(torch.cat([x, x]))
                    out = model.student(torch.cat([x, x, x])).sum() + model.autoencoder(x).sum()
                out.backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(clock() - t)
    model.zero_grad(set_to_none=True)
    return float(np.median(times[1:]))


#: Share of a time budget planned for training steps: the estimate times the networks alone and
#: ran 8 % under the real step (sampling, augmentation, optimiser) on this project's CPU.
BUDGET_MARGIN = 0.9


def _fit_budget(config: TrainConfig, model: EfficientAD, dev: torch.device, checkpoint: Path | None) -> tuple[TrainConfig, float | None]:
    """``config`` with the iteration count that fits its time budget on ``dev``, and the measured
    seconds per iteration (None for a resumed run, which keeps the count it chose unmeasured)."""
    planned = checkpoint_total(checkpoint)
    if planned is not None and planned <= config.iterations:
        log.info("resuming a time-budgeted run: it planned %d iterations", planned)
        return replace(config, iterations=planned, time_budget_s=None), None
    step_s = estimate_step_seconds(model, dev, amp=config.amp and bf16_supported(dev), config=config)
    fits = int(BUDGET_MARGIN * config.time_budget_s / step_s)
    iterations = max(1, min(config.iterations, fits))
    log.info(
        "training EfficientAD-%s (%s recipe) for %d iterations on %s: %.2f s per iteration fits %d in the %s budget%s",
        config.size.upper(), config.recipe, iterations, dev, step_s, fits, format_duration(config.time_budget_s),
        "" if fits <= config.iterations else f" (capped at {config.iterations})",
    )
    if iterations < LOW_ITERATIONS:
        log.warning(
            "only %d iterations fit in the time budget on %s; expect a weak model (a GPU, or a longer "
            "budget, trains better)", iterations, dev,
        )
    return replace(config, iterations=iterations, time_budget_s=None), step_s


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
