"""Face decision calibration: genuine and impostor scores → false-accept / false-reject rates.

Pure numpy and the standard library, no IO: the data set is loaded by ``bench/face_calibration.py``
(and the calibration test); this module turns labelled templates into score sets, rates with honest
confidence bounds, and the threshold a target false-accept rate needs.

Two ways to reach a rate as small as 1 in 10,000 pairs, because a public set of a few dozen people
cannot *show* it directly:

* **Observed**: false accepts counted over the impostor pairs, with the exact (Clopper-Pearson) upper
  confidence bound. With zero false accepts in ``n`` pairs the 95 % bound is ``1 - 0.05 ** (1/n)``
  (about ``3/n``), so ~30,000 independent pairs are needed before 1e-4 can be claimed this way.
* **Extrapolated**: a normal fitted to the impostor scores and its ``1 - target`` quantile; the
  identities are resampled (bootstrap) to see how far that quantile moves with the people in the set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "Rates",
    "ScoreSets",
    "bootstrap_tail_threshold",
    "clopper_pearson_upper",
    "pair_scores",
    "rates_at",
    "tail_threshold",
]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ScoreSets:
    """Cosine scores of every pair in a labelled set.

    Attributes:
        genuine: scores of pairs of the same identity.
        impostor: scores of pairs of different identities.
        identities: how many distinct identities the set has.
    """

    genuine: npt.NDArray[np.float64]
    impostor: npt.NDArray[np.float64]
    identities: int


@dataclass(frozen=True, slots=True)
class Rates:
    """False-accept and false-reject rates at one threshold (a score ``>= threshold`` accepts).

    Attributes:
        threshold: the cosine threshold.
        false_accepts, impostor_pairs: impostor pairs accepted, of how many.
        far: observed false-accept rate.
        far_upper95: exact 95 % upper confidence bound of the false-accept rate.
        false_rejects, genuine_pairs: genuine pairs rejected, of how many.
        frr: observed false-reject rate.
    """

    threshold: float
    false_accepts: int
    impostor_pairs: int
    far: float
    far_upper95: float
    false_rejects: int
    genuine_pairs: int
    frr: float


def pair_scores(templates: npt.ArrayLike, labels: Sequence[str]) -> ScoreSets:
    """All-pairs cosine scores of L2-normalised ``templates`` (n x d) labelled by identity."""
    mat = np.asarray(templates, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != len(labels):
        raise ValueError(f"expected {len(labels)} templates, got shape {mat.shape}")
    sims = mat @ mat.T
    ids = np.asarray(labels)
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    same = ids[:, None] == ids[None, :]
    return ScoreSets(genuine=sims[upper & same], impostor=sims[upper & ~same], identities=len(set(labels)))


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper confidence bound of a binomial rate with ``k`` events in ``n`` trials."""
    if n <= 0:
        return 1.0
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    if k == 0:
        return 1.0 - math.pow(alpha, 1.0 / n)

    def cdf(p: float) -> float:  # P[X <= k] for X ~ Binomial(n, p)
        logs = [
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * math.log(p)
            + (n - i) * math.log1p(-p)
            for i in range(k + 1)
        ]
        top = max(logs)
        return math.exp(top) * sum(math.exp(v - top) for v in logs)

    lo, hi = k / n, 1.0
    for _ in range(100):  # bisection: cdf falls as p grows
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def rates_at(scores: ScoreSets, threshold: float) -> Rates:
    """FAR and FRR of ``scores`` at ``threshold``."""
    fa = int(np.count_nonzero(scores.impostor >= threshold))
    fr = int(np.count_nonzero(scores.genuine < threshold))
    n_imp, n_gen = int(scores.impostor.size), int(scores.genuine.size)
    return Rates(
        threshold=threshold,
        false_accepts=fa,
        impostor_pairs=n_imp,
        far=fa / n_imp if n_imp else 0.0,
        far_upper95=clopper_pearson_upper(fa, n_imp),
        false_rejects=fr,
        genuine_pairs=n_gen,
        frr=fr / n_gen if n_gen else 0.0,
    )


def tail_threshold(impostor: npt.ArrayLike, target_far: float) -> float:
    """Score above which a normal fitted to ``impostor`` puts a ``target_far`` share of pairs."""
    values = np.asarray(impostor, dtype=np.float64)
    if values.size < 2:
        raise ValueError("need at least two impostor scores")
    z = NormalDist().inv_cdf(1.0 - target_far)
    return float(values.mean() + z * values.std(ddof=1))


def bootstrap_tail_threshold(
    templates: npt.ArrayLike,
    labels: Sequence[str],
    target_far: float,
    rounds: int = 500,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """:func:`tail_threshold` over ``rounds`` resamples of the *identities* (with replacement).

    Resampling people rather than pairs keeps the pairs of one person together, so the spread says how
    much the answer depends on who happens to be in the set. A person drawn twice is not paired with
    their own copy.
    """
    mat = np.asarray(templates, dtype=np.float64)
    ids = np.asarray(labels)
    people = sorted(set(labels))
    rows_of = {p: np.flatnonzero(ids == p) for p in people}
    sims = mat @ mat.T
    rng = np.random.default_rng(seed)
    out = np.empty(rounds, dtype=np.float64)
    for r in range(rounds):
        drawn = rng.choice(len(people), size=len(people), replace=True)
        rows = np.concatenate([rows_of[people[d]] for d in drawn])
        who = np.concatenate([np.full(rows_of[people[d]].size, d) for d in drawn])
        sub = sims[np.ix_(rows, rows)]
        upper = np.triu(np.ones(sub.shape, dtype=bool), k=1)
        different = who[:, None] != who[None, :]
        out[r] = tail_threshold(sub[upper & different], target_far)
    return out
