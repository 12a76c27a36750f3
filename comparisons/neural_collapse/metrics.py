"""Neural-collapse metrics NC1-NC4 on penultimate features (docs/theory.md 7.1), with a streaming accumulator.

One pure function, :func:`nc_metrics`, computes every metric from features, labels and the last linear layer.
For sets too large to hold at once, :class:`NCAccumulator` gathers the class statistics chunk by chunk (pass 1) and
:func:`ncc_mismatch_count` counts the NC4 disagreements given the finished class means (pass 2);
:func:`nc_metrics_stream` runs both passes over a chunk iterator. All arithmetic is float64.

Notation (docs/theory.md 7.1): features h_{c,i} in R^p, N samples, C classes with n_c samples each; class means mu_c;
global mean mu_G = (1/N) sum_{c,i} h_{c,i} (the mean of the mu_c when classes are balanced);
M = [mu_1 - mu_G, ..., mu_C - mu_G] (p x C); classifier W (C x p) with rows w_c, bias b (C,).
Sigma_W = (1/N) sum_{c,i} (h_{c,i} - mu_c)(h_{c,i} - mu_c)^T and Sigma_B = M M^T / C.

References: Papyan, Han & Donoho 2020 (arXiv:2008.08186, NC1-NC4); Galanti et al. 2022 (arXiv:2112.15121, CDNV);
Kothapalli 2023 (arXiv:2206.04041, ETF error); the paper, Nam et al. 2025 (arXiv:2502.21009).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = ["NCAccumulator", "nc_metrics", "nc_metrics_stream", "ncc_mismatch_count"]

_F64 = torch.float64


class NCAccumulator:
    """Streaming per-class statistics of features, merged chunk by chunk in float64.

    Holds the class counts n_c, class means mu_c, the pooled within-class scatter
    S_W = sum_{c,i} (h_{c,i} - mu_c)(h_{c,i} - mu_c)^T (p x p) and the per-class sums of squared deviations
    ss_c = sum_i ||h_{c,i} - mu_c||^2. Chunks are merged with the pairwise (Chan, Golub & LeVeque 1979) update,
    which never forms raw second moments: at collapse ||h - mu_c|| << ||mu_c||, and raw moments would lose the
    within-class part to cancellation.

    Args:
        num_classes: C >= 2.
        num_features: p >= 1.
        device: Where the statistics live (the features' device is fine).
    """

    def __init__(self, num_classes: int, num_features: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 2:
            raise ValueError(f"neural-collapse metrics need C >= 2 classes, got {num_classes}")
        self.num_classes, self.num_features = int(num_classes), int(num_features)
        self.counts = torch.zeros(num_classes, dtype=_F64, device=device)  # (C,)
        self.means = torch.zeros(num_classes, num_features, dtype=_F64, device=device)  # (C, p)
        self.scatter = torch.zeros(num_features, num_features, dtype=_F64, device=device)  # (p, p)
        self.sq_dev = torch.zeros(num_classes, dtype=_F64, device=device)  # (C,)

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Merge one chunk.

        Args:
            features: (n, p), any float dtype.
            labels: (n,), integers in [0, C).
        """
        h, y = _check(features, labels, self.num_classes)
        if h.shape[1] != self.num_features:
            raise ValueError(f"features have {h.shape[1]} columns but p={self.num_features}; weight must be (C, p)")
        h = h.to(device=self.means.device)
        y = y.to(device=self.means.device)
        n_b = torch.bincount(y, minlength=self.num_classes).to(_F64)  # (C,)
        sums = torch.zeros_like(self.means).index_add_(0, y, h)
        mean_b = sums / n_b.clamp_min(1.0)[:, None]  # (C, p) chunk class means
        dev = h - mean_b[y]  # (n, p) deviations from the chunk's class means
        n_a = self.counts
        n = n_a + n_b
        delta = mean_b - self.means  # (C, p)
        w = torch.where(n > 0, n_a * n_b / n.clamp_min(1.0), torch.zeros_like(n))  # (C,) Chan's n_a n_b / n
        self.scatter += dev.T @ dev + (delta * w[:, None]).T @ delta
        self.sq_dev += torch.zeros_like(n).index_add_(0, y, dev.pow(2).sum(1)) + w * delta.pow(2).sum(1)
        self.means += delta * (n_b / n.clamp_min(1.0))[:, None]
        self.counts = n

    def centred_means(self) -> Tensor:
        """M = [mu_c - mu_G]_c, shape (p, C), float64 (mu_G weighted by the class counts)."""
        mu_g = (self.counts[:, None] * self.means).sum(0) / self.counts.sum()
        return (self.means - mu_g).T

    def mode_strengths(self, modes: Tensor) -> dict[str, float]:
        """``mode_a`` = ||M u_a||_2 for the columns u_a of ``modes`` (C, r): class-mean strength along each mode."""
        u = modes.detach().to(device=self.means.device, dtype=_F64)
        if u.ndim != 2 or u.shape[0] != self.num_classes:
            raise ValueError(f"modes must be (C, r) with C={self.num_classes}, got {tuple(u.shape)}")
        strength = (self.centred_means() @ u).norm(dim=0)  # (r,)
        return {f"mode_{a + 1}": float(v) for a, v in enumerate(strength)}

    def metrics(self, weight: Tensor, bias: Tensor | None = None) -> dict[str, float]:
        """All metrics of :func:`nc_metrics` except NC4 (which needs a second pass, :func:`ncc_mismatch_count`)."""
        if bool((self.counts == 0).any()):
            missing = torch.nonzero(self.counts == 0).flatten().tolist()
            raise ValueError(f"classes {missing} have no samples; every class in [0, C) needs at least one")
        c = self.num_classes
        w = weight.detach().to(device=self.means.device, dtype=_F64)  # (C, p)
        if w.shape != (c, self.num_features):
            raise ValueError(f"weight must be (C, p) = ({c}, {self.num_features}), got {tuple(w.shape)}")
        n_total = self.counts.sum()
        m = self.centred_means()  # (p, C)
        sigma_w = self.scatter / n_total  # (p, p)
        out: dict[str, float] = {}

        u, s, _ = torch.linalg.svd(m, full_matrices=False)  # u: (p, k), s: (k,), k = min(p, C)
        rank = min(_rank(s, max(m.shape)), c - 1)  # rank(M) <= C - 1: sum_c n_c (mu_c - mu_G) = 0
        ur, sr = u[:, :rank], s[:rank]
        # tr(Sigma_W Sigma_B^+)/C with Sigma_B^+ = C (M M^T)^+ = C U_r S_r^-2 U_r^T, so the C's cancel
        out["nc1"] = float(((ur * (sigma_w @ ur)).sum(0) / sr**2).sum()) if rank else float("inf")
        tr_b = (m**2).sum() / c
        out["nc1_tr"] = float(sigma_w.trace() / tr_b) if tr_b > 0 else float("inf")

        sigma2 = self.sq_dev / self.counts  # (C,) mean ||h - mu_c||^2
        dist2 = torch.cdist(self.means, self.means).pow(2)  # (C, C)
        off = ~torch.eye(c, dtype=torch.bool, device=dist2.device)
        cdnv = (sigma2[:, None] + sigma2[None, :])[off] / (2.0 * dist2[off])  # inf where two means coincide
        out["cdnv"] = float(cdnv.mean())

        for name, vecs in (("means", m.T), ("weights", w)):  # rows: (C, p)
            norms = vecs.norm(dim=1)
            out[f"nc2_equinorm_{name}"] = float(norms.std() / norms.mean()) if norms.mean() > 0 else float("inf")
            cos = (vecs @ vecs.T) / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(_F64).tiny)
            out[f"nc2_equiangular_{name}"] = float((cos[off] + 1.0 / (c - 1)).abs().mean())
            out[f"nc2_cos_std_{name}"] = float(cos[off].std())

        gram = m.T @ m  # (C, C)
        etf = (torch.eye(c, dtype=_F64, device=gram.device) - 1.0 / c) / np.sqrt(c - 1.0)  # (I - J)/||I - J||_F
        out["nc2_etf_error"] = _unit_dist(gram, etf)
        uncentred = self.means @ self.means.T  # (C, C): Mu^T Mu, Mu the uncentred means
        out["nc2_orthogonal_error"] = _unit_dist(uncentred, torch.eye(c, dtype=_F64, device=gram.device) / np.sqrt(c))
        wm = w @ m  # (C, C)
        out["nc2_wm_etf_error"] = _unit_dist(wm, etf)
        w_n, m_n = w.norm(), m.norm()
        out["nc3"] = float((w.T / w_n - m / m_n).pow(2).sum()) if w_n > 0 and m_n > 0 else float("inf")

        for k in range(c):  # singular values of M, descending; the C-th is 0 up to rounding
            out[f"sv_means_{k + 1}"] = float(s[k]) if k < len(s) else 0.0
        out["n_samples"] = float(n_total)
        return out


