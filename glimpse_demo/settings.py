"""Per-call settings: frozen, passed to every engine call, never written into a model config."""

from __future__ import annotations

from dataclasses import dataclass, field

ANCHORS = ("tl", "tr", "bl", "br")


@dataclass(frozen=True)
class PruneSettings:
    """How VIP probabilities become a keep mask. ``None`` means "use the modules' config value"."""

    threshold: float | None = None
    max_remain_ratio: float | None = None
    min_remain_num: int | None = None
    anchors: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.max_remain_ratio is not None and not 0.0 < self.max_remain_ratio <= 1.0:
            raise ValueError(f"max_remain_ratio must be in (0, 1], got {self.max_remain_ratio}")
        if self.min_remain_num is not None and self.min_remain_num < 0:
            raise ValueError(f"min_remain_num must be >= 0, got {self.min_remain_num}")
        for a in self.anchors or ():
            if a not in ANCHORS:
                raise ValueError(f"unknown anchor {a!r}; expected some of {', '.join(ANCHORS)}")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding: greedy, or temperature / top-p sampling from a seeded generator."""

    max_new_tokens: int = 64
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class RunSettings:
    mode: str = "glimpse"
    prune: PruneSettings = field(default_factory=PruneSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    def __post_init__(self) -> None:
        if self.mode not in ("glimpse", "baseline"):
            raise ValueError(f"mode must be 'glimpse' or 'baseline', got {self.mode!r}")
