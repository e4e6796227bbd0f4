"""A fixed-seed slice of bench/fuzz.py: generated bad files, hostile model/OOD/checkpoint files and
flag values through every command, with what must never happen counted."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from fuzz import run_cases  # noqa: E402


def test_fuzz_slice_never_crashes_loses_files_or_writes_garbage(tmp_path):
    result = run_cases(40, seed=1, work=tmp_path)
    assert result["problems"] == []
    assert result["tracebacks"] == result["bad_exit_codes"] == 0
    assert result["inputs_changed"] == result["non_finite_outputs_written"] == 0
    assert set(result["by_kind"]) >= {"image", "model", "flag"}
