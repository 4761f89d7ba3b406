"""The figures the reliability suite reports at the end of a session (and writes to JSON).

Tests add to one process-wide tally. Under pytest-xdist each worker hands its tally to the controller, which adds
them up (tests/conftest.py); the end-of-session summary prints the total and writes it to the suite's work directory.
`rows_lost` and `duplicates_delivered` are counted by the invariant checks, which also fail the test, so a
non-zero figure always comes with a failure that says where.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figures:
    subprocess_runs: int = 0
    runs_killed: int = 0
    crash_hook_kills: int = 0
    sigkill_kills: int = 0
    recovery_runs: int = 0
    faults_injected: int = 0
    bad_inputs_tried: int = 0
    unsafe_sql_refused: int = 0
    property_examples: int = 0
    rows_checked: int = 0
    rows_lost: int = 0
    duplicates_delivered: int = 0
    stale_members_left: int = 0  # mirror members the model no longer holds that stayed in the destination

    def summary_line(self) -> str:
        return (
            f"reliability: runs killed {self.runs_killed} (hooks {self.crash_hook_kills}, "
            f"SIGKILL {self.sigkill_kills}) of {self.subprocess_runs} subprocess runs, "
            f"recovery runs {self.recovery_runs}, faults injected {self.faults_injected}, "
            f"bad inputs tried {self.bad_inputs_tried}, unsafe SQL refused {self.unsafe_sql_refused}, "
            f"property examples {self.property_examples}, rows checked {self.rows_checked}, "
            f"rows lost {self.rows_lost}, duplicates delivered {self.duplicates_delivered}, "
            f"stale members left {self.stale_members_left}"
        )

    def any(self) -> bool:
        return bool(self.subprocess_runs or self.bad_inputs_tried or self.property_examples)

    def add(self, other: dict[str, int]) -> None:
        """Add another process's tally (an xdist worker's) to this one."""
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


FIGURES = Figures()
