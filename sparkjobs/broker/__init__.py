"""The broker both sides stand on: the Celery app, Redis keys, publishing,
notices, the leader lock, and every private name of kombu and Celery."""
