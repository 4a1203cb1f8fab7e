"""Alert rules (CONTRACT §5): the YAML file, its validation, and the pure state machine.

Per rule and scope, the alert's history is what evaluating the scope's day series in day
order gives: it fires on the first day the condition holds and resolves on the first later
day it no longer holds (for ``below``: value >= ``clear``). A NULL value, or a day with fewer
than ``min_enterprises``, leaves the state as it was. Late data changes the series, and the
evaluation is simply run again: the transitions are a function of the current data.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

REGION_METRICS = (
    "enterprises",
    "resumed",
    "filed",
    "suspended",
    "resumption_rate",
    "reports_received",
    "report_compliance",
    "staff_on_duty",
    "staff_normal",
    "workforce_rate",
    "output_value",
    "capacity_value",
    "capacity_attainment",
    "appeals_opened",
    "appeals_resolved",
    "appeal_resolution_rate",
)
METRICS = (*REGION_METRICS, "supplier_readiness")
# Shares of a whole, whose thresholds lie in [0, 1]. Workforce and capacity attainment are
# not: more staff or output than normal is possible.
SHARES = ("resumption_rate", "report_compliance", "appeal_resolution_rate", "supplier_readiness")
LEVELS = ("province", "city", "district")
NAME_RE = re.compile(r"[a-z0-9_]+")
FIELDS = {
    "name",
    "metric",
    "level",
    "sector",
    "above_scale_only",
    "below",
    "clear",
    "drop",
    "min_enterprises",
}


class RulesError(ValueError):
    """An invalid rules file; the message names the file, the line and the reason."""


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    level: str = "district"
    sector: str = "*"
    above_scale_only: int = 0
    below: float | None = None
    clear: float | None = None
    drop: float | None = None
    min_enterprises: int = 0

    @property
    def threshold(self) -> float:
        return self.below if self.below is not None else float(self.drop or 0.0)

    @property
    def clear_at(self) -> float:
        assert self.below is not None
        return self.clear if self.clear is not None else self.below


def _fail(path: str, node: Any, message: str) -> RulesError:
    line = node.start_mark.line + 1 if node is not None else 1
    return RulesError(f"{path} line {line}: {message}")


def _yaml_error(path: str, text: str, exc: Exception) -> RulesError:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        return RulesError(
            f"{path} line {line}: not valid YAML: unacceptable character #x{exc.character:04x}"
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or exc
    if isinstance(exc, yaml.constructor.ConstructorError):
        # Tags such as !!python/object would run code under a full loader: refuse them.
        return RulesError(f"{path}{where}: refused by the safe YAML loader: {problem}")
    return RulesError(f"{path}{where}: not valid YAML: {problem}")


def _key_text(node: Any) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _twice(node: Any) -> tuple[Any, str] | None:
    """The first key of a mapping node given a second time (its node and text), if any."""
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        text = _key_text(key)
        if text is None or text == "<<":  # non-scalar keys are the constructor's to refuse
            continue
        if (key.tag, text) in seen:
            return key, text
        seen.add((key.tag, text))
    return None


def parse_rules(text: str | bytes, path: str = "rules") -> list[Rule]:
    """Parse and validate a rules file; raises RulesError with the line and the reason.

    A file without rules (empty, ``rules:`` with nothing after it, or ``rules: []``) is
    valid: it switches alerting off.
    """
    if isinstance(text, bytes):
        text = _decode(text, path)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from exc
    try:
        root = loader.get_single_node()
        if root is None:
            return []
        if not isinstance(root, yaml.MappingNode):
            raise _fail(path, root, "the file must be a mapping with a `rules:` list")
        twice = _twice(root)
        if twice is not None:
            raise _fail(path, twice[0], f"key `{twice[1]}` given twice")
        for node in _rule_nodes(root):
            twice = _twice(node) if isinstance(node, yaml.MappingNode) else None
            if twice is not None:
                name = next((_key_text(v) for k, v in node.value if _key_text(k) == "name"), None)
                raise _fail(path, twice[0], f"rule {name or '?'}: field `{twice[1]}` given twice")
        # Keys given twice are looked for first: the constructor keeps the last silently.
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):  # a tagged mapping, such as !!set
        raise _fail(path, root, "the file must be a mapping with a `rules:` list")
    for key, _ in root.value:
        if _key_text(key) != "rules":
            raise _fail(path, key, f"unknown key `{key.value}` (only `rules` is allowed)")
    items = data.get("rules")
    if items is None:
        return []
    if not isinstance(items, list):
        rules_node = next(v for k, v in reversed(root.value) if _key_text(k) == "rules")
        raise _fail(path, rules_node, "`rules:` must be a list of rules")
    rules: list[Rule] = []
    seen: set[str] = set()
    for node, item in zip(_rule_nodes(root), items, strict=True):
        rules.append(_rule(path, node, item, seen))
    return rules


def _rule_nodes(root: Any) -> list[Any]:
    """The nodes of the entries of the `rules:` list (empty if it is not a list). The last
    `rules` key is the one constructed (a `<<` merge can put another one before it)."""
    node = next((v for k, v in reversed(root.value) if _key_text(k) == "rules"), None)
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RulesError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from exc


def _rule(path: str, node: Any, item: Any, seen: set[str]) -> Rule:
    if not isinstance(item, dict):
        raise _fail(path, node, "each rule must be a mapping of fields")
    lines = {_key_text(k): k for k, _ in node.value}

    def fail(field: str, message: str) -> RulesError:
        name = item.get("name", "?")
        return _fail(path, lines.get(str(field), node), f"rule {name}: {message}")

    unknown = sorted((k for k in item if k not in FIELDS), key=str)
    if unknown:
        raise fail(unknown[0], f"unknown field `{unknown[0]}` (known: {', '.join(sorted(FIELDS))})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise fail("name", f"name must match [a-z0-9_]+, got {name!r}")
    if name in seen:
        raise fail("name", f"name {name!r} is used twice")
    seen.add(name)
    metric = item.get("metric")
    if metric not in METRICS:
        raise fail("metric", f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    level = item.get("level", "district")
    if level not in LEVELS:
        raise fail("level", f"level must be province, city or district, got {level!r}")
    sector = item.get("sector", "*")
    if not isinstance(sector, str) or not sector:
        raise fail("sector", f"sector must be a non-empty string, got {sector!r}")
    above = item.get("above_scale_only", 0)
    if isinstance(above, bool) or not isinstance(above, int) or above not in (0, 1):
        raise fail("above_scale_only", f"above_scale_only must be 0 or 1, got {above!r}")

    def number(field: str) -> float | None:
        v = item.get(field)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise fail(field, f"{field} must be a number, got {v!r}")
        try:
            finite = math.isfinite(v)  # an int too large for a float raises OverflowError
        except OverflowError:
            finite = False
        if not finite:
            raise fail(field, f"{field} must be a finite number, got {str(v)[:40]}")
        if metric in SHARES and not 0 <= v <= 1:
            raise fail(field, f"{field} must be between 0 and 1 for {metric} (a share), got {v!r}")
        return float(v)

    below, clear, drop = number("below"), number("clear"), number("drop")
    if (below is None) == (drop is None):
        raise fail("name", "give exactly one condition: `below` or `drop`")
    if clear is not None and below is None:
        raise fail("clear", "clear only goes with below")
    if clear is not None and below is not None and clear < below:
        raise fail("clear", f"clear ({clear}) must be >= below ({below})")
    if drop is not None and drop <= 0:
        raise fail("drop", f"drop must be > 0, got {drop}")
    min_enterprises = item.get("min_enterprises", 0)
    if (
        isinstance(min_enterprises, bool)
        or not isinstance(min_enterprises, int)
        or min_enterprises < 0
    ):
        raise fail(
            "min_enterprises", f"min_enterprises must be an integer >= 0, got {min_enterprises!r}"
        )
    return Rule(name, metric, level, sector, int(above), below, clear, drop, min_enterprises)


def load_rules(path: Path) -> list[Rule]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules file ({exc.strerror})") from exc
    return parse_rules(data, str(path))


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One transition of one alert: ``fired_day`` identifies the alert, ``day`` the step."""

    state: str  # "firing" | "resolved"
    fired_day: int
    day: int
    value: float | None


