"""A deliberately broken classifier must fail the quality assertions.

``FingerprintClassifier.predict_proba`` is replaced by (a) the majority class one-hot, (b) the
nearest-fingerprint one-hot and (c) uniform probabilities; the same helper and bounds that the
quality tests use (``tests/quality.py``) must then raise. Run on the session's quick model with its
held-out series and on the shipped model with its fresh series.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from eelsprint import FingerprintClassifier
from eelsprint.data.simulate import SimulatedSeries
from eelsprint.report.baselines import nearest_fingerprint, one_hot

from .quality import QUICK_HELD_OUT, SHIPPED_FRESH, Bounds, check_classifier, majority_class


def _broken(kind: str, series: SimulatedSeries) -> Callable[..., np.ndarray]:
    """A ``predict_proba`` that ignores the model and answers like a trivial method on ``series``."""
    n_classes = len(series.library.classes)
    y = series.labels.reshape(-1)

    def predict_proba(self: FingerprintClassifier, X: Any, energy: Any = None, mode: Any = None) -> Any:
        if kind == "majority_class":
            proba = one_hot(np.full(len(y), majority_class(y)), n_classes)
        elif kind == "nearest_fingerprint":
            proba = one_hot(nearest_fingerprint(X.flat(), series.library), n_classes)
        else:
            proba = np.full((len(y), n_classes), 1.0 / n_classes)
        return proba.reshape(*X.nav_shape, n_classes)

    return predict_proba


@pytest.fixture(params=["quick", "shipped"])
def setting(request: pytest.FixtureRequest) -> tuple[FingerprintClassifier, SimulatedSeries, Bounds]:
    if request.param == "quick":
        return request.getfixturevalue("fitted"), request.getfixturevalue("held_out"), QUICK_HELD_OUT
    return request.getfixturevalue("shipped"), request.getfixturevalue("fresh"), SHIPPED_FRESH


@pytest.mark.parametrize("kind", ["majority_class", "nearest_fingerprint", "uniform"])
def test_a_broken_classifier_fails_the_quality_assertions(
    kind: str, setting: tuple[FingerprintClassifier, SimulatedSeries, Bounds], monkeypatch: pytest.MonkeyPatch
) -> None:
    clf, series, bounds = setting
    monkeypatch.setattr(FingerprintClassifier, "predict_proba", _broken(kind, series))
    proba = clf.predict_proba(series.spectra)
    assert proba.shape == (*series.spectra.nav_shape, len(series.library.classes))  # the patch is in place
    with pytest.raises(AssertionError):
        check_classifier(clf, series, bounds)
