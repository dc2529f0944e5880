"""`sparkjobs up`: everything on one machine as child processes that stop together:
the embedded broker and store, a worker per node, beat, Flower, the run page, and
simulators for the model servers that do not answer."""
