"""Labeling functions: the decorator that names them and the registry that applies them to a features frame.

A labeling function takes the whole features frame and returns a polars Expr or Series of int votes, one per
row: a class index in 0..k-1, or ABSTAIN (null counts as ABSTAIN too). Working on whole columns keeps a
million rows in tens of milliseconds; a Python loop over rows is what makes other appliers take minutes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

ABSTAIN: Final = -1

LFFunc = Callable[[pl.DataFrame], pl.Expr | pl.Series]

# The label matrix is int8 when every vote fits (cardinality up to 127), int16 otherwise.
_INT16_MAX: Final = int(np.iinfo(np.int16).max)


@dataclass(frozen=True)
class LabelingFunction:
    """A named vote function; `tasks` is the set of tasks it serves, None meaning every task."""

    name: str
    func: LFFunc
    tasks: frozenset[str] | None = None

    def __call__(self, frame: pl.DataFrame) -> pl.Expr | pl.Series:
        return self.func(frame)

    def serves(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def source(self) -> str:
        """The function's source code, the part of its identity that a rename would not change."""
        try:
            return textwrap.dedent(inspect.getsource(self.func))
        except (OSError, TypeError):
            # Defined where no source is kept (a REPL, exec): the bytecode still identifies it.
            code = getattr(self.func, "__code__", None)
            return code.co_code.hex() if code is not None else repr(self.func)


def labeling_function(
    *, name: str | None = None, tasks: Iterable[str] | None = None
) -> Callable[[LFFunc], LabelingFunction]:
    """Declare a labeling function: `@labeling_function(name="edited_heavily", tasks=["helpfulness"])`.

    The name defaults to the function's own name; `tasks=None` means the function serves every task.
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"expected a non-empty string as the labeling function name, got {name!r}")
    task_set = None if tasks is None else frozenset([tasks] if isinstance(tasks, str) else tasks)

    def wrap(func: LFFunc) -> LabelingFunction:
        return LabelingFunction(name=name or func.__name__, func=func, tasks=task_set)

    return wrap


class LFRegistry:
    """An ordered set of labeling functions with unique names; column j of the label matrix is function j."""

    def __init__(self, lfs: Iterable[LabelingFunction]) -> None:
        self._lfs: tuple[LabelingFunction, ...] = tuple(lfs)
        for lf in self._lfs:
            if not isinstance(lf, LabelingFunction):
                raise TypeError(f"expected LabelingFunction objects (use @labeling_function), got {lf!r}")
        duplicates = sorted(name for name, count in Counter(self.names).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate labeling function name(s): {', '.join(duplicates)}")
        self.failures: dict[str, int] = {}
        # Covers the order too, because the order fixes the columns a fitted label model was trained on.
        identity = [
            {"name": lf.name, "tasks": sorted(lf.tasks) if lf.tasks is not None else None, "source": lf.source()}
            for lf in self._lfs
        ]
        self.fingerprint: str = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lf.name for lf in self._lfs)

    def __len__(self) -> int:
        return len(self._lfs)

    def __iter__(self) -> Iterator[LabelingFunction]:
        return iter(self._lfs)

    def for_task(self, task: str) -> LFRegistry:
        """The registry of the functions that serve `task`, in the same order."""
        return LFRegistry(lf for lf in self._lfs if lf.serves(task))

    def apply(self, frame: pl.DataFrame) -> tuple[NDArray[np.signedinteger[Any]], tuple[str, ...]]:
        """Run every function on `frame`; return the label matrix (rows x functions) and the column names.

        A function that raises, or returns something that is not one integer vote per row, votes ABSTAIN on
        every row; the failure is logged and counted in `self.failures[name]`.
        """
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"expected a polars DataFrame of features, got {type(frame).__name__}")
        n = frame.height
        matrix = np.full((n, len(self._lfs)), ABSTAIN, dtype=np.int16)
        exprs: dict[int, pl.Expr] = {}
        for j, lf in enumerate(self._lfs):
            try:
                out = lf(frame)
                if isinstance(out, pl.Expr):
                    exprs[j] = out  # evaluated together below, so polars can run them in parallel
                else:
                    matrix[:, j] = _votes(out, n)
            except Exception as exc:
                self._record_failure(lf.name, n, exc)
        for j, series in self._evaluate(frame, exprs).items():
            try:
                matrix[:, j] = _votes(series, n)
            except Exception as exc:
                self._record_failure(self._lfs[j].name, n, exc)
        if matrix.size == 0 or matrix.max() <= np.iinfo(np.int8).max:
            return matrix.astype(np.int8), self.names
        return matrix, self.names

    def _evaluate(self, frame: pl.DataFrame, exprs: dict[int, pl.Expr]) -> dict[int, pl.Series]:
        if not exprs:
            return {}
        try:
            out = frame.select([expr.alias(f"lf{j}") for j, expr in exprs.items()])
            return {j: out.get_column(f"lf{j}") for j in exprs}
        except Exception:
            pass  # one bad expression fails the whole select: run them one by one to find which
        results: dict[int, pl.Series] = {}
        for j, expr in exprs.items():
            try:
                results[j] = frame.select(expr.alias("votes")).to_series()
            except Exception as exc:
                self._record_failure(self._lfs[j].name, frame.height, exc)
        return results

    def _record_failure(self, name: str, n_rows: int, exc: Exception) -> None:
        self.failures[name] = self.failures.get(name, 0) + 1
        logger.warning(
            "labeling function %r failed on a frame of %d rows, counted as abstain: %s: %s",
            name,
            n_rows,
            type(exc).__name__,
            exc,
        )


def _votes(out: object, n: int) -> NDArray[np.int16]:
    """Check one function's output and turn it into n int16 votes (null -> ABSTAIN, length 1 -> broadcast)."""
    if not isinstance(out, pl.Series):
        raise TypeError(f"expected a polars Expr or Series of int votes, got {type(out).__name__}")
    if not (out.dtype.is_integer() or out.dtype == pl.Null):
        raise TypeError(f"expected integer votes, got dtype {out.dtype}")
    if out.len() not in (n, 1):
        raise ValueError(f"expected {n} votes (one per row), got {out.len()}")
    values = out.cast(pl.Int64).fill_null(ABSTAIN).to_numpy()
    if values.size and (values.min() < ABSTAIN or values.max() > _INT16_MAX):
        raise ValueError(f"expected votes in [{ABSTAIN}, {_INT16_MAX}], got [{values.min()}, {values.max()}]")
    return np.broadcast_to(values.astype(np.int16), (n,))
