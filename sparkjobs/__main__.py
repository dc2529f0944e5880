"""`python -m sparkjobs`: the same as the `sparkjobs` command."""

from sparkjobs.cli.main import run

run()
