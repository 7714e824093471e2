"""Which threshold rule is in force for a service's metric type, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from exporter.config import Config
from exporter.config.services import Threshold
from exporter.domain.health import BUILTIN_RULES, NO_RULE, Rule

Key = tuple[str, str]
Origin = Literal["api", "push", "config", "builtin", "none"]


@dataclass(frozen=True)
class Override:
    """A rule set through the API: stored, versioned, and winning over the YAML.

    A rule of None records the override's removal: the tombstone keeps its version, so a
    replica that still holds an older version gives it up, and a later PUT outranks both.
    """

    rule: Rule | None
    version: int
    updated_at: datetime


class RuleBook:
    """Rules from the YAML and from the API; an override wins, then a push's own, then YAML."""

    def __init__(self, configured: dict[Key, Rule] | None = None) -> None:
        self.configured = dict(configured or {})
        self.overrides: dict[Key, Override] = {}
        self.generation = 0

    def rule_for(self, key: Key, pushed: Rule | None = None) -> tuple[Rule, Origin]:
        """The rule in force for ``key`` and its origin."""
        override = self.overrides.get(key)
        if override is not None and override.rule is not None:
            return override.rule, "api"
        return self.fallback(key, pushed)

    def fallback(self, key: Key, pushed: Rule | None = None) -> tuple[Rule, Origin]:
        """The rule for ``key`` when no override is in force: pushed, configured, built in."""
        if pushed is not None:
            return pushed, "push"
        rule = self.configured.get(key)
        if rule is not None:
            return rule, "config"
        builtin = BUILTIN_RULES.get(key[1])
        if builtin is not None:
            return builtin, "builtin"
        return NO_RULE, "none"

    def set_override(self, key: Key, override: Override) -> bool:
        """Install an override unless a newer version is already known; True if it changed."""
        current = self.overrides.get(key)
        if current is not None and current.version >= override.version:
            return False
        self.overrides[key] = override
        self.generation += 1
        return True

    def keys(self) -> set[Key]:
        """Every key that has a configured or overriding rule."""
        return set(self.configured) | {k for k, o in self.overrides.items() if o.rule is not None}

    def touched(self) -> set[Key]:
        """``keys()`` and the keys whose override was removed (their lines need re-rendering)."""
        return set(self.configured) | set(self.overrides)

    def active_override(self, key: Key) -> Override | None:
        """The override in force for ``key``, if one is (a removed one is not)."""
        override = self.overrides.get(key)
        return override if override is not None and override.rule is not None else None


def configured_rules(config: Config) -> dict[Key, Rule]:
    """The rules written in the YAML, per (service, metric type); ``host:`` rules for "host"."""

    def rule(t: Threshold) -> Rule:
        w = None if t.warning is None else t.warning.value
        c = None if t.critical is None else t.critical.value
        return Rule(w, c, t.direction, t.for_)

    rules = {(s.name, mt): rule(t) for s in config.services for mt, t in s.thresholds.items()}
    rules |= {("host", mt): rule(t) for mt, t in config.host.thresholds.items()}
    return rules


def override_of(config: dict[str, Any], version: int, updated_at: datetime) -> Override:
    """A stored rule (``monitoring_dashboard_config.config`` of kind threshold) as an Override."""
    if config.get("removed") is True:
        return Override(None, version, updated_at)
    rule = Rule(
        config.get("warning"),
        config.get("critical"),
        config.get("direction", "above"),
        int(config.get("for", 1)),
    )
    return Override(rule, version, updated_at)


def rule_name(key: Key) -> str:
    """The stored name of a rule: ``<service>/<metric_type>``."""
    return f"{key[0]}/{key[1]}"


def key_of_name(name: str) -> Key:
    """(service, metric_type) of a stored rule name; metric types never contain '/'."""
    service, _, metric_type = name.rpartition("/")
    return service, metric_type


def rule_in_force(override: Override, pushed: Rule | None, rules: RuleBook, key: Key) -> Rule:
    """The rule for ``key`` given a stored override read just now (it beats the cached one)."""
    if override.rule is not None:
        return override.rule
    return rules.fallback(key, pushed)[0]
