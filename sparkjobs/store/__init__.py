"""The SQL store, the system of record: runs, steps, attempts, results and artifacts.

`models` holds the tables, `engine` makes engines and sessions, `schema` runs the
migrations, `runs` writes, `queries` reads, `artifacts` keeps a node's blobs and
`prune` applies retention. Import from those modules; this package imports nothing
heavy by itself.
"""
