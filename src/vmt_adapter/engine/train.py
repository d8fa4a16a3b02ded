"""Training: AdamW + warm-up/cosine, clipping, optional autocast, DDP, atomic checkpoints, exact resume,
evaluation on the way (``train.eval_every``) that leaves the trajectory untouched, and the best checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data import build_dataset, dataset_class
from ..device import autocast, rng_preserved, rng_state, seed_everything, set_rng_state
from ..errors import CheckpointError, ConfigError, VMTError
from ..fileio import atomic_write
from ..kinds import global_counts
from ..models.io import load_trainable, save_adapter
from . import distributed as ddp
from .checkpoint import BEST, load_checkpoint, remove_stale_temporaries, save_best, save_checkpoint
from .config import RunConfig, flatten_config, load_config, save_config
from .evaluate import evaluate_split, headlines, move
from .loader import train_loader
from .losses import MultiTaskLoss
from .optim import grad_scaler, lagged, optimizer_step, param_groups, warmup_cosine
from .prior import prior_details
from .provenance import record_start
from .results import write_eval
from .runlock import RunLock
from .runs import initial_model
from .score import ranking_score, resolve_reference

# What a run leaves behind that must not be overwritten by a fresh start (a log and config alone,
# from a run killed before its first checkpoint, hold nothing worth keeping).
RUN_ARTEFACTS = ("next.pt", "last.pt", "prev.pt", "eval.json", "adapter.safetensors", "adapter.json")
BEST_ADAPTER = "best"  # folder of the best evaluation's adapter files (beside best.pt)


# Keys a resumed run may change: they move files, logs or evaluation, not the trained weights.
# (train.steps may grow: the schedule is then the longer one's, as the checkpoint's scheduler state allows.)
FREE_ON_RESUME = ("train.steps", "data.workers", "data.root", "data.cache_dir", "device", "train.log_every",
                  "train.ckpt_every", "train.eval_every", "eval.split", "eval.batch_size", "eval.full_res",
                  "eval.reference")


def _record_step(line: str) -> float:
    """The step of one log line; a torn line (a kill mid-write) counts as after every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


