"""lintwin tasks: datasets as tensors plus metadata (docs/design.md "Data").

    from tasks import Task, build, list_tasks, whiten, TaskError
    task = build(cfg_task, device=device, dtype=dtype, generator=g)   # cfg_task = {"name": ..., **keys}
    twin_task = whiten(task, "pca")                                    # docs/theory.md 2.5

Registered names: mnist, fashion_mnist, cifar10 (tasks/images.py), modular (docs/theory.md 6.5), sparse_parity
(docs/theory.md 4.1), teacher_student. This package imports nothing from the rest of lintwin.
"""

from tasks import images, modular, sparse_parity, teacher_student  # noqa: F401  (fills the registry)
from tasks.base import Task, TaskError
from tasks.registry import build, list_tasks, register_task, task_keys
from tasks.whitening import whiten

__all__ = ["Task", "TaskError", "build", "list_tasks", "register_task", "task_keys", "whiten"]
