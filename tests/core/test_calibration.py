"""The Calibrate node's pure parts: input validation, the choice of a setting, the table."""
import math

import pytest

from precisecache_core.calibration import (CalibrationRow, choose, format_table, parse_speed_targets,
                                           plan_calibration)


def test_speed_targets_are_parsed_sorted_and_deduplicated():
    assert parse_speed_targets("1.5, 2, 2.5, 3, 4") == (1.5, 2.0, 2.5, 3.0, 4.0)
    assert parse_speed_targets(" 3x;2  2 ,1.5X ") == (1.5, 2.0, 3.0)
    assert parse_speed_targets("6") == (6.0,)


@pytest.mark.parametrize("text, message", [
    ("", "speed_targets is empty"),
    (" , ", "speed_targets is empty"),
    ("1.5, fast", "speed_targets: 'fast' is not a number"),
    ("1.0", r"speed_targets: 1.0 is out of range: allowed \[1.1, 6\]"),
    ("2, 7", r"speed_targets: 7 is out of range: allowed \[1.1, 6\]"),
    ("nan", "speed_targets: nan is out of range"),
    ("inf", "speed_targets: inf is out of range"),
    ("1.5 2 2.5 3 3.5 4 4.5 5 5.5", "speed_targets holds 9 targets: give 1 to 8"),
])
def test_bad_speed_targets_are_refused_naming_the_input_and_range(text, message):
    with pytest.raises(ValueError, match=message):
        parse_speed_targets(text)


@pytest.mark.parametrize("inputs, message", [
    ({"quality_floor_db": 5.0}, r"quality_floor_db = 5.0 is out of range: allowed \[10, 80\] dB"),
    ({"quality_floor_db": 81}, r"quality_floor_db = 81 is out of range"),
    ({"quality_floor_db": math.nan}, r"quality_floor_db = nan is out of range"),
    ({"preset_name": "../x"}, r"preset_name = '../x' is not allowed"),
    ({"steps": 8}, r"steps = 8 is out of range: allowed integers 9\.\.10000 \(schedules of 8 steps or fewer"),
    ({"speed_targets": "0.5"}, r"speed_targets: 0.5 is out of range"),
])
def test_plan_refuses_each_bad_input_by_name(inputs, message):
    good = {"speed_targets": "2, 3", "quality_floor_db": 35.0, "preset_name": "ok", "steps": 20}
    with pytest.raises(ValueError, match=message):
        plan_calibration(**{**good, **inputs})


def test_plan_accepts_an_empty_name_as_measure_only_and_skips_unknown_steps():
    plan = plan_calibration("2,1.5", 30, "  my preset ", None)
    assert plan.speed_targets == (1.5, 2.0) and plan.quality_floor_db == 30.0 and plan.preset_name == "my preset"
    assert plan_calibration("2", 30, "", 12).preset_name == ""


def _row(target, work, psnr, seconds=1.0):
    return CalibrationRow(target, seconds, work, psnr, 0.9, 3, 12)


def test_choice_is_the_most_work_saved_above_the_floor():
    rows = [_row(None, 1.0, math.inf, 2.0), _row(1.5, 1.5, 40.0), _row(2.0, 2.0, 36.0), _row(3.0, 2.9, 34.9),
            _row(4.0, 3.8, 31.0)]
    assert choose(rows, 35.0).speed_target == 2.0
    assert choose(rows, 34.9).speed_target == 3.0  # at the floor counts
    assert choose(rows, 45.0) is None
    assert choose(rows, 10.0).speed_target == 4.0


def test_choice_tie_breaks_on_psnr_then_lower_target_and_ignores_uncached():
    rows = [_row(None, 1.0, math.inf), _row(3.0, 2.5, 33.0), _row(4.0, 2.5, 33.0), _row(5.0, 2.5, 34.0)]
    assert choose(rows, 30.0).speed_target == 5.0
    rows[-1] = _row(5.0, 2.5, 33.0)
    assert choose(rows, 30.0).speed_target == 3.0
    assert choose([_row(None, 1.0, math.inf)], 10.0) is None
    assert choose([_row(None, 1.0, math.inf), _row(2.0, 1.0, math.inf)], 80.0).speed_target == 2.0  # identical run


def test_table_shows_every_run_the_choice_and_notes():
    rows = [_row(None, 1.0, math.inf, 2.0), _row(2.0, 1.96, 36.04, 1.0),
            CalibrationRow(4.0, 0.8, 3.1, 30.5, None, 8, 12, ("speed target 4x cannot be reached",))]
    text = format_table(rows, 35.0, rows[1], header=["head"], footer=["foot"])
    lines = text.splitlines()
    assert lines[0] == "head"
    assert lines[3] == "| uncached | – | 1.00x | 2.00 s | 1.00x | ∞ (identical) | 0.9000 | 3/12 | reference |"
    assert lines[4] == "| LFCache | 2x | 1.96x | 1.00 s | 2.00x | 36.04 dB | 0.9000 | 3/12 | yes (chosen) |"
    assert lines[5] == "| LFCache | 4x | 3.10x | 0.80 s | 2.50x | 30.50 dB | – | 8/12 | no |"
    assert lines[6].startswith("chosen: speed target 2x, the most work saved with PSNR ≥ 35 dB (36.04 dB")
    assert lines[7:] == ["foot", "notes:", "- 4x: speed target 4x cannot be reached"]
    none = format_table(rows, 40.0, None)
    assert "chosen: none — no speed target kept PSNR ≥ 40 dB (best: 36.04 dB at speed target 2x)" in none


def test_rows_are_json_safe():
    import json
    row = _row(None, 1.0, math.inf, 0.0)
    data = row.to_dict(1.0)
    assert data["psnr_db"] is None and data["identical"] and data["wall_speedup"] is None
    json.dumps(data, allow_nan=False)
