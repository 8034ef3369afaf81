"""The label model's degeneracy guard: after a fit, decide whether it is degenerate and fall back if so.

EM on weak labels can find a fixed point that explains the votes by something other than the truth: one class
swallowing the balance, functions turned against their own votes, or no fixed point within max_iter. This
module checks a fitted LabelModel for those signs, in pure code and from the fit's own numbers:

- "class share": a class's learned share, or its share of the predictions on rows with a vote, is more than
  MAX_SHARE_GAP from the share majority vote supports (`vote_shares_`);
- "accuracies at the bounds": at least half the functions are learned no better than random (accuracy at or
  below 1/k), or a function is learned as never wrong although it disagrees with others;
- "no convergence": EM stopped at max_iter with posteriors still moving;
- "gold" (when fit was given gold): predicted from their votes alone, the gold rows (MIN_GOLD_ROWS or more
  with a vote) are less often right under the fit than under majority vote.

When one holds, the fitted parameters are replaced by a weighted majority vote: the vote counts decide,
ties go to the side of the functions with the higher learned accuracy (clipped to [SAFE_ACCURACY_LOW,
SAFE_ACCURACY_HIGH], as the learned figures are suspect), then to the class `vote_shares_` favours;
abstentions carry no evidence, and `model.fallback_` names the reasons
("class share: ...; no convergence"). `fit_report(model)` gives the figures a report or /metrics needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from flywheel_feedback.labeling.label_model import LabelModel

MAX_SHARE_GAP = 0.2
MAX_AGREEMENT_GAP = 0.15
MIN_OVERLAP_ROWS = 10
SAFE_ACCURACY_LOW = 0.55
SAFE_ACCURACY_HIGH = 0.9
VOTE_WEIGHT = 20.0
MIN_GOLD_ROWS = 20
TIE_WEIGHT = 0.01


class FitReport(TypedDict):
    """What a fitted label model says about its own fit."""

    degenerate: bool
    fallback: str | None
    converged: bool
    n_iter: int
    class_balance: list[float]
    vote_shares: list[float]
    accuracies: list[float]
    demoted: list[int]


def degeneracy_reasons(
    model: LabelModel,
    votes: NDArray[np.int64],
    counts: NDArray[np.int64],
    *,
    gold: NDArray[np.int64] | None = None,
) -> list[str]:
    """Why the fit of `model` on the distinct outcome patterns `votes` (0 = abstain, 1 + c = class c; each seen
    `counts` times; `gold` per pattern, -1 = unknown) is degenerate; empty when it is not."""
    k = model.cardinality
    reasons = []
    # What the votes support is judged from the votes as the fit hears them: a demoted function only where
    # no other function votes. Judged from all votes, a demotion would always look like a share run away.
    heard = _heard(votes, model.demoted_)
    balance = model.class_balance_
    anchor = model.vote_shares_
    if model.demoted_:
        from flywheel_feedback.labeling.label_model import _vote_shares

        anchor = _vote_shares(heard, counts, np.full(len(votes), -1) if gold is None else gold, k)
    covered = (votes != 0).any(axis=1)
    if covered.any():
        predicted = model._pattern_proba(votes[covered]).argmax(axis=1)
        predicted_shares = np.bincount(predicted, weights=counts[covered], minlength=k) / counts[covered].sum()
        tallies = np.stack([(heard[covered] == c + 1).sum(axis=1) for c in range(k)], axis=1)
        supported = ((tallies / tallies.sum(axis=1, keepdims=True)) * counts[covered, None]).sum(axis=0)
        supported = supported / supported.sum()
    else:
        predicted_shares = supported = anchor
    gaps = [
        ("learned", float(np.abs(balance - anchor).max())),
        ("predicted", float(np.abs(predicted_shares - supported).max())),
    ]
    for what, gap in gaps:
        if gap > MAX_SHARE_GAP:
            reasons.append(f"class share: {what} shares are {gap:.2f} from what the votes support (> {MAX_SHARE_GAP})")
    accuracies = model.accuracies_
    voting = np.array([(votes[:, j] != 0).any() and j not in model.demoted_ for j in range(votes.shape[1])])
    random_level = 1.0 / k + 0.01
    if voting.any() and (accuracies[voting] <= random_level).mean() >= 0.5:
        reasons.append("accuracies at the bounds: half the functions or more are learned no better than random")
    if not model.converged_:
        reasons.append(f"no convergence: EM stopped at max_iter={model.max_iter}")
    if gold is not None:
        judged = (gold >= 0) & covered
        if counts[judged].sum() >= MIN_GOLD_ROWS:
            # Predicted from the votes alone (not the clamped posteriors): a fit that the gold rows say is worse
            # than counting votes is not kept, so gold can only help.
            ours = model._pattern_proba(votes[judged])
            tallies = np.stack([(votes[judged] == c + 1).sum(axis=1) for c in range(k)], axis=1).astype(float)
            hits_ours = expected_hits(ours, gold[judged], counts[judged])
            hits_votes = expected_hits(tallies, gold[judged], counts[judged])
            if hits_ours < hits_votes:
                reasons.append(
                    f"gold: the fit gets {hits_ours:.0f} of {counts[judged].sum()} gold rows right, "
                    f"majority vote {hits_votes:.0f}"
                )
    return reasons


def dominant_function(
    votes: NDArray[np.int64],
    counts: NDArray[np.int64],
    accuracies: NDArray[np.float64],
    k: int,
    gold: NDArray[np.int64] | None = None,
) -> tuple[int, float] | None:
    """The function the fit trusts far beyond what the other functions corroborate, and by how much; None if none.

    EM counts a function's unopposed votes as right, so a broad function that the others mostly contradict can
    be learned as nearly always right, then decide every conflict and inflate its class's balance (WRENCH trec,
    semeval, hausa: a function covering 50-60% of the items with true accuracy 0.2-0.55, learned at 0.8-1.0).
    Its agreement with the majority of the other functions, on the rows where it and another function vote (ties
    split evenly), is a biased but not self-confirming estimate of its accuracy. The score is coverage x
    (learned accuracy - agreement): a function is dominant when that exceeds MAX_AGREEMENT_GAP. Where
    MIN_GOLD_ROWS gold rows (`gold` per pattern, -1 = unknown) have the function's vote, its accuracy on them
    replaces the agreement: the better estimate of the same thing.
    """
    tallies = np.stack([(votes == c + 1).sum(axis=1) for c in range(k)], axis=1)
    total = counts.sum()
    worst, worst_j = MAX_AGREEMENT_GAP, -1
    for j in range(votes.shape[1]):
        fires = votes[:, j] != 0
        others = tallies[fires] - np.eye(k, dtype=tallies.dtype)[votes[fires, j] - 1]
        overlap = others.sum(axis=1) > 0
        weight = counts[fires][overlap]
        if weight.sum() < MIN_OVERLAP_ROWS or not np.isfinite(accuracies[j]):
            continue
        others = others[overlap]
        top = others == others.max(axis=1, keepdims=True)
        agree = top[np.arange(len(others)), votes[fires, j][overlap] - 1] / top.sum(axis=1)
        agreement = float((agree * weight).sum() / weight.sum())
        if gold is not None:
            known = fires & (gold >= 0)
            if counts[known].sum() >= MIN_GOLD_ROWS:
                right = votes[known, j] - 1 == gold[known]
                agreement = float((right * counts[known]).sum() / counts[known].sum())
        gap = counts[fires].sum() / total * (float(accuracies[j]) - agreement)
        if gap > worst:
            worst, worst_j = gap, j
    return None if worst_j < 0 else (worst_j, worst)


def _heard(votes: NDArray[np.int64], demoted: list[int]) -> NDArray[np.int64]:
    """The outcome patterns with the demoted functions silenced, except on rows where only they vote."""
    from flywheel_feedback.labeling.label_model import silenced

    if not demoted:
        return votes
    heard, only_demoted = silenced(votes, demoted)
    heard[only_demoted] = votes[only_demoted]
    return heard


def expected_hits(scores: NDArray[np.float64], gold: NDArray[np.int64], counts: NDArray[np.int64]) -> float:
    """Rows right when each row's top-scoring classes share the row (ties split evenly)."""
    return float((row_hits(scores, gold) * counts).sum())


