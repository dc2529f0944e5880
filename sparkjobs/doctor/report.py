"""The doctor's report: its exit code, a rich table for people and JSON for machines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkjobs.doctor.checks import Finding, Status

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_DOWN = 1
EXIT_UNREACHABLE = 3
_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.DOWN: "red"}


@dataclass(frozen=True)
class Report:
    """The findings about one host, and whether the broker or database was out of reach."""

    node: str | None
    findings: Sequence[Finding]
    unreachable: bool = False

    @property
    def exit_code(self) -> int:
        """3 when the broker or the database is unreachable, 1 when anything is down, else 0."""
        if self.unreachable:
            return EXIT_UNREACHABLE
        if any(f.status is Status.DOWN for f in self.findings):
            return EXIT_DOWN
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """`{"node", "ok", "exit_code", "findings": [{"name", "status", "detail", "fix"}]}`."""
        return {
            "node": self.node,
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "findings": [
                {"name": f.name, "status": f.status.value, "detail": f.detail, "fix": f.fix}
                for f in self.findings
            ],
        }

    def print(self, console: Console) -> None:
        """A table of the findings, then a fix for each one that is not ok."""
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"sparkjobs doctor on {self.node or 'an unidentified host'}")
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for finding in self.findings:
            style = _STYLE[finding.status]
            table.add_row(
                escape(finding.name), f"[{style}]{finding.status.value}[/]", escape(finding.detail)
            )
        console.print(table)
        for finding in self.findings:
            if finding.status is not Status.OK and finding.fix:
                console.print(f"fix {escape(finding.name)}: {escape(finding.fix)}")
        verdict = {EXIT_OK: "all is well", EXIT_DOWN: "something is down"}
        console.print(verdict.get(self.exit_code, "the broker or the database is unreachable"))