@torch.no_grad()
def ncc_mismatch_count(
    features: Tensor, means: Tensor, weight: Tensor, bias: Tensor | None = None, chunk_size: int = 8192
) -> int:
    """How many samples the classifier and the nearest class centre label differently (NC4's numerator).

    Counts n with argmax_c (w_c^T h_n + b_c) != argmin_c ||h_n - mu_c||_2 (Papyan et al. 2020, NC4).

    Args:
        features: (n, p).
        means: Class means mu_c, (C, p) (from the same set, e.g. ``NCAccumulator.means``).
        weight: W, (C, p).
        bias: b, (C,), or None.
        chunk_size: Rows per block (bounds the (n, C) distance matrix).

    Returns:
        The count, an int in [0, n].
    """
    mu = means.to(_F64)
    w = weight.detach().to(device=mu.device, dtype=_F64)
    b = None if bias is None else bias.detach().to(device=mu.device, dtype=_F64)
    wrong = 0
    for i in range(0, len(features), chunk_size):
        h = features[i : i + chunk_size].detach().to(device=mu.device, dtype=_F64)
        logits = h @ w.T + (0.0 if b is None else b)
        ncc = torch.cdist(h, mu).argmin(dim=1)
        wrong += int((logits.argmax(dim=1) != ncc).sum())
    return wrong


