"""`sparkjobs doctor`: is this node, and the cluster it belongs to, in working order?

`checks` judges (pure functions), `observe` gathers the facts, `diagnose` runs both,
`report` prints the result and picks the exit code.
"""

from sparkjobs.doctor.checks import Finding, Status
from sparkjobs.doctor.diagnose import diagnose
from sparkjobs.doctor.report import Report

__all__ = ["Finding", "Report", "Status", "diagnose"]
