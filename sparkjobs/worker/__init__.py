"""A node's worker process: its Celery consumer and thread pool, heartbeat,
reconciler and housekeeping."""
