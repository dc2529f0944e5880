"""The morning briefing: Gemma on spark1 writes it, Orpheus on spark2 reads it aloud."""

from sparkjobs import chat, cron, job, speak

job(
    "morning-briefing",
    schedule=cron("0 7 * * 1-5", tz="Europe/Berlin"),
    params={"city": "Berlin"},
    steps=[
        chat(
            "Write a short, friendly morning briefing for {params.city} "
            "on {slot:%A %d %B}. Four sentences, no lists.",
            service="gemma",
        ),
        speak("{previous}", service="orpheus", voice="tara"),
    ],
    misfire="run_once",
    description="Weekday briefing, written on spark1 and spoken on spark2.",
)
