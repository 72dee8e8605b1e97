"""The one description of each user setting of a config: written on its dataclass field.

``setting(default, ...)`` makes a dataclass field that carries a :class:`Setting`: the range or
choices the config's ``validate()`` checks (:func:`check_values`), and the step, tooltip and
optional flag of the node input that shows it (``nodes/inputs.py`` turns a field into its ComfyUI
input). So a range is written once, on the field. Pure Python: no ComfyUI here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

_KEY = "precisecache_setting"


@dataclass(frozen=True)
class Setting:
    """What one setting allows and how its node input shows it.

    A number lies in ``low``..``high`` (``low_open``: ``low`` itself excluded; ``off``: one more
    allowed value below the range, e.g. 0 = off); it is an integer when its default is one. Text is
    one of ``choices``. ``note`` ends the out-of-range message (what the numbers mean). A tuple
    setting is one node input per item: ``items`` holds each item's (input name, tooltip), every item
    obeys the range, and ``tooltip`` is unused. ``step``, ``tooltip`` and ``optional`` are the node
    input's.
    """

    tooltip: str
    integer: bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    off: float | None = None
    choices: tuple[str, ...] = ()
    step: float | None = None
    optional: bool = False
    note: str = ""
    items: tuple[tuple[str, str], ...] = ()

    @property
    def widget_min(self) -> float | None:
        """The node input's min: the off value, else ``low`` (one step above it when ``low`` is excluded)."""
        if self.off is not None:
            return self.off
        return self.low + self.step if self.low_open else self.low

    def check(self, name: str, value: Any) -> None:
        """Raise a ValueError naming ``name`` and what is allowed, unless ``value`` is allowed."""
        if self.items:
            if not isinstance(value, (tuple, list)) or len(value) != len(self.items):
                raise ValueError(f"{name} needs {len(self.items)} values "
                                 f"({', '.join(n for n, _ in self.items)}), got {value!r}")
            for (item_name, _), item in zip(self.items, value):
                self._check_one(item_name, item)
        else:
            self._check_one(name, value)

    def _check_one(self, name: str, value: Any) -> None:
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"{name} = {value!r} is not allowed: choose one of {self.choices}")
        elif self.low is not None and not self._allows(value):
            allowed = (f"integers {self.low}..{self.high}" if self.integer else
                       f"{'(' if self.low_open else '['}{self.low}, {self.high}]")
            raise ValueError(f"{name} = {value!r} is out of range: allowed {allowed}"
                             f"{' ' + self.note if self.note else ''}")

    def _allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if value == self.off:
            return True
        above_low = value > self.low if self.low_open else value >= self.low
        return above_low and value <= self.high  # NaN fails every comparison


def setting(default: Any, tooltip: str, *, items: tuple[tuple[str, str], ...] = (), **spec: Any) -> Any:
    """A dataclass field with ``default`` that carries its :class:`Setting` (``spec``: its other fields)."""
    integer = isinstance(default[0] if items else default, int) and not isinstance(default, bool)
    return field(default=default, metadata={_KEY: Setting(tooltip, integer, items=items, **spec)})


def settings_of(config_type: type) -> dict[str, Setting]:
    """The settings of a config dataclass by field name, in field order (fields without one left out)."""
    return {f.name: f.metadata[_KEY] for f in fields(config_type) if _KEY in f.metadata}


def check_values(config_type: type, values: Mapping[str, Any]) -> None:
    """Check each value of ``values`` (by field name; None: not known yet, skipped) against its setting."""
    specs = settings_of(config_type)
    for name, value in values.items():
        if value is not None:
            specs[name].check(name, value)
