"""Settings as small frozen dataclasses that validate themselves, loadable from TOML.

One :class:`Config` groups them; it is stored with every trained model so that
classification applies exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eelsprint.config.checks import (
    MODES,
    PRECISIONS,
    Precision,
    Window,
    check_choice,
    check_precision,
)
from eelsprint.config.sections import (
    HeadConfig,
    InferenceConfig,
    LibraryConfig,
    ModelConfig,
    NuisanceConfig,
    PreprocessConfig,
    TrainConfig,
)
from eelsprint.exceptions import ConfigError

__all__ = [
    "MODES",
    "PRECISIONS",
    "Config",
    "HeadConfig",
    "InferenceConfig",
    "LibraryConfig",
    "ModelConfig",
    "NuisanceConfig",
    "Precision",
    "PreprocessConfig",
    "TrainConfig",
    "Window",
    "check_choice",
    "check_precision",
]


@dataclass(frozen=True)
class Config:
    """Every setting of a model, one section per concern."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    library: LibraryConfig = field(default_factory=LibraryConfig)
    nuisance: NuisanceConfig = field(default_factory=NuisanceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON/TOML friendly; tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Config:
        """Build from a nested dictionary; unknown sections or keys are errors."""
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kinds = {
            "preprocess": PreprocessConfig,
            "library": LibraryConfig,
            "nuisance": NuisanceConfig,
            "model": ModelConfig,
            "train": TrainConfig,
            "inference": InferenceConfig,
            "head": HeadConfig,
        }
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(sections)}")
        parts = {}
        for name, kind in kinds.items():
            values = dict(data.get(name, {}))
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - known
            if bad:
                raise ConfigError(
                    f"{source}: unknown key(s) {sorted(bad)} in [{name}]; expected {sorted(known)}"
                )
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            try:
                parts[name] = kind(**values)
            except ConfigError as err:
                raise ConfigError(f"{source}: [{name}] {err}") from None
            except TypeError as err:
                raise ConfigError(f"{source}: [{name}] {err}") from None
        return cls(**parts)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Read a TOML file with optional sections ``[preprocess]``, ``[nuisance]``, ...

        Raises
        ------
        ConfigError
            If the file is missing, is not valid TOML or holds invalid values.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not a valid TOML file ({err})") from None
        except OSError as err:  # a folder, no permission
            raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
        return cls.from_dict(data, source=str(path))

    def replace(self, **sections: Any) -> Config:
        """Copy with whole sections replaced, e.g. ``cfg.replace(train=TrainConfig(epochs=5))``."""
        return dataclasses.replace(self, **sections)
