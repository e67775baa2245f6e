"""Freshness policies per store feature, from a deployment spec's optional `features` mapping:

```yaml
features:
  eats:daily_prep:avg_prep: {on_missing: default, on_stale: serve, default: 20.0}
  eats:daily_prep:n_orders: {on_missing: reject}
```

- `on_missing`: `default` (serve `default`, NaN when none is given) or `reject` (the request fails with 422).
- `on_stale`: `null` (the default: served as training saw it, a value older than the group's max age is null ->
  NaN, flagged STALE), `serve` the stale value anyway (flagged STALE), `default` (as for a missing one) or `reject`.
A feature without an entry gets `FeaturePolicy()`: missing -> NaN, stale -> NaN (as in a training set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from bottega.feature_store.types import FeatureRef

OnMissing = Literal["default", "reject"]
OnStale = Literal["null", "serve", "default", "reject"]
FIELDS = ("on_missing", "on_stale", "default")


@dataclass(frozen=True)
class FeaturePolicy:
    on_missing: OnMissing = "default"
    on_stale: OnStale = "null"
    default: float | None = None  # None -> NaN

    @property
    def fill(self) -> float:
        """The value served in place of a missing (or defaulted stale) one."""
        return math.nan if self.default is None else self.default


def _choice(ref: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"features.{ref}.{name}: must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _policy(ref: str, entry: Any) -> FeaturePolicy:
    if entry is None:
        return FeaturePolicy()
    if not isinstance(entry, Mapping):
        raise ValueError(f"features.{ref}: must be a mapping of {', '.join(FIELDS)}, not {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in FIELDS)
    if unknown:
        raise ValueError(f"features.{ref}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    on_missing = _choice(ref, "on_missing", entry.get("on_missing", "default"), get_args(OnMissing))
    on_stale = _choice(ref, "on_stale", entry.get("on_stale", "null"), get_args(OnStale))
    default = entry.get("default")
    if default is not None:
        if isinstance(default, bool) or not isinstance(default, int | float) or not math.isfinite(default):
            raise ValueError(f"features.{ref}.default: must be a finite number or null, not {default!r}")
        default = float(default)
    return FeaturePolicy(on_missing=on_missing, on_stale=on_stale, default=default)  # type: ignore[arg-type]


def parse_policies(spec: Mapping[str, Any]) -> dict[str, FeaturePolicy]:
    """Policies by feature reference from a deployment spec (its `features` key; absent or null -> none)."""
    features = spec.get("features") if isinstance(spec, Mapping) else None
    if features is None:
        return {}
    if not isinstance(features, Mapping):
        raise ValueError(f"features: must be a mapping of feature reference -> policy, not {type(features).__name__}")
    policies = {}
    for ref, entry in features.items():
        try:
            FeatureRef.parse(str(ref))
        except ValueError as exc:
            raise ValueError(f"features.{ref}: {exc}") from None
        policies[str(ref)] = _policy(str(ref), entry)
    return policies
