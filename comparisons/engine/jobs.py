"""Jobs made of jobs (the suite, the homotopy): what a child run inherits from its parent, and which children the
data root cannot serve."""

from __future__ import annotations

from pathlib import Path

from comparisons.engine.config import RunCfg

IMAGE_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py"}


def child_overrides(cfg: RunCfg, run_dir: Path, group: str) -> list[str]:
    """The parent's own settings that every child run takes over (seeds, device, resume, paths, logger, progress).

    Args:
        cfg: The parent's config.
        run_dir: The child's run dir (quoted in the override: child dirs may be named ``s=<strength>``).
        group: The W&B group of the children when the parent does not set one.
    """
    out = [
        f"seed={cfg.seed}",
        f"device={cfg.device}",
        f"resume={str(cfg.resume).lower()}",
        f"paths.data_root={cfg.paths.data_root}",
        f"paths.runs_root={cfg.paths.runs_root}",
        f"paths.run_dir='{run_dir}'",
        f"logger={cfg.logger.name}",
        f"train.progress={cfg.train.progress}",
    ]
    if cfg.seeds:
        out.append(f"seeds=[{','.join(str(s) for s in cfg.seeds)}]")
    if cfg.logger.name == "wandb":
        out += [
            f"logger.mode={cfg.logger.mode}",
            f"logger.project={cfg.logger.project}",
            f"logger.group={cfg.logger.group or group}",
        ]
    return out


def missing_dataset(cfg: RunCfg) -> str | None:
    """The dataset folder an image task needs and the data root lacks (None: nothing missing or a download asked)."""
    folder = IMAGE_FOLDERS.get(cfg.task["name"])
    if folder is None or cfg.task.get("download"):
        return None
    root = Path(cfg.task.get("data_root") or cfg.paths.data_root)
    return None if (root / folder).exists() else folder
