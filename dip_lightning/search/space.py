"""A search space from Hydra's sweep syntax: ``key=interval(a, b)`` (float, uniform),
``key=tag(log, interval(a, b))`` (float, log-uniform), ``key=tag(int, interval(a, b))`` (int),
``key=range(a, b[, step])`` (int or float grid, ``b`` excluded as in Python) and
``key=choice(x, y, …)`` (categorical). Any key works, ``++net.…`` / ``++method.…`` included.
"""
from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


class Param:
    """One searched key: its distribution, and how a sampled value is written back as an override."""

    def __init__(self, override: Override):
        self.key = override.get_key_element()  # with its +/++ prefix, as the user wrote it
        self.name = self.key.lstrip("+~")
        self.as_override: dict[Any, str] = {}
        value = override.value()
        if isinstance(value, ChoiceSweep):
            encoded = list(override.sweep_iterator(transformer=Transformer.encode))
            self.as_override = dict(zip(encoded, override.sweep_string_iterator()))
            self.distribution: BaseDistribution = CategoricalDistribution(encoded)
        elif isinstance(value, RangeSweep):
            start, stop, step = value.start, value.stop, value.step
            n = int((stop - start) // step)
            last = start + n * step
            last = last - step if last >= stop else last  # Hydra's stop is excluded, Optuna's high included
            if all(isinstance(v, int) for v in (start, stop, step)):
                self.distribution = IntDistribution(int(start), int(last), step=int(step))
            else:
                self.distribution = FloatDistribution(float(start), float(last), step=float(step))
        elif isinstance(value, IntervalSweep):
            log = "log" in value.tags
            if "int" in value.tags:
                self.distribution = IntDistribution(int(value.start), int(value.end), log=log)
            else:
                self.distribution = FloatDistribution(float(value.start), float(value.end), log=log)
        else:
            raise ValueError(f"{override.input_line}: a search parameter is interval(…), tag(log, interval(…)), "
                             f"range(…) or choice(…)")

    def override(self, value: Any) -> str:
        """``key=value`` for a sampled value (a choice as the user wrote it)."""
        return f"{self.key}={self.as_override.get(value, value)}"


def parse_space(params: dict[str, str], arguments: list[str]) -> tuple[list[Param], list[str]]:
    """The searched parameters (the config's ``params``, then sweeps on the command line, which win)
    and the fixed overrides (the command line's other arguments)."""
    parser = OverridesParser.create()
    searched: dict[str, Param] = {}
    fixed: dict[str, str] = {}
    for ov in parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items()]):
        searched[ov.get_key_element().lstrip("+~")] = Param(ov)
    for ov in parser.parse_overrides(list(arguments)):
        name = ov.get_key_element().lstrip("+~")
        if ov.is_sweep_override():
            searched[name] = Param(ov)
            fixed.pop(name, None)
        else:
            fixed[name] = ov.input_line
            searched.pop(name, None)
    return list(searched.values()), list(fixed.values())