Point = tuple[int, float | None, int]  # (day, value, enterprises)


def evaluate(rule: Rule, series: list[Point]) -> list[Step]:
    """Every transition of ``rule`` over a scope's day series (sorted by day)."""
    steps: list[Step] = []
    firing_since: int | None = None
    previous: float | None = None
    for day, value, enterprises in series:
        usable = value is not None and enterprises >= rule.min_enterprises
        if not usable:
            previous = value if value is not None else None
            continue
        assert value is not None
        if rule.below is not None:
            holds = value < rule.below
            releases = value >= rule.clear_at
        else:
            # A tolerance for binary fractions: 0.85 - 0.80 is 0.04999999999999993.
            holds = previous is not None and previous - value >= float(rule.drop or 0) - 1e-9
            releases = not holds
        if firing_since is None and holds:
            firing_since = day
            steps.append(Step("firing", day, day, value))
        elif firing_since is not None and releases:
            steps.append(Step("resolved", firing_since, day, value))
            firing_since = None
        previous = value
    return steps


def alert_id(rule: str, scope: tuple[str, ...], fired_day: int) -> str:
    """Deterministic id of an alert: its rule, its scope and the day it fired."""
    text = "\x1f".join((rule, *scope, str(fired_day)))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:20]


def new_transitions(
    rule: Rule, series: list[Point], scope: tuple[str, ...], emitted: dict[str, list[Any]]
) -> list[tuple[str, Step]]:
    """The transitions of ``rule`` not emitted yet, as (alert_id, step); updates ``emitted``
    (alert_id -> [rule name, last state emitted]).

    An alert the series no longer supports (it would never have fired) gets a resolved step
    on the newest day of the series.
    """
    out: list[tuple[str, Step]] = []
    desired: dict[str, list[Step]] = {}
    for step in evaluate(rule, series):
        desired.setdefault(alert_id(rule.name, scope, step.fired_day), []).append(step)
    for aid, steps in desired.items():
        last = emitted.get(aid, [rule.name, None])[1]
        final = steps[-1].state
        todo = steps if last is None else ([steps[-1]] if last != final else [])
        out.extend((aid, step) for step in todo)
        emitted[aid] = [rule.name, final]
    for aid, (name, last) in list(emitted.items()):
        if name == rule.name and aid not in desired and last == "firing" and series:
            day, value, _ = series[-1]
            out.append((aid, Step("resolved", day, day, value)))
            emitted[aid] = [name, "resolved"]
    return out
