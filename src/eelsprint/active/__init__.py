"""Active learning: where to re-acquire or label next, feedback into the model, library gaps.

:mod:`~eelsprint.active.acquisition` scores pixels of a classification result,
:mod:`~eelsprint.active.suggest` picks a spread-out batch of them,
:mod:`~eelsprint.active.update` refits the classifier on new evidence without retraining the
encoders, :mod:`~eelsprint.active.gaps` finds pixels no library class explains and
:mod:`~eelsprint.active.loop` records the rounds of a loop so it can stop and resume.
"""

__all__: list[str] = []
