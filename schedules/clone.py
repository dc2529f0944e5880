"""A voice-clone job on the Qwen clone service, with the reference voice in voices/."""

from sparkjobs import clone, cron, job

job(
    "cloned-greeting",
    schedule=cron("30 7 * * 1-5", tz="Europe/Berlin"),
    params={"name": "team"},
    steps=[
        clone(
            "Good morning, {params.name}. The sparks are up and the queue is empty.",
            ref_audio="voices/narrator.wav",
            ref_text="Hello from spark two. This is the reference voice for the clone example.",
            service="clone",
        )
    ],
    description="Weekday greeting in the cloned reference voice (spark2).",
)
