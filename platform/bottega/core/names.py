"""Name and key rules in words.

Patterns (regular expressions) stay the machine contract; people get the rule in words. `describe_pattern` turns the
simple shapes the platform uses (`^[first][rest]{0,N}$`, `^[chars]{m,n}$`) into a sentence, and knows the few
compound ones (feature references, `module:function` paths, version references) by heart. `explain` turns one
pydantic error into a message that states the rule and the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# -- the grammars: every name rule of the platform, defined here once (tests/unit/foundation/test_names_once.py) --

PROJECT_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
"""projects (and user names): lowercase letters, digits and _ . -, starting with a letter or digit"""
CATALOG_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
"""entities, join keys, feature groups, features, aggregations, request features: snake_case"""
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,126}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
"""a model alias: never a number, so `{version}` in a path is a number or an alias"""
VERSION_REF_PATTERN = r"^(?:[1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,62})$"
EVALUATION_NAME_PATTERN = PROJECT_PATTERN
"""a named evaluation of a model version (the projects' rule)"""
TAG_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,126}$"
CATALOG_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}:[a-z][a-z0-9_]{0,62}:[a-z][a-z0-9_]{0,62}$"
"""a feature reference the catalog can define: project:group:feature"""
SIGNATURE_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}:[A-Za-z_][A-Za-z0-9_]{0,126}:[A-Za-z_][A-Za-z0-9_]{0,126}$"
"""a feature reference as model signatures accept it (wider than the catalog's; see issue notes)"""
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
"""a column of a user's table named in a spec or a signature input"""
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""a Python function path module.sub:function"""
SHA256_PATTERN = r"^[0-9a-f]{64}$"
JOB_TYPE_PATTERN = MODEL_NAME_PATTERN
"""a job type name such as training.train (the models' rule)"""
MODEL_PATH_PATTERN = r"^model(\.[A-Za-z_][A-Za-z0-9_]*)+$"
"""a path into a model's parameters (tuning search spaces), e.g. model.params.max_depth"""
TRACKING_RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
"""an experiment-tracking run id (uuid4 hex)"""
JOB_RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""a job run id as workers report it"""

TRAIN_JOB = "training.train"
EVALUATE_JOB = "training.evaluate"
FEATURES_BATCH_JOB = "features.batch"
BATCH_SCORE_JOB = "serving.batch_score"

_SIMPLE = re.compile(r"^\^\[([^\]]+)\](?:\[([^\]]+)\])?\{(\d+)(?:,(\d+))?\}\$$")
_RANGES = {"a-z": "lowercase letters", "A-Z": "uppercase letters", "0-9": "digits", "A-Za-z": "letters"}
_PUNCTUATION = {" ": "space", "\\-": "-", "\\x21-\\x7e": "any printable character except space"}

# Compound rules: references and paths that several simple parts make up.
_KNOWN = {
    CATALOG_REF_PATTERN: (
        "a feature reference project:group:feature (project: lowercase letters, digits and _ . -; group and "
        "feature: lowercase letters, digits and _, starting with a letter)"
    ),
    SIGNATURE_REF_PATTERN: ("a feature reference project:group:feature"),
    FUNCTION_PATTERN: (
        "a Python path module.sub:function (identifiers separated by dots, a colon before the function)"
    ),
    VERSION_REF_PATTERN: (
        "a version number (1, 2, ...) or an alias (lowercase letters, digits, _ and -, starting with a letter)"
    ),
    MODEL_PATH_PATTERN: "a path into the model such as model.layer1 (identifiers after model.)",
}


def _chars(spec: str) -> str:
    """`a-z0-9_.-` -> 'lowercase letters, digits and _ . -'."""
    if spec in _PUNCTUATION:
        return _PUNCTUATION[spec]
    if spec == "0-9a-f":
        return "lowercase hexadecimal digits"
    words: list[str] = []
    rest = spec
    for token, word in sorted(_RANGES.items(), key=lambda kv: -len(kv[0])):
        if token in rest:
            words.append(word)
            rest = rest.replace(token, "")
    if "letters" in words and "lowercase letters" in words:
        words.remove("lowercase letters")
    symbols = [_PUNCTUATION.get(s, s) for s in re.findall(r"\\.|.", rest)]
    symbols = ["space" if s == " " else s.removeprefix("\\") for s in symbols]
    if symbols:
        words.append(" ".join(symbols))
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def describe_pattern(pattern: str) -> str:
    """The rule a pattern states, in words (the pattern itself when its shape is not one we know)."""
    if pattern in _KNOWN:
        return _KNOWN[pattern]
    match = _SIMPLE.match(pattern)
    if not match:
        return f"text matching the pattern {pattern}"
    first, rest, low, high = match.groups()
    if rest is None:  # ^[chars]{m,n}$ or ^[chars]{n}$
        size = f"exactly {low}" if high is None else f"{low} to {high}" if low != "0" else f"at most {high}"
        return f"{_chars(first)}; {size} characters"
    longest = int(high if high is not None else low) + 1
    if first == rest:
        return f"{_chars(rest)}; at most {longest} characters"
    return f"{_chars(rest)}, starting with {_first_words(first)}, at most {longest} characters"


def _first_words(spec: str) -> str:
    words = _chars(spec).replace(" and ", " or ").replace("lowercase letters", "a lowercase letter")
    words = words.replace("uppercase letters", "an uppercase letter").replace("letters", "a letter")
    return words.replace("digits", "a digit")


def explain(error: Mapping[str, Any]) -> str:
    """One pydantic error (a dict from `ValidationError.errors()`) as a message with the rule and the value."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "string_pattern_mismatch" and "pattern" in ctx:
        return f"must be {describe_pattern(str(ctx['pattern']))}; got {_shown(value)}"
    if kind == "string_too_long" and "max_length" in ctx:
        return f"must be at most {ctx['max_length']} characters; got {len(str(value))}"
    if kind == "missing":
        return "is required"
    return str(error.get("msg", "is not valid"))


def _shown(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 5] + "...'"


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def explain_all(errors: list[dict[str, Any]], limit: int = 10) -> str:
    """Every error of a validation as `field: message; field: message` (the first `limit`)."""
    parts = []
    for error in errors[:limit]:
        where = field_path(error.get("loc", ()))
        parts.append(f"{where}: {explain(error)}" if where else explain(error))
    more = len(errors) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def field_error(err: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One pydantic error as an `errors[]` entry: the field (under `prefix`), the rule in words with the value, and
    for machines the pydantic type (and the pattern, where one was broken)."""
    loc = [prefix] if prefix else []
    entry = {"field": field_path([*loc, *err.get("loc", ())]), "message": explain(err), "type": err.get("type")}
    pattern = (err.get("ctx") or {}).get("pattern")
    if pattern is not None:
        entry["pattern"] = str(pattern)
    return entry


def field_errors(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> tuple[list[dict[str, Any]], str]:
    """(the `errors[]` entries, a one-line detail naming at most ten fields) of pydantic errors: the one helper every
    ValidationError -> 422 path uses (API requests, job params, deployment specs, SDK bodies)."""
    entries = [field_error(err, prefix) for err in errors]
    return entries, "; ".join(f"{e['field']}: {e['message']}" for e in entries[:10])
