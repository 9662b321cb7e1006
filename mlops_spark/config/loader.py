"""YAML -> typed, validated configuration.

A use case is one YAML file (e.g. ``conf/flights.yml``). It is layered as::

    <conf dir>/base.yml  <  the use-case file  <  <conf dir>/<env>.yml  <  --set / --set-replace

Mappings merge key by key; lists and scalars replace. ``--set key.path=value`` follows the
same rule (``--set model.params={maxIter: 50}`` keeps the file's other params);
``--set-replace key.path=value`` puts the value at the path whole, dropping whatever the
layers below (and earlier overrides) set there. Overrides apply in command-line order.
The result is validated by pydantic models that forbid unknown keys, and ``model.params``
against the estimator's MLlib params (`mlops_spark.config.estimators`), so a typo fails
before Spark starts, with the file that set the key, the key path and what was expected.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mlops_spark.config.app import AppConfig
from mlops_spark.config.estimators import estimator_param_problems, unknown_estimator_params
from mlops_spark.errors import ConfigError

_Path = tuple[str, ...]


def _deep_merge(
    base: dict[str, Any],
    layer: Mapping[str, Any],
    origin: str,
    where: dict[_Path, str],
    prefix: _Path = (),
) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value, origin, where, path)
        else:
            out[key] = value
            where[path] = origin
            _mark_children(value, origin, where, path)
    return out


def _replace_at(
    base: Mapping[str, Any], parts: list[str], value: Any, origin: str, where: dict[_Path, str]
) -> dict[str, Any]:
    """``base`` with ``value`` at the key path ``parts``, nothing of the old value kept."""
    path = tuple(parts)
    for key in [k for k in where if k[: len(path)] == path]:
        del where[key]
    where[path] = origin
    _mark_children(value, origin, where, path)

    def put(node: Mapping[str, Any], rest: list[str]) -> dict[str, Any]:
        out = dict(node)
        if len(rest) == 1:
            out[rest[0]] = value
        else:
            child = out.get(rest[0])
            out[rest[0]] = put(child if isinstance(child, Mapping) else {}, rest[1:])
        return out

    return put(base, parts)


def _mark_children(value: Any, origin: str, where: dict[_Path, str], prefix: _Path) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            where[(*prefix, str(k))] = origin
            _mark_children(v, origin, where, (*prefix, str(k)))


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: Path) -> Any:
    """Expand ${VAR} and ${VAR:-default} in string values (cluster overlays use them)."""
    if isinstance(value, dict):
        return {k: _expand_env(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (used as ${{{name}}})")

    return _ENV_REF.sub(sub, value)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return _expand_env(data, path)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Override:
    """One command-line override ``key.path=value``: merged into the layers below
    (``--set``, the default) or put at the path whole (``--set-replace``)."""

    text: str
    replace: bool = False

    @property
    def flag(self) -> str:
        return "--set-replace" if self.replace else "--set"

    def __str__(self) -> str:
        return f"{self.flag} {self.text}"


def parse_override(text: str, flag: str = "--set") -> tuple[list[str], Any]:
    """Parse one ``--set a.b.c=value``; the value is read as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"{flag} {text!r}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def config_layers(conf: str | Path, env: str | None) -> list[Path]:
    """The files that make up a use case, lowest precedence first."""
    conf_path = Path(conf)
    layers: list[Path] = []
    base = conf_path.parent / "base.yml"
    if base.exists() and base.resolve() != conf_path.resolve():
        layers.append(base)
    layers.append(conf_path)
    if env:
        env_path = conf_path.parent / f"{env}.yml"
        if not env_path.exists():
            available = sorted(p.stem for p in conf_path.parent.glob("*.yml") if p.stem not in ("base",))
            raise ConfigError(
                f"{env_path}: no overlay for environment {env!r} (files in "
                f"{conf_path.parent}: {', '.join(available)})"
            )
        layers.append(env_path)
    return layers


def load_config(
    conf: str | Path, env: str | None = None, overrides: Iterable[str | Override] = ()
) -> AppConfig:
    """Read, layer and validate a use case's config. Raises ConfigError on any problem.

    ``overrides`` apply in order; a plain string is a ``--set`` (merge) override."""
    return load_config_with_origins(conf, env, overrides)[0]


def load_config_with_origins(
    conf: str | Path, env: str | None = None, overrides: Iterable[str | Override] = ()
) -> tuple[AppConfig, dict[_Path, str]]:
    """`load_config`, and which layer (file or override) set each key path."""
    merged: dict[str, Any] = {}
    where: dict[_Path, str] = {}
    for path in config_layers(conf, env):
        merged = _deep_merge(merged, _read_yaml(path), str(path), where)
    for item in overrides:
        override = item if isinstance(item, Override) else Override(item)
        parts, value = parse_override(override.text, override.flag)
        if override.replace:
            merged = _replace_at(merged, parts, value, str(override), where)
        else:
            merged = _deep_merge(merged, _nest(parts, value), str(override), where)
    return validate_config(merged, where, default_origin=str(conf)), where


def render_with_origins(config: AppConfig, where: Mapping[_Path, str]) -> str:
    """Every resolved value as ``key.path: value  # origin``: the file or override that set
    it, or ``default`` (the framework's own default). Lists and empty mappings are one value."""
    lines: list[str] = []

    def walk(node: Any, path: _Path) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, (*path, str(key)))
            return
        text = json.dumps(node, default=str)
        lines.append(f"{'.'.join(path)}: {text}  # {where.get(path, 'default')}")

    walk(resolved_dict(config), ())
    return "\n".join(lines)


def validate_config(
    data: Mapping[str, Any], where: Mapping[_Path, str] | None = None, default_origin: str = "config"
) -> AppConfig:
    try:
        config = AppConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where or {}, default_origin)) from None
    problems = _estimator_problems(config, where or {}, default_origin)
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def _estimator_problems(config: AppConfig, where: Mapping[_Path, str], default_origin: str) -> list[str]:
    """model.params and the tuning search space against the estimator's MLlib Params."""
    model = config.model
    found: dict[_Path, str] = {
        ("model", "params", name): problem
        for name, problem in estimator_param_problems(model.estimator, model.params).items()
    }
    space = model.tuning.search_space if model.tuning else {}
    for name, problem in unknown_estimator_params(model.estimator, list(space)).items():
        found[("model", "tuning", "search_space", name)] = problem
    for name, dim in space.items():
        if dim.kind == "choice" and ("model", "tuning", "search_space", name) not in found:
            for option in dim.options:
                wrong = estimator_param_problems(model.estimator, {name: option})
                if wrong:
                    found[("model", "tuning", "search_space", name, "options")] = wrong[name]
                    break
    return [f"{_origin(loc, where, default_origin)}: {'.'.join(loc)}: {msg}" for loc, msg in found.items()]


def _origin(loc: _Path, where: Mapping[_Path, str], default_origin: str) -> str:
    """The layer (file or override) that set ``loc`` or its nearest parent."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in where:
            return where[loc[:n]]
    return default_origin


def _describe(exc: ValidationError, where: Mapping[_Path, str], default_origin: str) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        origin = _origin(loc, where, default_origin)
        key = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            msg = f"{msg} (got {err['input']!r})"
        problems.append(f"{origin}: {key}: {msg}")
    return "; ".join(problems)


def resolved_dict(config: AppConfig) -> dict[str, Any]:
    """The config as plain data (dates as ISO strings), for logging and reproduction."""
    return config.model_dump(mode="json", by_alias=True)