def nc_metrics(
    features: Tensor,
    labels: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    num_classes: int | None = None,
    chunk_size: int = 8192,
    modes: Tensor | None = None,
) -> dict[str, float]:
    """Every neural-collapse metric of one feature set (docs/theory.md 7.1), in float64.

    Each metric is 0 at exact collapse onto a simplex ETF with a self-dual classifier, and it is unchanged by a
    relabelling of the classes (rows of ``weight`` permuted with them) and by an orthogonal rotation Q of the
    feature space (h -> Q h, W -> W Q^T).

    - ``nc1``: tr(Sigma_W Sigma_B^+) / C (Papyan NC1). Sigma_B^+ keeps the singular directions of M above
      max(p, C) * eps * s_max, at most C - 1 of them (rank(M) <= C - 1). The /C makes it the average over the
      C - 1 between-class directions of (within-class variance / between-class variance), weighted C - 1 / C.
      ``inf`` when all class means coincide.
    - ``nc1_tr``: tr(Sigma_W) / tr(Sigma_B) (Tirer et al. 2023 quotient form).
    - ``cdnv``: mean over ordered pairs c != c' of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^2), with
      sigma_c^2 = mean_i ||h_{c,i} - mu_c||^2 (Galanti et al.).
    - ``nc2_equinorm_means`` / ``nc2_equinorm_weights``: std_c / mean_c of ||mu_c - mu_G|| and of ||w_c||; the
      std is the unbiased one (torch.std), as in Papyan et al.'s code.
    - ``nc2_equiangular_means`` / ``nc2_equiangular_weights``: mean over c != c' of |cos(c, c') + 1/(C - 1)|
      (the max-angle form); ``nc2_cos_std_means`` / ``nc2_cos_std_weights``: the std over c != c' of the cosines.
    - ``nc2_etf_error``: || M^T M / ||M^T M||_F - (I_C - J) / sqrt(C - 1) ||_F (Kothapalli 2023);
      ``nc2_wm_etf_error``: the same with W M in place of M^T M;
      ``nc2_orthogonal_error``: || Mu^T Mu / ||Mu^T Mu||_F - I / sqrt(C) ||_F on the uncentred means, the
      expected geometry for MSE without bias (docs/theory.md 7.2).
    - ``nc3``: || W^T / ||W||_F - M / ||M||_F ||_F^2 (self-duality).
    - ``nc4``: the fraction of samples where argmax_c (w_c^T h + b_c) != argmin_c ||h - mu_c|| (NCC mismatch).
    - ``sv_means_1`` .. ``sv_means_C``: singular values of M, descending (the C-th is ~0).
    - ``n_samples``: N.
    - ``mode_1`` .. ``mode_r`` (only when ``modes`` is given): ||M u_a||_2 for unit class-space directions u_a,
      the strength of the class-mean matrix along the predicted modes (docs/theory.md 7.3).

    Args:
        features: h, (N, p), any float dtype, any device.
        labels: (N,), integers in [0, C); every class must occur.
        weight: W, (C, p) (``model.get_classifier().weight``).
        bias: b, (C,), or None; only NC4 uses it.
        num_classes: C; default ``weight.shape[0]``.
        chunk_size: Rows per streaming chunk.
        modes: Optional (C, r) class-space directions u_a (columns), e.g. the left singular vectors of Sigma_yx.

    Returns:
        Metric name -> float.

    Raises:
        ValueError: Shapes disagree, a label is out of range, or a class has no samples.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> etf = torch.eye(3) - 1 / 3  # a simplex ETF in R^3
        >>> labels = torch.arange(3).repeat(4)
        >>> round(nc_metrics(etf[labels], labels, etf)["nc1"], 12), nc_metrics(etf[labels], labels, etf)["nc4"]
        (0.0, 0.0)
    """
    c = int(weight.shape[0] if num_classes is None else num_classes)

    def chunks() -> Iterable[tuple[Tensor, Tensor]]:
        for i in range(0, len(features), chunk_size):
            yield features[i : i + chunk_size], labels[i : i + chunk_size]

    if len(features) != len(labels):
        raise ValueError(f"features have {len(features)} rows but labels {len(labels)}")
    return nc_metrics_stream(chunks, weight, bias, num_classes=c, modes=modes)


