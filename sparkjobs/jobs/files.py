"""Loading the job files of `schedules_dir`: execute each, collect its jobs, check them.

Every `*.py` file directly in the folder is executed (files whose names start with
`_` are helpers and are not), as the module `<folder>.<file>` with the folder's
parent on `sys.path`, so a custom step names its function as
`schedules.briefing:summarize`. A broken file is reported with its file, line and
fix; the other files load as usual.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkjobs.jobs import define as jobs_api
from sparkjobs.jobs.check import check_job
from sparkjobs.jobs.define import Job, collecting
from sparkjobs.jobs.importing import ensure_importable

if TYPE_CHECKING:
    from sparkjobs.config import Config

_UNEXPECTED = re.compile(r"(\w+)(?:\.__init__)?\(\) got an unexpected keyword argument '(\w+)'")
# The callables of the job API, by the name Python's TypeError gives them.
_API: dict[str, Any] = {
    "job": jobs_api.job,
    "cron": jobs_api.cron,
    "every": jobs_api.every,
    "ChatStep": jobs_api.ChatStep,
    "SpeakStep": jobs_api.SpeakStep,
    "CloneStep": jobs_api.CloneStep,
    "CustomStep": jobs_api.CustomStep,
    "custom": jobs_api.custom,
}
_STEP_NAMES = {"ChatStep": "chat", "SpeakStep": "speak", "CloneStep": "clone"}


@dataclass(frozen=True)
class Loaded:
    """What a folder of job files holds: good jobs, and problems by file."""

    jobs: tuple[Job, ...]
    problems: dict[Path, list[str]] = field(default_factory=dict)

    def by_name(self) -> dict[str, Job]:
        return {job.name: job for job in self.jobs}


def job_files(folder: Path) -> list[Path]:
    """The job files in `folder`, in name order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when any Python file under `folder` changes (helpers included)."""
    found = []
    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted while we looked
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def load_jobs(config: Config) -> Loaded:
    """Execute every job file of `config.schedules_dir`, and check the jobs found.

    A file that fails to execute contributes no jobs; a job that fails its checks
    is left out while the file's other jobs stay. Job names must be unique.
    """
    folder = config.schedules_dir.resolve()
    ensure_importable(config)
    package = folder.name if folder.name.isidentifier() else None
    _forget_modules(package)
    good: dict[str, Job] = {}
    problems: dict[Path, list[str]] = {}
    for path in job_files(folder):
        found, error = execute(path, package)
        if error:
            problems.setdefault(path, []).append(error)
            continue
        for job in found:
            issues = check_job(config, job)
            if job.name in good:
                issues.append(
                    f"{job.origin}: job name {job.name!r} is already defined at "
                    f"{good[job.name].origin}; give one of them another name"
                )
            if issues:
                problems.setdefault(path, []).extend(issues)
            else:
                good[job.name] = job
    return Loaded(tuple(good.values()), problems)


def execute(path: Path, package: str | None) -> tuple[list[Job], str | None]:
    """Run one job file and return the jobs it defined, or the error that stopped it."""
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{package}.{stem}" if package else f"_sparkjobs_schedules.{stem}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        with collecting() as found:
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{exc.filename or path}:{exc.lineno or 0}"
        return [], f"{where}: syntax error: {exc.msg}; fix the Python syntax on that line"
    except Exception as exc:  # whatever a job file raises is reported
        sys.modules.pop(name, None)
        return [], _explain(path, exc)
    return list(found), None


def _explain(path: Path, exc: Exception) -> str:
    line = _line_in(path, exc)
    where = f"{path}:{line}"
    if isinstance(exc, jobs_api.JobDefinitionError):
        return str(exc)  # it names its own file and line
    if isinstance(exc, TypeError) and (match := _UNEXPECTED.search(str(exc))):
        return f"{where}: {_unknown_parameter(match.group(1), match.group(2))}"
    return f"{where}: {type(exc).__name__}: {exc}; fix that line (the whole file is skipped)"


def _unknown_parameter(function: str, given: str) -> str:
    target = _API.get(function)
    if target is None:
        return f"{function}() has no parameter {given!r}; check its spelling"
    known = [
        name
        for name in inspect.signature(target).parameters
        if name not in ("origin", "kind", "self", "options")
    ]
    if function in _STEP_NAMES:
        function = _STEP_NAMES[function]
        known = [name for name in known if name not in ("prompt", "text")]
    close = difflib.get_close_matches(given, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{function}() has no parameter {given!r}; {hint}known: {', '.join(known)}"


def _line_in(path: Path, exc: BaseException) -> int:
    """The line of `path` where `exc` passed through, innermost first."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and Path(frame.filename).resolve() == path.resolve():
            return frame.lineno or 0
    return 0


def _forget_modules(package: str | None) -> None:
    """Drop cached job modules so that a reload executes the files' new contents."""
    prefixes = ("_sparkjobs_schedules",) + ((package,) if package else ())
    for name in [n for n in sys.modules if n.split(".")[0] in prefixes]:
        del sys.modules[name]
