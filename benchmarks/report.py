"""Results of one benchmark run: named figures, targets checked against them, and the JSON + Markdown files."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    """One measured step: its figures (name -> value), free-text notes, and an error if it could not run."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass
class Results:
    machine: dict[str, Any]
    parameters: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    total_seconds: float = 0.0

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def figure(self, step: str, name: str) -> Any:
        found = self.step(step)
        return None if found is None else found.figures.get(name)

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        json_path, markdown_path = folder / "results.json", folder / "results.md"
        json_path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        markdown_path.write_text(render_markdown(self))
        return json_path, markdown_path


def render_markdown(results: Results) -> str:
    lines = ["# Tidings benchmark results", ""]
    lines += ["## Machine", ""] + [f"- {k}: {v}" for k, v in results.machine.items()]
    lines += ["", "## Parameters", ""] + [f"- {k}: {v}" for k, v in results.parameters.items()]
    lines += ["", f"Total benchmark time: {results.total_seconds:.0f} s", "", "## Targets", ""]
    lines += ["| target | goal | measured | result |", "|---|---|---|---|"]
    verdict = {True: "met", False: "**missed**", None: "not measured"}
    lines += [f"| {t.name} | {t.goal} | {t.measured} | {verdict[t.met]} |" for t in results.targets]
    for step in results.steps:
        lines += ["", f"## {step.name}", ""]
        if step.error:
            lines.append(f"**Failed:** {step.error}")
        lines += [f"- {name}: {_format(value)}" for name, value in step.figures.items()]
        lines += [f"- note: {note}" for note in step.notes]
    return "\n".join(lines) + "\n"


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format(v)}" for k, v in value.items())
    return str(value)
