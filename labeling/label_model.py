"""The label model: a Dawid-Skene style EM that turns a label matrix into probabilistic labels.

L has one row per item and one column per labeling function; L[i, j] is a class in 0..k-1 or ABSTAIN.
Each function j has, for each true class y, a distribution over its outcomes {abstain, 0, ..., k-1}:
outcome_probs_[j, y, o], with o = 0 for abstain and o = 1 + c for a vote for class c. A vote is modelled
together with the decision to vote, so a function that only ever votes one class still carries evidence (it
fires more often on that class). EM runs over the distinct vote patterns (a million rows of 8 functions have a
few thousand), so after one grouping pass its cost does not grow with the rows.

Real labeling functions err and abstain together, which a plain Dawid-Skene reads as structure, and on sets
with many sparse one-sided functions or many classes EM ran the class balance to ~1.0 for one class (issue 11).
The choices that hold it; defaults chosen on the valid splits of bench/data/wrench (bench/labelmodel.py
--sweep), never on test:
- min_lift: a vote for class c must be at least `min_lift` times likelier when the truth is c than when it is
  any other class ("better than random when it votes"). Without it EM explained two correlated functions by
  turning one against its own class (WRENCH's keyword_link became a vote for ham).
- abstain_weight, abstain_reference: how much an abstention counts as evidence (1 is classic Dawid-Skene),
  and the total held to what `abstain_reference` functions would carry: a spam message trips one keyword,
  not all 70, so counting every abstention as independent evidence drowns the votes.
- balance_strength: the class balance has a Dirichlet prior centred on the shares the votes support
  (`vote_shares_`: each row with a vote spreads one unit over the classes it was voted; gold rows count their
  gold class), worth `balance_strength` x n rows. EM moves the balance, but cannot run it away from the votes.
- shrinkage (default off): pulls each class's outcome rates toward the function's overall rates.
- rows where every function abstains get the class balance from predict_proba; predict draws their class
  uniformly (as majority vote does) unless no_vote="prior", and keeps the class of a row on which every
  voting function agrees unless agreed="model" (the model arbitrates conflicts and ties).
- gold (fit(L, gold=...), -1 = unknown): gold rows are clamped to their class in every E-step, which teaches
  the accuracies, and their class shares anchor the balance. That fit is kept only when half the gold, held out
  in turn, is labeled clearly better by it than by the fit without gold (`_keep_if_gold_agrees`), so gold
  never makes the labels worse.

Dominant functions (label_model_guard.dominant_function, with the guard): a broad function that the fit trusts
far beyond what the other functions (or gold, where it has enough) corroborate is demoted and EM run again
without it; a demoted function (`demoted_`) then labels only the rows on which no other function votes.

Degeneracy guard (labeling/label_model_guard.py, on by default, guard=False to switch off): after fit,
`model.fallback_` is None, or the reasons ("class share: ...", "accuracies at the bounds: ...", "no
convergence: ...") for which the fit was judged degenerate and its parameters replaced by a weighted majority
vote; `label_model_guard.fit_report(model)` gives converged, n_iter, class_balance, vote_shares, accuracies
and fallback for a report or /metrics.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray

from flywheel_feedback.labeling.lf import ABSTAIN

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

# How many standard deviations a fit with gold must win by on held-out gold rows (_keep_if_gold_agrees).
GOLD_MARGIN = 1.0


def majority_vote(
    L: NDArray[np.integer[Any]],
    cardinality: int,
    *,
    tie_break: Literal["random", "abstain"] = "random",
    seed: int = 0,
) -> IntArray:
    """The class with the most votes per row.

    Ties, including rows where every function abstains (all k classes tie at zero), go to a class drawn
    uniformly among the tied ones with `seed` ("random"), or to ABSTAIN ("abstain").
    """
    _check_cardinality(cardinality)
    matrix = _check_label_matrix(L, cardinality)
    if tie_break not in ("random", "abstain"):
        raise ValueError(f"expected tie_break to be 'random' or 'abstain', got {tie_break!r}")
    counts = np.stack([(matrix == c).sum(axis=1) for c in range(cardinality)], axis=1)
    if tie_break == "random":
        return _argmax_random_ties(counts.astype(np.float64), np.random.default_rng(seed))
    tied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return np.where(tied, ABSTAIN, counts.argmax(axis=1)).astype(np.int64)


class LabelModel:
    """Dawid-Skene EM over {abstain, 0..k-1} outcomes with a scikit-learn-like API.

    Fitted attributes: `class_balance_` (k,), `outcome_probs_` (functions, k, k+1), `accuracies_` (the
    probability that a function's vote is right, per function), `n_iter_`, `converged_`, `vote_shares_` (the
    class shares majority vote supports, which anchor the balance) and `fallback_` (None, or why the fit was
    judged degenerate and replaced by weighted majority vote; see label_model_guard).
    """

    def __init__(
        self,
        cardinality: int = 2,
        *,
        max_iter: int = 500,
        tol: float = 1e-6,
        seed: int = 0,
        min_lift: float = 2.5,
        abstain_weight: float = 0.3,
        abstain_reference: int = 10,
        smoothing: float = 0.5,
        shrinkage: float = 0.0,
        balance_strength: float = 0.25,
        class_balance: Sequence[float] | None = None,
        guard: bool = True,
    ) -> None:
        _check_cardinality(cardinality)
        if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
            raise ValueError(f"expected max_iter to be an integer >= 1, got {max_iter!r}")
        if not isinstance(abstain_reference, int) or isinstance(abstain_reference, bool) or abstain_reference < 1:
            raise ValueError(f"expected abstain_reference to be an integer >= 1, got {abstain_reference!r}")
        _check_number("tol", tol, lambda x: x > 0, "> 0")
        _check_number("min_lift", min_lift, lambda x: x >= 1, ">= 1")
        _check_number("abstain_weight", abstain_weight, lambda x: 0 <= x <= 1, "in [0, 1]")
        _check_number("smoothing", smoothing, lambda x: x > 0, "> 0")
        _check_number("shrinkage", shrinkage, lambda x: x >= 0, ">= 0")
        _check_number("balance_strength", balance_strength, lambda x: x >= 0, ">= 0")
        if not isinstance(guard, bool):
            raise ValueError(f"expected guard to be True or False, got {guard!r}")
        if class_balance is not None:
            balance = np.asarray(class_balance, dtype=np.float64)
            if balance.shape != (cardinality,) or (balance <= 0).any() or abs(balance.sum() - 1) > 1e-6:
                raise ValueError(
                    f"expected class_balance to be {cardinality} positive numbers summing to 1, got {class_balance!r}"
                )
        self.cardinality = cardinality
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.min_lift = min_lift
        self.abstain_weight = abstain_weight
        self.abstain_reference = abstain_reference
        self.smoothing = smoothing
        self.shrinkage = shrinkage
        self.balance_strength = balance_strength
        self.class_balance = None if class_balance is None else tuple(float(x) for x in class_balance)
        self.guard = guard

    def fit(
        self,
        L: NDArray[np.integer[Any]],
        *,
        gold: NDArray[np.integer[Any]] | None = None,
    ) -> Self:
        """Learn the parameters from L; rows whose `gold` label is known (not -1) are clamped to it and their
        class shares join the anchor of the class balance. With `guard`, a degenerate fit is replaced by
        weighted majority vote and `fallback_` says why."""
        k = self.cardinality
        matrix = _check_label_matrix(L, k)
        n, n_lfs = matrix.shape
        if n == 0 or n_lfs == 0:
            raise ValueError(f"expected at least one row and one labeling function, got shape {matrix.shape}")
        codes = matrix + 1
        if gold is not None:
            gold = _check_gold(gold, n, k)
            codes = np.column_stack([codes, gold + 1])  # rows with different gold must not be grouped
        patterns, _, counts = _group_rows(codes, k + 1)
        votes = patterns[:, :n_lfs]
        clamp = patterns[:, -1] - 1 if gold is not None else np.full(len(patterns), ABSTAIN)
        return self._fit_grouped(votes, counts, clamp)

    def fit_counts(
        self,
        patterns: NDArray[np.integer[Any]],
        counts: NDArray[np.integer[Any]],
        *,
        gold: NDArray[np.integer[Any]] | None = None,
    ) -> Self:
        """Learn the parameters from distinct vote patterns (rows of a label matrix) and how many items had each,
        e.g. counts kept up to date by an incremental labeler; `gold` (-1 = unknown) per pattern row. Rows that
        repeat a (pattern, gold) pair are added together. Equal to `fit` on the expanded matrix, up to the order
        of floating-point sums."""
        k = self.cardinality
        matrix = _check_label_matrix(patterns, k)
        weights = np.asarray(counts)
        if weights.shape != (matrix.shape[0],) or not np.issubdtype(weights.dtype, np.integer) or (weights < 0).any():
            raise ValueError(f"expected one non-negative integer count per pattern row ({matrix.shape[0]}), "
                             f"got shape {weights.shape} dtype {weights.dtype}")
        n_lfs = matrix.shape[1]
        codes = matrix + 1
        gold_codes = np.zeros(len(codes), dtype=np.int64) if gold is None else _check_gold(gold, len(codes), k) + 1
        keep = weights > 0
        if not keep.any() or n_lfs == 0:
            raise ValueError(f"expected at least one counted pattern and one labeling function, got {matrix.shape}")
        grouped, inverse, _ = _group_rows(np.column_stack([codes, gold_codes])[keep], k + 1)
        summed = np.bincount(inverse, weights=weights[keep], minlength=len(grouped)).astype(np.int64)
        clamp = grouped[:, -1] - 1 if gold is not None else np.full(len(grouped), ABSTAIN)
        return self._fit_grouped(grouped[:, :n_lfs], summed, clamp)

    def _fit_grouped(self, votes: IntArray, counts: IntArray, clamp: IntArray, *, gold_check: bool = True) -> Self:
        """EM over distinct patterns (outcome codes, 0 = abstain) with their counts and clamped gold classes; a
        dominant function (see label_model_guard.dominant_function) is demoted and EM run again without it."""
        from flywheel_feedback.labeling.label_model_guard import apply_guard, dominant_function

        self.demoted_: list[int] = []
        self.vote_shares_: FloatArray = _vote_shares(votes, counts, clamp, self.cardinality)
        kept = votes
        prior, theta = self._em(kept, counts, clamp)
        while self.guard and len(self.demoted_) < votes.shape[1] - 1:
            self._set_parameters(prior, theta)
            found = dominant_function(kept, counts, self.accuracies_, self.cardinality, gold=clamp)
            if found is None:
                break
            self.demoted_.append(found[0])
            kept, _ = silenced(votes, self.demoted_)
            prior, theta = self._em(kept, counts, clamp)
        self._set_parameters(prior, theta)
        self.fallback_: str | None = None
        if self.guard:
            apply_guard(self, votes, counts, gold=clamp)
            if gold_check and (clamp != ABSTAIN).any():
                self._keep_if_gold_agrees(votes, counts, clamp)
        return self

    def _keep_if_gold_agrees(self, votes: IntArray, counts: IntArray, clamp: IntArray) -> None:
        """Gold must never make the model worse. The gold rows judge, predicted from their votes alone: the fit
        without gold on all of them, against fits given half the gold on the other half (two folds, so that no
        fit is judged on the rows it was clamped to). A few percent of gold is a small sample, so the fit with gold
        is kept only when it gets clearly more right (a sign test: GOLD_MARGIN standard deviations more rows won
        than lost); otherwise the fit without gold is, even where they tie (on WRENCH yoruba a tie on the gold
        rows once hid 17 test items lost)."""
        from flywheel_feedback.labeling.label_model_guard import row_hits

        judged = np.flatnonzero(clamp != ABSTAIN)
        if counts[judged].sum() < 2:
            return
        plain = copy.copy(self)._fit_grouped(votes, counts, np.full(len(votes), ABSTAIN), gold_check=False)
        # Each gold pattern's rows are halved between the folds (odd ones alternately), so both folds hold gold
        # of every class; a fold's held-out rows stay in its fit, without their gold.
        first = counts[judged] // 2 + (counts[judged] % 2) * (np.arange(len(judged)) % 2)
        won = lost = 0.0
        for held in (first, counts[judged] - first):
            given = counts.copy()
            given[judged] -= held
            fold = copy.copy(self)._fit_grouped(
                np.concatenate([votes, votes[judged]]), np.concatenate([given, held]),
                np.concatenate([clamp, np.full(len(judged), ABSTAIN)]), gold_check=False,
            )
            diff = row_hits(fold._pattern_proba(votes[judged]), clamp[judged]) - row_hits(
                plain._pattern_proba(votes[judged]), clamp[judged])
            won += float((np.clip(diff, 0, None) * held).sum())
            lost += float((np.clip(-diff, 0, None) * held).sum())
        if won - lost <= GOLD_MARGIN * math.sqrt(won + lost):
            self.__dict__.update(plain.__dict__)

    def _em(self, votes: IntArray, counts: IntArray, clamp: IntArray) -> tuple[FloatArray, FloatArray]:
        """(class balance, outcome probabilities) by EM; sets n_iter_ and converged_."""
        k = self.cardinality
        n_lfs = votes.shape[1]
        # Which classes each function ever votes: the lift constraint only concerns those outcomes.
        polarity = np.stack([(votes == c + 1).any(axis=0) for c in range(k)], axis=1)
        # Many functions abstain together (a message trips one keyword, not all 70), so the total weight of
        # abstentions is held to what `abstain_reference` independent functions would carry.
        self._abstain_scale = self.abstain_weight * min(1.0, self.abstain_reference / n_lfs)
        anchor = self.vote_shares_
        # Outcome frequencies of each function over all rows: the shrinkage target of its per-class rows.
        marginal = np.stack([np.bincount(votes[:, j], weights=counts, minlength=k + 1) for j in range(n_lfs)])
        marginal = marginal / marginal.sum(axis=1, keepdims=True)

        q = _clamp(_soft_majority_vote(votes, k), clamp)
        self.n_iter_ = 0
        self.converged_ = False
        while self.n_iter_ < self.max_iter:
            self.n_iter_ += 1
            weights = q * counts[:, None]
            if self.class_balance is None:
                # Dirichlet prior centred on the shares the votes support: the balance cannot run away.
                alpha = self.balance_strength * counts.sum()
                prior = (weights.sum(axis=0) + alpha * anchor + 1.0) / (counts.sum() + alpha + k)
            else:
                prior = np.asarray(self.class_balance, dtype=np.float64)
            theta = self._m_step(votes, weights, polarity, marginal)
            q_next = _clamp(self._posteriors(votes, prior, theta), clamp)
            change = float(np.abs(q_next - q).max())
            q = q_next
            if change < self.tol:
                self.converged_ = True
                break
        return prior, theta

    def _set_parameters(self, prior: FloatArray, theta: FloatArray) -> None:
        self.class_balance_: FloatArray = prior
        self.outcome_probs_: FloatArray = theta
        voted = np.einsum("y,jyo->j", prior, theta[:, :, 1:])
        right = np.einsum("y,jyy->j", prior, theta[:, :, 1:])
        self.accuracies_: FloatArray = right / voted

    def predict_proba(self, L: NDArray[np.integer[Any]]) -> FloatArray:
        """P(class | votes) per row, shape (n, k); a row where every function abstains gets the class prior."""
        if not hasattr(self, "outcome_probs_"):
            raise RuntimeError("this LabelModel is not fitted yet: call fit(L) first")
        matrix = _check_label_matrix(L, self.cardinality)
        n_lfs = self.outcome_probs_.shape[0]
        if matrix.shape[1] != n_lfs:
            raise ValueError(f"expected {n_lfs} labeling function columns as in fit, got {matrix.shape[1]}")
        if matrix.shape[0] == 0:
            return np.zeros((0, self.cardinality))
        patterns, inverse, _ = _group_rows(matrix + 1, self.cardinality + 1)
        return self._pattern_proba(patterns)[inverse]

    def _pattern_proba(self, patterns: IntArray) -> FloatArray:
        """P(class | outcome pattern) (codes: 0 = abstain, 1 + c = class c), with demoted functions heard only
        on the rows where no other function votes."""
        kept, only_demoted = silenced(patterns, self.demoted_)
        proba = self._posteriors(kept, self.class_balance_, self.outcome_probs_)
        # A demoted function labels only the rows on which no other function votes: there its votes count.
        if only_demoted.any():
            tallies = np.stack([(patterns[only_demoted] == c + 1).sum(axis=1) for c in range(self.cardinality)], 1)
            top = (tallies == tallies.max(axis=1, keepdims=True)).astype(np.float64)
            proba[only_demoted] = top / top.sum(axis=1, keepdims=True)
        return proba

    def predict(
        self,
        L: NDArray[np.integer[Any]],
        *,
        no_vote: Literal["random", "prior"] = "random",
        agreed: Literal["keep", "model"] = "keep",
    ) -> IntArray:
        """The most probable class per row; exact ties go to a tied class drawn with `seed`.

        A row on which every function abstains has no evidence: predict_proba gives it the class prior, and
        predict draws its class uniformly with `seed` ("random", as majority vote does, so that a rare class
        is not erased from the unlabelled rows) or gives it the prior's most probable class ("prior", the better
        choice for accuracy when the balance is trusted). A row on which every voting function names the same
        class gets that class ("keep": the model arbitrates conflicts and never overturns agreement, which keeps
        a rare class's recall) or the model's most probable class ("model").
        """
        if no_vote not in ("random", "prior"):
            raise ValueError(f"expected no_vote to be 'random' or 'prior', got {no_vote!r}")
        if agreed not in ("keep", "model"):
            raise ValueError(f"expected agreed to be 'keep' or 'model', got {agreed!r}")
        proba = self.predict_proba(L)
        matrix = np.asarray(L)
        if no_vote == "random":
            silent = (matrix == ABSTAIN).all(axis=1)
            proba[silent] = 1.0 / self.cardinality
        if agreed == "keep":
            # Every function that voted on the row named the same class: the prior alone may not overturn it.
            tallies = np.stack([(matrix == c).sum(axis=1) for c in range(self.cardinality)], axis=1)
            unanimous = (tallies > 0).sum(axis=1) == 1
            proba[unanimous] = tallies[unanimous] > 0
        return _argmax_random_ties(proba, np.random.default_rng(self.seed))

    @property
    def version(self) -> str:
        """Names this fitted model in lineage: the class name and a hash of its options and parameters."""
        if not hasattr(self, "outcome_probs_"):
            raise RuntimeError("this LabelModel is not fitted yet: call fit(L) first")
        options = (
            self.cardinality,
            self.min_lift,
            self.abstain_weight,
            self.abstain_reference,
            self.smoothing,
            self.shrinkage,
            self.balance_strength,
            self.class_balance,
            self.fallback_,
            tuple(self.demoted_),
        )
        digest = hashlib.sha256(repr(options).encode())
        # Rounded so that last-bit differences between BLAS builds do not change the name.
        for array in (self.class_balance_, self.outcome_probs_):
            digest.update(np.round(array, 10).tobytes())
        return f"{type(self).__name__}-{digest.hexdigest()[:12]}"

    def _m_step(
        self, votes: IntArray, weights: FloatArray, polarity: NDArray[np.bool_], marginal: FloatArray
    ) -> FloatArray:
        """Expected outcome counts per (function, class), shrunk toward the function's overall outcome
        frequencies (so that a class seen on few rows cannot get extreme rates), normalised, held to min_lift."""
        k = self.cardinality
        counts = np.empty((votes.shape[1], k, k + 1))
        for j in range(votes.shape[1]):
            for y in range(k):
                counts[j, y] = np.bincount(votes[:, j], weights=weights[:, y], minlength=k + 1)
        mass = counts.sum(axis=2, keepdims=True)
        counts += self.shrinkage * mass * marginal[:, None, :] + self.smoothing
        theta = counts / counts.sum(axis=2, keepdims=True)
        return _enforce_min_lift(theta, counts, polarity, self.min_lift)

    def _posteriors(self, votes: IntArray, prior: FloatArray, theta: FloatArray) -> FloatArray:
        """E-step: P(class | outcome pattern), computed in log space; abstentions discounted (see fit).

        A pattern without a single vote gets the class prior: discounted abstentions would be all its evidence.
        """
        log_theta = np.log(theta)
        log_theta[:, :, 0] *= self._abstain_scale
        scores = np.tile(np.log(prior), (len(votes), 1))
        for j in range(votes.shape[1]):
            scores += log_theta[j][:, votes[:, j]].T
        no_vote = (votes == 0).all(axis=1)
        scores[no_vote] = np.log(prior)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return np.asarray(probs / probs.sum(axis=1, keepdims=True), dtype=np.float64)


def silenced(patterns: IntArray, demoted: Sequence[int]) -> tuple[IntArray, NDArray[np.bool_]]:
    """The outcome patterns without the demoted functions' votes, and the rows on which only those voted."""
    kept = patterns.copy()
    kept[:, list(demoted)] = 0
    return kept, (kept == 0).all(axis=1) & (patterns != 0).any(axis=1)


def _vote_shares(votes: IntArray, counts: IntArray, gold: IntArray, k: int) -> FloatArray:
    """The class shares the votes support: each row with a vote spreads one unit over the classes in
    proportion to its votes; rows with gold count their gold class instead (the better evidence)."""
    tallies = np.stack([(votes == c + 1).sum(axis=1) for c in range(k)], axis=1).astype(np.float64)
    voted = tallies.sum(axis=1)
    shares = np.divide(tallies, voted[:, None], out=np.zeros_like(tallies), where=voted[:, None] > 0)
    known = gold != ABSTAIN
    shares[known] = np.eye(k)[gold[known]]
    total = (shares * counts[:, None]).sum(axis=0) + 1.0  # +1: no class is ever impossible
    return np.asarray(total / total.sum(), dtype=np.float64)


def _enforce_min_lift(theta: FloatArray, counts: FloatArray, polarity: NDArray[np.bool_], lift: float) -> FloatArray:
    """Hold P(vote c | c) >= lift * P(vote c | y) for every function that votes c and every class y != c.

    Where the free estimate breaks it, the violating rates are pooled: the maximum-likelihood rate r (with
    lift * r for class c) under the constraint. Exact for k = 2; for k > 2 classes whose
    own rate ends up below the pooled one are released and the rate solved again.
    """
    theta = theta.copy()
    k = theta.shape[1]
    totals = counts.sum(axis=2)
    for c in range(k):
        col = c + 1
        rates = theta[:, :, col].copy()  # (functions, k): P(vote c | y)
        others = polarity[:, c, None] & (np.arange(k) != c)[None, :]
        pooled = others & (rates * lift > rates[:, c, None])
        if not pooled.any():
            continue
        for _ in range(k):
            r = _pooled_rate(
                own_hits=counts[:, c, col],
                own_misses=totals[:, c] - counts[:, c, col],
                hits=(counts[:, :, col] * pooled).sum(axis=1),
                misses=((totals - counts[:, :, col]) * pooled).sum(axis=1),
                lift=lift,
            )
            released = pooled & (rates < r[:, None])
            if not released.any():
                break
            pooled &= ~released
        new_rates = np.where(pooled, r[:, None], rates)
        new_rates[:, c] = np.where(pooled.any(axis=1), lift * r, rates[:, c])
        # Rescale the other outcomes of each row so that it still sums to 1.
        theta *= ((1.0 - new_rates) / (1.0 - rates))[:, :, None]
        theta[:, :, col] = new_rates
    return theta


def _pooled_rate(
    *, own_hits: FloatArray, own_misses: FloatArray, hits: FloatArray, misses: FloatArray, lift: float
) -> FloatArray:
    """argmax over r in (0, 1/lift) of own_hits log(lift r) + own_misses log(1 - lift r) + hits log r
    + misses log(1 - r). Setting the derivative to zero gives a r^2 + b r + c = 0; the smaller root is the
    one in range (for lift = 1 it is the plain pooled rate), written in the form that does not cancel."""
    s = own_hits + hits
    a = lift * (s + own_misses + misses)
    b = -(s * (lift + 1) + lift * own_misses + misses)
    return np.asarray(2 * s / (-b + np.sqrt(b * b - 4 * a * s)), dtype=np.float64)


def _soft_majority_vote(votes: IntArray, k: int) -> FloatArray:
    """Initial posteriors: vote shares with half a vote per class, so all-abstain rows start uniform."""
    shares = np.stack([(votes == c + 1).sum(axis=1) for c in range(k)], axis=1) + 0.5
    return np.asarray(shares / shares.sum(axis=1, keepdims=True), dtype=np.float64)


def _clamp(q: FloatArray, gold: IntArray) -> FloatArray:
    known = gold != ABSTAIN
    if known.any():
        q = q.copy()
        q[known] = np.eye(q.shape[1])[gold[known]]
    return q


def _group_rows(codes: IntArray, base: int) -> tuple[IntArray, IntArray, IntArray]:
    """Distinct rows of `codes` (values in 0..base-1): (patterns, inverse, counts) as np.unique(axis=0).

    Rows are packed into one int64 key when they fit, which is ~40x faster than np.unique(axis=0) at 1M rows;
    when the key space is small a bincount replaces the sort.
    """
    n, m = codes.shape
    if m * math.log2(base) >= 62:
        patterns, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        return patterns.astype(np.int64), inverse.reshape(-1).astype(np.int64), counts.astype(np.int64)
    key = np.zeros(n, dtype=np.int64)
    for j in range(m):
        key = key * base + codes[:, j]
    space = base**m
    if space <= max(4 * n, 1 << 20):
        counts = np.bincount(key, minlength=space)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
        slot = np.zeros(space, dtype=np.int64)
        slot[keys] = np.arange(len(keys))
        inverse = slot[key]
    else:
        keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    patterns = np.empty((len(keys), m), dtype=np.int64)
    rest = keys.astype(np.int64)
    for j in reversed(range(m)):
        patterns[:, j] = rest % base
        rest //= base
    return patterns, inverse.astype(np.int64), counts.astype(np.int64)


def _argmax_random_ties(scores: FloatArray, rng: np.random.Generator) -> IntArray:
    tied = scores >= scores.max(axis=1, keepdims=True) - 1e-12
    if (tied.sum(axis=1) > 1).any():
        scores = np.where(tied, rng.random(scores.shape), -1.0)  # a random score among the tied classes
    return np.asarray(scores.argmax(axis=1), dtype=np.int64)


def _check_label_matrix(value: object, k: int) -> IntArray:
    arr = np.asarray(value)
    ok = arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer)
    if not ok or (arr.size > 0 and (arr.min() < ABSTAIN or arr.max() > k - 1)):
        raise ValueError(f"expected a 2-D integer array with values in [-1, {k - 1}], got {_describe(arr)}")
    return arr.astype(np.int64, copy=False)


def _check_gold(gold: object, n: int, k: int) -> IntArray:
    arr = np.asarray(gold)
    ok = arr.ndim == 1 and len(arr) == n and np.issubdtype(arr.dtype, np.integer)
    if not ok or (arr.size > 0 and (arr.min() < ABSTAIN or arr.max() > k - 1)):
        raise ValueError(
            f"expected gold as a 1-D integer array of {n} labels in [-1, {k - 1}] (-1 = unknown), got {_describe(arr)}"
        )
    return arr.astype(np.int64, copy=False)


def _describe(arr: NDArray[Any]) -> str:
    text = f"shape {arr.shape}, dtype {arr.dtype}"
    if arr.size > 0 and np.issubdtype(arr.dtype, np.number):
        text += f", values in [{arr.min()}, {arr.max()}]"
    return text


def _check_cardinality(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"expected cardinality to be an integer >= 2, got {k!r}")


def _check_number(name: str, value: object, ok: Callable[[float], bool], expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(float(value)):
        raise ValueError(f"expected {name} to be a number {expected}, got {value!r}")
