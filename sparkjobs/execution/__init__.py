"""Executing runs: what a worker does with a step, from its SQL row to its output.

`plan` turns a job's steps into the specs stored with each step, `templates` renders
prompts, `sentences` splits long text, `wavjoin` joins speech pieces, `outputs` calls
the model servers, `state` reads and writes the SQL a step needs (`piece_state` that
of the pieces of long speech), `dispatch` publishes the next message and `retry`
decides when to try again. The Celery tasks that tie them together live in the
`workers` package.
"""