def nc_metrics_stream(
    chunks: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    num_classes: int | None = None,
    modes: Tensor | None = None,
) -> dict[str, float]:
    """:func:`nc_metrics` over a set given as chunks (two passes: statistics, then NC4).

    Args:
        chunks: Called twice; each call yields the same (features (n_i, p), labels (n_i,)) chunks in order.
        weight: W, (C, p).
        bias: b, (C,), or None.
        num_classes: C; default ``weight.shape[0]``.
        modes: Optional (C, r) class-space directions, as in :func:`nc_metrics`.

    Returns:
        The dict of :func:`nc_metrics`.
    """
    c = int(weight.shape[0] if num_classes is None else num_classes)
    acc = NCAccumulator(c, int(weight.shape[1]), device=weight.device)
    for h, y in chunks():
        acc.update(h, y)
    out = acc.metrics(weight, bias)
    wrong = sum(ncc_mismatch_count(h, acc.means, weight, bias) for h, _ in chunks())
    out["nc4"] = wrong / out["n_samples"]
    if modes is not None:
        out.update(acc.mode_strengths(modes))
    return out


def _check(features: Tensor, labels: Tensor, c: int) -> tuple[Tensor, Tensor]:
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"need features (N, p) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    y = labels.detach().long()
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
        raise ValueError(f"labels must lie in [0, {c}), got range [{int(y.min())}, {int(y.max())}]")
    return features.detach().to(_F64), y


def _rank(s: Tensor, size: int) -> int:
    """Numerical rank: singular values above max(p, C) * eps * s_max (numpy.linalg.matrix_rank's default)."""
    if len(s) == 0 or float(s[0]) == 0.0:
        return 0
    return int((s > float(s[0]) * size * torch.finfo(_F64).eps).sum())


def _unit_dist(a: Tensor, b_unit: Tensor) -> float:
    norm = a.norm()
    return float((a / norm - b_unit).norm()) if norm > 0 else float("inf")
