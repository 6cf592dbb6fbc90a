"""Vocabularies and validators shared by the settings: windows, modes, precisions, choices."""

from __future__ import annotations

from typing import Literal, cast

from eelsprint.exceptions import ConfigError, EelsprintError

__all__ = [
    "MODES",
    "PRECISIONS",
    "Precision",
    "Window",
    "check_choice",
    "check_positive",
    "check_precision",
    "check_window",
]

Window = tuple[float, float] | None
#: The estimator's integration modes (``InferenceConfig.mode`` and every ``mode=`` argument).
MODES = ("fast", "exact", "head")
#: Numerical precision of the real-time graph, by name: float32; float16 (TensorRT engines);
#: bfloat16 weights and activations, or int8 dynamic quantisation of the dense layers
#: (convolutions stay float32), both for the eager CPU graph. The torch dtypes are
#: :data:`eelsprint.models.head.DTYPES`.
Precision = Literal["fp32", "fp16", "bf16", "int8"]
#: The precisions each runtime of the real-time graph supports ("eager": PyTorch on the CPU,
#: ``[inference] head_precision``; the others: ``eelsprint export --format``).
PRECISIONS: dict[str, tuple[Precision, ...]] = {
    "eager": ("fp32", "bf16", "int8"),
    "pt2": ("fp32",),
    "onnx": ("fp32",),
    "torchscript": ("fp32",),
    "tensorrt": ("fp32", "fp16"),
}


def check_precision(
    precision: str, runtime: str, name: str = "precision", error: type[EelsprintError] = ConfigError
) -> Precision:
    """``precision`` if ``runtime`` (a key of :data:`PRECISIONS`) supports it, else ``error``.

    The message names what the runtime takes and where the refused precision is available:
    ``precision 'fp16' is not available for onnx; use fp32 (fp16: tensorrt only)``.
    """
    allowed = PRECISIONS[runtime]
    if precision in allowed:
        return cast(Precision, precision)
    use = f"use {', '.join(allowed[:-1])} or {allowed[-1]}" if len(allowed) > 1 else f"use {allowed[0]}"
    elsewhere = [r for r, choices in PRECISIONS.items() if precision in choices]
    if not elsewhere:
        raise error(f"{name} {precision!r} is unknown; {use} for {runtime}")
    where = f"{precision}: {', '.join(elsewhere)} only"
    raise error(f"{name} {precision!r} is not available for {runtime}; {use} ({where})")


def check_window(name: str, window: Window) -> None:
    if window is not None and not (len(window) == 2 and window[0] < window[1]):
        raise ConfigError(f"{name} must be (low, high) in eV with low < high, got {window}")


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """``ConfigError("mode must be 'a', 'b' or 'c', got 'x'")`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        quoted = [f"'{c}'" for c in choices]
        allowed = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
