"""User-facing errors. The CLI prints their message without a traceback and exits with code 2."""

from __future__ import annotations


class CxrbenchError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class UnknownNameError(CxrbenchError):
    """An unknown method, dataset or option name."""


class DataError(CxrbenchError):
    """A dataset file, row or image that cannot be used (names the file and row)."""


class PairsDataError(DataError):
    """Some pairs of a batch cannot be used (their prompts, say): `reasons` maps their positions in the batch to
    why. The runner computes the other pairs as one batch without them."""

    def __init__(self, reasons: dict[int, str]):
        super().__init__("; ".join(reasons.values()))
        self.reasons = reasons

    def __reduce__(self) -> tuple[type, tuple[dict[int, str]]]:  # crosses process boundaries inside a PairError
        return (PairsDataError, (self.reasons,))


class MethodOutputError(CxrbenchError):
    """A method returned something the scorer cannot use (wrong shape, NaN everywhere, inf)."""


class MethodFailedError(CxrbenchError):
    """A method raised an exception on one pair."""


class RunLockedError(CxrbenchError):
    """Another cxrbench process is writing to the same run folder."""


class WeightsError(CxrbenchError):
    """A weight file is missing, corrupt or unverified."""


class RunConflictError(CxrbenchError):
    """A run would replace a stored run of another identity."""
