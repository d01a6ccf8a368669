"""From the YAML search space to Optuna suggestions and config overrides."""
from __future__ import annotations

from typing import Any

from tunesmith.config import ParamSpec, RunConfig, describe_fields
from tunesmith.errors import UserError


def check_space(space: dict[str, ParamSpec]) -> None:
    """Every key must be a config field; every condition must refer to an earlier parameter."""
    known = {key for key, _, _ in describe_fields(RunConfig)}
    seen: list[str] = []
    for key, spec in space.items():
        if key not in known or key.startswith("tune."):
            raise UserError(f"tune.space: {key!r} is not a config field that can be searched; "
                            "use keys such as train.learning_rate, train.method, train.lora.rank")
        for cond in (spec.when or {}):
            if cond not in seen:
                raise UserError(f"tune.space.{key}.when: {cond!r} must be a parameter listed before {key!r}")
        seen.append(key)


def suggest(trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample one configuration; conditional parameters are skipped when their condition is false."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.when and any(values.get(k) != v for k, v in spec.when.items()):
            continue
        if spec.type == "categorical":
            values[key] = trial.suggest_categorical(key, spec.choices)
        elif spec.type == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
        else:
            values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log,
                                              step=None if spec.log else spec.step)
    return values


def grid(space: dict[str, ParamSpec]) -> dict[str, list]:
    """The grid sampler's value lists; floats need a step (or use categorical choices)."""
    out = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            out[key] = list(spec.choices)
        elif spec.step is None and spec.type == "float":
            raise UserError(f"tune.space.{key}: the grid sampler needs a step for float ranges (or give choices)")
        else:
            n = int(round((spec.high - spec.low) / (spec.step or 1))) + 1
            vals = [spec.low + i * (spec.step or 1) for i in range(n)]
            out[key] = [int(v) for v in vals] if spec.type == "int" else vals
    return out


def overrides(values: dict[str, Any]) -> list[str]:
    """Config overrides (key=value) for fine_tune; values go through YAML like command-line overrides."""
    import yaml

    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in values.items()]
