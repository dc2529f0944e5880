"""The `sparkjobs` command line: thin Typer modules over the library."""