def row_hits(scores: NDArray[np.float64], gold: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per row, the share of its top-scoring classes that is its gold class (1: right, 0: wrong)."""
    top = scores >= scores.max(axis=1, keepdims=True) - 1e-12
    return np.asarray(top[np.arange(len(gold)), gold] / top.sum(axis=1), dtype=np.float64)


def apply_guard(
    model: LabelModel,
    votes: NDArray[np.int64],
    counts: NDArray[np.int64],
    *,
    gold: NDArray[np.int64] | None = None,
) -> None:
    """Set `model.fallback_` and, when the fit is degenerate, swap its parameters for weighted majority vote."""
    reasons = degeneracy_reasons(model, votes, counts, gold=gold)
    if not reasons:
        model.fallback_ = None
        return
    model.fallback_ = "; ".join(reasons)
    k = model.cardinality
    accuracy = np.clip(np.nan_to_num(model.accuracies_, nan=SAFE_ACCURACY_LOW), SAFE_ACCURACY_LOW, SAFE_ACCURACY_HIGH)
    # Each vote moves a class's log score by VOTE_WEIGHT (plus a little for a more accurate function), so vote
    # counts decide, the learned accuracies only break ties, and the balance only breaks what is left.
    lift = VOTE_WEIGHT * (1.0 + TIE_WEIGHT * np.log(accuracy * (k - 1) / (1 - accuracy)))
    rate = 0.5 / k
    theta = np.empty_like(model.outcome_probs_)
    eye = np.eye(k)[None]
    theta[:, :, 1:] = rate * (eye + (1 - eye) * np.exp(-lift)[:, None, None])
    theta[:, :, 0] = 1.0 - theta[:, :, 1:].sum(axis=2)
    model._abstain_scale = 0.0
    model._set_parameters(np.asarray(model.vote_shares_, dtype=np.float64), theta)


def fit_report(model: LabelModel) -> FitReport:
    """The fitted model's own account of its fit, for a labeler's report or /metrics."""
    if not hasattr(model, "outcome_probs_"):
        raise RuntimeError("this LabelModel is not fitted yet: call fit(L) first")
    return FitReport(
        degenerate=model.fallback_ is not None,
        fallback=model.fallback_,
        converged=bool(model.converged_),
        n_iter=int(model.n_iter_),
        class_balance=[float(x) for x in model.class_balance_],
        vote_shares=[float(x) for x in model.vote_shares_],
        accuracies=[float(x) for x in model.accuracies_],
        demoted=[int(j) for j in model.demoted_],
    )
