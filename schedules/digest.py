"""An hourly inference cron on Gemma: a short digest, stored as the run's result."""

from sparkjobs import chat, cron, job

job(
    "hourly-digest",
    schedule=cron("0 * * * *", tz="UTC"),
    params={"topic": "the state of the home lab"},
    steps=[
        chat(
            "Write a three-line digest about {params.topic} for {slot:%H:%M} UTC.",
            service="gemma",
            max_tokens=200,
        )
    ],
    misfire="run_once",  # after downtime, one digest for the newest missed hour
    description="Hourly digest on spark1 (vLLM, Gemma).",
)