class TensorBoardLog:
    """TensorBoard scalars beside ``metrics.jsonl`` (the run's record). TensorBoard is a convenience:
    when its writer fails (a full disk surfaces from its background thread as an ``OSError`` on a
    later call), it warns once and stops, and the training goes on."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer: SummaryWriter | None = SummaryWriter(str(folder))

    def _guard(self, action) -> None:
        if self.writer is None:
            return
        try:
            action(self.writer)
        except OSError as exc:
            warnings.warn(f"TensorBoard logging stopped ({exc.strerror or exc}); metrics.jsonl goes on", stacklevel=3)
            self.writer = None

    def scalars(self, record: dict) -> None:
        """Every number of a log record (nested ones as ``key/sub``); text and None are left out."""
        def write(w) -> None:
            for key, value in record.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        w.add_scalar(f"{key}/{sub}", v, record["step"])
                elif key != "step" and isinstance(value, (int, float)):
                    w.add_scalar(key, value, record["step"])
        self._guard(write)

    def close(self) -> None:
        self._guard(lambda w: w.close())


STATUS_EVERY_S = 5.0


class NonFiniteLossError(VMTError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def render_ahead(data, workers: int, progress: bool) -> None:
    """Render a synthetic dataset's missing cache files before the loop, in the loader's worker count of
    processes or else one per core this process may use (at most 8), with a progress bar."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tqdm(desc="render", unit="scene", disable=not progress, dynamic_ncols=True) as bar:
        def advance(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()
        data.prepare(workers or min(8, cores), advance)


def resume_config(run_dir: Path) -> Path:
    """The config ``--resume`` without ``--config`` continues with: the run's own ``config.yaml``."""
    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume: {run_dir} does not exist")
    if not path.is_file():  # config.yaml is written before the first step, atomically: killed before it
        raise CheckpointError(f"--resume: {run_dir} holds no config.yaml, so the run was stopped before it began "
                              "training; start it again with --config and without --resume")
    return path


def add_task_overrides(run_dir: str | Path, add: list[str]) -> list[str]:
    """``--set`` items that continue ``run_dir`` with the tasks ``add``: its tasks, model and task groups."""
    if not (Path(run_dir) / "config.yaml").is_file() or not (Path(run_dir) / "adapter.json").is_file():
        raise ConfigError(f"--from {run_dir}: not a finished run folder (it needs config.yaml and adapter.json)")
    run = load_config(Path(run_dir) / "config.yaml")
    present = [t for t in add if t in run.tasks]
    if present:
        raise ConfigError(f"--add-tasks {','.join(add)}: the run {run_dir} already has {', '.join(present)}")
    groups = run.model.task_groups or [run.tasks]
    model = replace(run.model, from_run=str(run_dir), task_groups=[*groups, list(add)])
    return [f"tasks={json.dumps(run.tasks + list(add))}", f"data.size={run.data.size}"] + \
        [f"model.{k}={json.dumps(v)}" for k, v in asdict(model).items()]


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 status: str | None = None) -> None:
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.status = status  # without a progress bar: a line starting with this every STATUS_EVERY_S seconds
        self.info = ddp.setup(cfg.device)
        self.progress = progress and self.info.is_main
        seed_everything(cfg.seed, cfg.deterministic)
        self.model = initial_model(cfg).to(self.info.device)
        self.model.set_grad_checkpointing(cfg.train.grad_checkpointing)
        self.tasks = self.model.tasks
        if self.info.enabled:  # decoders' BatchNorm must see the global batch, as in one process
            ddp.globalise_batchnorm(self.model)
        self.net: nn.Module = self.model
        if self.info.enabled:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids,
                                               find_unused_parameters=self.model.method.has_unused_parameters)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.weight_decay, t.decay_position_tables),
                                           lr=t.lr, betas=t.betas)
        self.scaler = grad_scaler(t.precision, self.info.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lagged(warmup_cosine(
            t.warmup_steps, t.steps, t.lr, t.warmup_lr, t.min_lr), t.lr_lag))
        trained = set(cfg.model.task_groups[-1]) if cfg.model.from_run else set(self.model.task_names)
        self.criterion = MultiTaskLoss([s for s in self.tasks if s.name in trained], t.loss_weights)
        self.step = 0
        self.skipped = 0
        self.resumed_rng: dict | None = None  # the random streams of the checkpoint resumed from
        self.best: dict | None = None  # {"step", "score", "against", "split"} of the best evaluation so far
        self.reference: dict[str, float] | None = None  # what evaluations are scored against (see _score)
        self.final: dict | None = None  # the evaluation at train.steps, made in the loop, for finish()
        self.result: dict | None = None
        self.stop_signal: int | None = None

    # ----------------------------------------------------------------- state
    def weights(self) -> dict[str, torch.Tensor]:
        """The trained tensors (on the CPU): what checkpoints and ``best.pt`` hold of the model."""
        return {k: v.cpu() for k, v in self.model.trainable_state_dict().items()}

    def state(self) -> dict:
        return {
            "step": self.step,
            "skipped": self.skipped,
            "model": self.weights(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "config": self.cfg.to_dict(),
            "world_size": self.info.world_size,
            "best": self.best,
        }

    def restore(self) -> None:
        state = load_checkpoint(self.run_dir)
        if state is None:
            raise CheckpointError(f"--resume: no checkpoint in {self.run_dir}: the run was stopped before its first "
                                  "one; start it again without --resume (a fresh start may use the folder)")
        saved, now = flatten_config(state["config"]), flatten_config(self.cfg.to_dict())
        default = flatten_config(RunConfig().to_dict())  # a key newer than the checkpoint ran at its default
        diffs = [k for k in now if saved.get(k, default.get(k)) != now[k] and k not in FREE_ON_RESUME]
        if diffs:
            raise CheckpointError(f"--resume: the config differs from the checkpoint's in {', '.join(diffs)} "
                                  "(only keys that leave the result unchanged may change: "
                                  f"{', '.join(FREE_ON_RESUME)})")
        if self.cfg.train.steps < state["step"]:
            raise CheckpointError(f"--resume: train.steps={self.cfg.train.steps} is below the checkpoint's step "
                                  f"{state['step']}; a run cannot be shortened after the fact")
        world = state.get("world_size", self.info.world_size)
        if world != self.info.world_size:
            raise CheckpointError(f"--resume: the checkpoint was written by {world} process(es), this is "
                                  f"{self.info.world_size}; the global batch would change")
        why = load_trainable(self.model, state["model"])  # checkpoints hold what adapter files hold
        if why:
            raise CheckpointError(f"--resume: the checkpoint's tensors do not fit this model: {why}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.skipped = state["step"], state["skipped"]
        if len(state.get("rng") or []) == self.info.world_size:  # checkpoints older than the record have none
            self.resumed_rng = state["rng"][self.info.rank]  # set in _loop, once the loader has drawn its seed
        self.best = state.get("best")  # checkpoints older than best.pt have none
        if self.best is not None and (self.best["against"], self.best["split"]) != self._ranking():
            against, split = self._ranking()
            warnings.warn(f"--resume: eval.split or eval.reference changed (best so far: step {self.best['step']} on "
                          f"{self.best['split']} against {self.best['against']}; now {split} against {against}); "
                          "the best evaluation starts over", stacklevel=2)
            self.best = None
        self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint, so a resumed log reads as an uninterrupted one."""
        log = self.run_dir / "metrics.jsonl"
        if self.info.is_main and log.exists():
            keep = [ln for ln in log.read_text(errors="replace").splitlines() if _record_step(ln) <= self.step]
            atomic_write(log, lambda tmp: Path(tmp).write_text("".join(ln + "\n" for ln in keep)))

    def save(self) -> None:
        rngs = ddp.gather_objects(self.info, rng_state(self.info.device))  # per rank: each draws its own masks
        if self.info.is_main:
            save_checkpoint(self.run_dir, self.state() | {"rng": rngs})
        ddp.barrier(self.info)

    # ----------------------------------------------------------------- loop
    @property
    def interrupted(self) -> bool:
        return self.stop_signal is not None

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def _log(self, record: dict, writer) -> None:
        if not self.info.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            writer.scalars(record)

    def fit(self) -> dict | None:
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir) if self.info.is_main else contextlib.nullcontext():
            return self._fit()

    def _fit(self) -> dict | None:
        c, t = self.cfg, self.cfg.train
        if self.info.is_main:
            remove_stale_temporaries(self.run_dir)  # this process holds the lock: no other writer is alive
        ddp.barrier(self.info)
        # Check before writing anything: a refused start must leave an existing run's config.yaml as it was.
        if c.eval.reference:  # the end of training is too late to find that the reference does not exist
            self.reference = resolve_reference(c.eval.reference)
        if self.resume:
            self.restore()
        elif any((self.run_dir / name).exists() for name in RUN_ARTEFACTS):
            raise ConfigError(f"{self.run_dir} already holds a run; use --resume or another --out")
        if self.info.is_main:
            if not self.resume:  # a fresh run keeps nothing of a run killed before its first checkpoint
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
                (self.run_dir / BEST).unlink(missing_ok=True)
                shutil.rmtree(self.run_dir / BEST_ADAPTER, ignore_errors=True)
            save_config(c, self.run_dir / "config.yaml")
            record_start(self.run_dir, self.info.device, self.info.world_size, self.step, self.resume)
        ddp.barrier(self.info)
        data = build_dataset(c.data.name, c.data.root, c.data.train_split, c.tasks, c.data.size, train=True,
                             seed=c.seed, num=c.data.num_train or None, cache_dir=c.data.cache_dir, pad=c.data.pad,
                             emptied=c.data.emptied)
        if self.info.is_main and hasattr(data, "prepare"):  # SynthScenes: render into the cache before the loop
            render_ahead(data, c.data.workers, self.progress)
        ddp.barrier(self.info)
        if dataset_class(c.data.name).NEEDS_ROOT:  # its evaluation split must exist before hours of training
            build_dataset(c.data.name, c.data.root, c.eval.split, c.tasks, c.data.size, train=False, num=1)
        loader = train_loader(data, t.batch_size, t.steps, c.seed, self.info.rank, self.info.world_size,
                              self.step, c.data.workers)
        writer = TensorBoardLog(self.run_dir / "tb") if self.info.is_main else None
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._loop(loader, writer)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if writer is not None:
                writer.close()
        if self.interrupted:
            return None
        return self.finish()

    # ----------------------------------------------------------------- evaluation
    def _ranking(self) -> tuple[str, str]:
        """What evaluations are ranked by: (reference, split); the reference is ``eval.reference``, else
        the prior (the best constant prediction of the split, ``engine.prior``), which needs no other run."""
        return self.cfg.eval.reference or "prior", self.cfg.eval.split

    def _score(self, metrics: dict[str, float]) -> float | None:
        """dm of ``metrics`` against the ranking reference: ``eval.reference``, resolved when training starts,
        else the split's prior (computed on first use)."""
        if self.reference is None:
            self.reference = headlines(self.tasks, prior_details(self.cfg, self.cfg.eval.split))
        return ranking_score(metrics, self.reference)

    def _evaluate(self, writer) -> None:
        """Evaluate the current weights, log the headlines and their score, keep them if they are the best.

        Run between training steps: the random streams are restored afterwards and the model goes back
        to training mode (``evaluate``), so the weights after the next step are the same as without it."""
        with rng_preserved(self.info.device):
            details = evaluate_split(self.model, self.tasks, self.cfg, self.cfg.eval.split, self.info, self.progress)
            metrics = headlines(self.tasks, details)
            score = self._score(metrics) if self.info.is_main else None
        self._log({"step": self.step, "split": self.cfg.eval.split, "eval": metrics, "score": score}, writer)
        if self.step == self.cfg.train.steps:
            self.final = details
        if self.info.is_main and score is not None and (self.best is None or score > self.best["score"]):
            against, split = self._ranking()
            self.best = {"step": self.step, "score": score, "against": against, "split": split}
            save_best(self.run_dir, {**self.best, "model": self.weights()})
            save_adapter(self.model, self.run_dir / BEST_ADAPTER)

    def _loop(self, loader, writer) -> None:
        t, dev = self.cfg.train, self.info.device
        self.net.train()
        bar = tqdm(total=t.steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        tic, seen = time.perf_counter(), 0
        said = tic
        # draws the loader's base seed from torch's stream, as the checkpointed run did at step 0
        batches = iter(loader)
        if self.resumed_rng is not None:
            set_rng_state(self.resumed_rng, dev)
            self.resumed_rng = None
        for batch in batches:
            batch = move(batch, dev)
            with autocast(dev, t.precision):
                out = self.net(batch["image"])
            with global_counts():
                total, losses = self.criterion({k: v.float() for k, v in out.items()}, batch)
            # Every process must take the same branch (DDP would hang otherwise): a task is bad if it is anywhere.
            finite = ddp.mean_across(self.info, torch.stack([torch.isfinite(v).float() for v in losses.values()]))
            bad = [k for k, ok in zip(losses, finite.tolist()) if ok < 1.0]
            self.optimizer.zero_grad(set_to_none=True)
            if bad:
                if t.on_nonfinite == "stop":
                    kept = (f"the last good checkpoint is kept in {self.run_dir}" if self.step >= t.ckpt_every
                            or self.resume else "no checkpoint had been written yet")
                    raise NonFiniteLossError(f"non-finite loss at step {self.step + 1} in task(s) {', '.join(bad)}; "
                                             + kept)
                self.skipped += 1
            else:
                optimizer_step(total, self.model, self.optimizer, t.grad_clip, self.scaler)
            self.scheduler.step()
            self.step += 1
            seen += batch["image"].shape[0] * self.info.world_size
            bar.update(1)
            if self.status and self.info.is_main and (time.perf_counter() - said >= STATUS_EVERY_S
                                                      or self.step == t.steps):
                said = time.perf_counter()
                print(f"{self.status} step {self.step}/{t.steps} loss {total.item():.3f} "
                      f"{seen / (said - tic):.0f} img/s", flush=True)
            if self.step % t.log_every == 0 or self.step == t.steps:
                vals = ddp.mean_across(self.info, torch.stack([total.detach(), *[losses[k].detach() for k in losses]]))
                rate = seen / (time.perf_counter() - tic)
                record = {"step": self.step, "loss": float(vals[0]), "lr": self.scheduler.get_last_lr()[0],
                          "losses": {k: float(v) for k, v in zip(losses, vals[1:])}, "img_per_s": rate,
                          "skipped": self.skipped}
                self._log(record, writer)
                bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{rate:.1f}")
            if self.step == t.steps or (t.eval_every and self.step % t.eval_every == 0):
                self._evaluate(writer)  # before the checkpoint, so that it holds the best so far
            if self.step % t.ckpt_every == 0 or self.step == t.steps or self.stop_signal is not None:
                self.save()
            if self.stop_signal is not None:
                if self.progress:
                    tqdm.write(f"signal {self.stop_signal}: checkpoint saved at step {self.step} in {self.run_dir}")
                break
        bar.close()

    def finish(self) -> dict:
        """Adapter files and ``eval.json`` of the final evaluation (made again when a finished run resumes)."""
        if self.info.is_main:
            save_adapter(self.model, self.run_dir)
        details = self.final if self.final is not None else \
            evaluate_split(self.model, self.tasks, self.cfg, self.cfg.eval.split, self.info, self.progress)
        result = None
        if self.info.is_main:
            result = write_eval(self.run_dir, self.model, details, self.cfg, self.step, best=self.best)
        ddp.barrier(self.info)
        return result


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
          status: str | None = None) -> Trainer:
    """Train (or resume) a run; the returned trainer holds ``result`` (rank 0) and ``interrupted``.

    ``status``: when several runs share a terminal (no progress bars), each prints a line starting with
    it every few seconds."""
    trainer = Trainer(cfg, run_dir, resume, progress, status)
    try:
        trainer.result = trainer.fit()
    finally:
        ddp.teardown(trainer.info)
    return trainer
