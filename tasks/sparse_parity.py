"""Multitask sparse parity (docs/theory.md 4.1), with probe sets for skill strengths (docs/theory.md 4.8).

Michaud et al. 2023 (arXiv:2303.13506) introduced the task; this is the version of Nam et al. 2024
(arXiv:2404.17563).

Input x = [control bits, skill bits], floats in {0, 1}, shape (n_skills + n_bits,):
  - control bits: one-hot of the task k in 0..n_skills-1, k ~ p;
  - skill bits: uniform in {0, 1}^n_bits.
Skill k owns a subset M_k of ``bits_per_skill`` skill bits (disjoint subsets, drawn without replacement).
Target y = S g_k(x), g_k(x) = 2 ((sum_{j in M_k} x_j) mod 2) - 1 in {-1, +1}, shape (N, 1).
Frequencies p_k = k^-exponent / sum_j j^-exponent for k = 1..n_skills (exponent = alpha + 1; 1.6 in the
published runs, docs/theory.md 4.7).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.base import Task, TaskError, base_meta, check_bool, check_float, check_int, spawn
from tasks.registry import register_task


@register_task
def sparse_parity(
    *,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator,
    n_bits: int = 32,
    n_skills: int = 5,
    bits_per_skill: int = 3,
    exponent: float = 1.6,
    target_scale: float = 5.0,
    n_train: int | None = None,
    n_test: int = 10000,
    n_probe: int = 20000,
    shuffle_control: bool = False,
) -> Task:
    """Multitask sparse parity (docs/theory.md 4.1); defaults are the published setup (docs/theory.md 4.7).

    The generator is split into child streams: skill subsets, probes, test set, train set (or the online
    monitor sample), so e.g. the probes do not change with ``n_train``.

    Args:
        device: Where the tensors live.
        dtype: Float dtype of x and y.
        generator: The run's data stream.
        n_bits: n, number of skill bits (>= n_skills * bits_per_skill).
        n_skills: n_s, number of tasks/skills.
        bits_per_skill: m, size of each M_k.
        exponent: p_k proportional to k^-exponent (alpha + 1 in docs/theory.md 4.1), >= 0.
        target_scale: S > 0 ("y_scale" in the authors' code).
        n_train: None: online training, fresh samples from :meth:`Task.sample` (``x_train`` is then a fixed
            monitor sample of ``n_test`` points from the training distribution, for the train loss);
            an int D: a fixed training set of D samples (docs/theory.md 4.5, data variant).
        n_test: Size of the fixed held-out set.
        n_probe: M, probe samples per skill (docs/theory.md 4.8 uses 20000).
        shuffle_control: Negative control: the control one-hot is drawn from p independently of the skill k
            whose parity sets the target, so the control bits carry no information about which parity to compute.

    Returns:
        Task with x (N, n_skills + n_bits), y (N, 1), no labels. meta adds ``p`` (list of n_skills floats),
        ``skill_bits`` (list of n_skills sorted lists of bit indices into the skill bits, i.e. input column
        n_skills + j), ``n_skills``, ``n_bits``, ``S``, ``exponent``, ``shuffle_control``, ``skills_train`` /
        ``skills_test`` (long (N,), the k that sets each target), and ``probes``: a list over k of
        (x_k (n_probe, d), g_k (n_probe,) in {-1, +1}) with every sample's target set by skill k.

    Raises:
        TaskError: Bad sizes (e.g. not enough bits for disjoint subsets).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> t = sparse_parity(device=torch.device("cpu"), dtype=torch.float32, generator=g, n_test=8, n_probe=4)
        >>> x, y, _ = t.sample(16, g)
        >>> x.shape, y.shape, [round(v, 4) for v in t.meta["p"]]
        (torch.Size([16, 37]), torch.Size([16, 1]), [0.5927, 0.1955, 0.1022, 0.0645, 0.0451])
    """
    n_skills = check_int("n_skills", n_skills, low=1)
    bits_per_skill = check_int("bits_per_skill", bits_per_skill, low=1)
    need = n_skills * bits_per_skill
    n_bits = check_int("n_bits", n_bits, low=need, hint=f"disjoint subsets need n_skills * bits_per_skill = {need}")
    exponent = check_float("exponent", exponent, nonneg=True)
    target_scale = check_float("target_scale", target_scale, positive=True)
    n_test = check_int("n_test", n_test, low=1)
    n_probe = check_int("n_probe", n_probe, low=1)
    shuffle_control = check_bool("shuffle_control", shuffle_control)
    if n_train is not None:
        n_train = check_int("n_train", n_train, low=1, hint="or leave task.n_train unset for online training")

    g_bits, g_probe, g_test, g_train = spawn(generator, 4)
    p = skill_frequencies(n_skills, exponent)  # (n_s,), float64
    chosen = torch.randperm(n_bits, generator=g_bits, device=g_bits.device).cpu()[:need]
    subsets = chosen.reshape(n_skills, bits_per_skill).sort(dim=1).values  # (n_s, m)
    spec = _Spec(n_bits, p, subsets, target_scale, shuffle_control, device, dtype)

    x_te, y_te, k_te = spec.draw(n_test, g_test)
    x_tr, y_tr, k_tr = spec.draw(n_test if n_train is None else n_train, g_train)
    probes = [spec.draw(n_probe, g_probe, skill=k) for k in range(n_skills)]
    probes = [(x, y.squeeze(1) / target_scale) for x, y, _ in probes]

    meta = base_meta(
        input_shape=(n_skills + n_bits,),
        out_dim=1,
        num_classes=None,
        target_scale=target_scale,
        n_train=n_train,
        n_test=n_test,
        p=p.tolist(),
        skill_bits=subsets.tolist(),
        n_skills=n_skills,
        n_bits=n_bits,
        S=target_scale,
        exponent=exponent,
        shuffle_control=shuffle_control,
        skills_train=k_tr,
        skills_test=k_te,
        probes=probes,
    )

    def sample(batch_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor, None]:
        x, y, _ = spec.draw(batch_size, gen)
        return x, y, None

    return Task(
        name="sparse_parity",
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        meta=meta,
        online=n_train is None,
        sampler=sample if n_train is None else None,
    )


def skill_frequencies(n_skills: int, exponent: float) -> Tensor:
    """p_k = k^-exponent / sum_{j=1..n_s} j^-exponent, k = 1..n_s (docs/theory.md 4.1); float64 (n_s,)."""
    w = torch.arange(1, n_skills + 1, dtype=torch.float64) ** (-exponent)
    return w / w.sum()


def parity(x_bits: Tensor, subsets: Tensor, skills: Tensor) -> Tensor:
    """g_k(x) = 2 ((sum_{j in M_k} x_j) mod 2) - 1 for each sample's own skill k.

    Args:
        x_bits: Skill bits, (N, n) in {0, 1} (any dtype).
        subsets: M_k as bit indices, long (n_s, m).
        skills: k of each sample, long (N,).

    Returns:
        Long (N,) in {-1, +1}.
    """
    picked = torch.gather(x_bits.long(), 1, subsets[skills])  # (N, m)
    return 2 * (picked.sum(1) % 2) - 1


class _Spec:
    """The distribution of one task instance; ``draw`` samples from it on any generator."""

    def __init__(
        self, n_bits: int, p: Tensor, subsets: Tensor, s: float, shuffle: bool, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.n_bits, self.p, self.subsets, self.s, self.shuffle = n_bits, p, subsets, s, shuffle
        self.device, self.dtype = device, dtype

    def draw(self, n: int, g: torch.Generator, skill: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Draw n samples: x (n, n_s + n_bits), y = S g_k (n, 1) on the task's device/dtype, and k long (n,)."""
        if n < 1:
            raise TaskError(f"sparse_parity: cannot draw {n} samples; batch sizes must be >= 1")
        n_s = self.p.numel()
        p = self.p.to(g.device)
        if skill is None:
            k = torch.multinomial(p, n, replacement=True, generator=g)
        else:
            k = torch.full((n,), skill, dtype=torch.long, device=g.device)
        # the control index is k itself, or for the negative control an independent draw from the same p
        control = torch.multinomial(p, n, replacement=True, generator=g) if self.shuffle else k
        bits = torch.randint(0, 2, (n, self.n_bits), generator=g, device=g.device)
        g_k = parity(bits, self.subsets.to(g.device), k)
        ctrl = torch.nn.functional.one_hot(control, n_s)
        x = torch.cat([ctrl, bits], dim=1).to(device=self.device, dtype=self.dtype)
        y = (self.s * g_k.to(torch.float64)).unsqueeze(1).to(device=self.device, dtype=self.dtype)
        return x, y, k.to(self.device)
