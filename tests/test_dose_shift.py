"""The dose a model was fitted at: ``noise_vs_fit``, ``DoseShiftWarning`` and its one-line form."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from eelsprint.cli.common import model_warnings
from eelsprint.exceptions import DoseShiftWarning, RepresentationWarning
from eelsprint.inference.features import NO_NUISANCE, FeaturePrior, Scan
from eelsprint.inference.ood import DOSE_SHIFT, OODScaler, warn_dose_shift


def test_noise_vs_fit_is_the_median_variance_ratio_to_the_training_pixels() -> None:
    scaler = OODScaler(1.0, 0.5, 0.0, 1.0, FeaturePrior(0.0, (0.0,)), np.log(2.0), 0.2, NO_NUISANCE)
    log_noise = np.log(
        2.0 * np.array([0.08, 0.1, 0.1, 0.12, 5.0])
    )  # one noisy outlier: the median ignores it
    assert scaler.noise_vs_fit(Scan(np.zeros(5), log_noise)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("ratio", "n", "reads"),
    [
        (0.49, 10, "underconfident"),
        (2.01, 10, "overconfident"),
        (0.1, 9, None),
        (0.5, 50, None),
        (DOSE_SHIFT, 50, None),
    ],
)
def test_dose_shift_warns_outside_a_factor_two_on_ten_spectra_or_more(
    ratio: float, n: int, reads: str | None
) -> None:
    if reads is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_dose_shift(ratio, n, "scan.hspy")
        return
    with pytest.warns(
        DoseShiftWarning, match=rf"^scan\.hspy: .* {ratio:.2g} times the fitted .* read {reads}"
    ):
        warn_dose_shift(ratio, n, "scan.hspy")


def test_model_warnings_are_one_line_each_once(capsys: pytest.CaptureFixture[str]) -> None:
    with model_warnings():
        warnings.warn("noisier than fitted", DoseShiftWarning, stacklevel=1)
        warnings.warn("noisier than fitted", DoseShiftWarning, stacklevel=1)
        warnings.warn("latent fails its library", RepresentationWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == [
        "warning: noisier than fitted",
        "warning: latent fails its library",
    ]
    with pytest.warns(RuntimeWarning, match="not the model's"), model_warnings():
        warnings.warn("not the model's", RuntimeWarning, stacklevel=1)
    assert capsys.readouterr().err == ""
