"""Background synthesis: every text file dropped into <data_dir>/inbox is spoken once.

A custom step on Orpheus. It runs every minute, so `sparkjobs up` shows work within a
minute of starting: on the first run it creates the inbox with a welcome note and
reads it aloud. Spoken files move to inbox/spoken/, so each is read once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparkjobs import custom, every, job


def inbox_folder(params: Any) -> Path:
    """params.inbox, else the inbox in the data dir of this node's config."""
    if params.get("inbox"):
        return Path(params["inbox"]).expanduser()
    from sparkjobs import load_config

    return load_config(os.environ.get("SPARKJOBS_CONFIG")).data_dir / "inbox"


def speak_inbox(client: Any, params: Any, previous: Any) -> bytes | str:
    """Speak every new .txt file in the inbox, in name order, as one WAV."""
    from sparkjobs.backends.audio import encode_wav

    inbox = inbox_folder(params)
    if not inbox.exists():
        inbox.mkdir(parents=True)
        (inbox / "welcome.txt").write_text(
            "Welcome to sparkjobs. Drop a text file into this folder and I will read it."
        )
    done = inbox / "spoken"
    done.mkdir(exist_ok=True)
    pcm = b""
    for path in sorted(inbox.glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            pcm += client.speak(text, voice=params.get("voice") or None).pcm
        path.replace(done / path.name)  # moved only once it was spoken
    return encode_wav(pcm) if pcm else "the inbox is empty"


job(
    "inbox-reader",
    schedule=every(minutes=1),
    params={"inbox": "", "voice": "tara"},
    steps=[custom("schedules.inbox:speak_inbox", service="orpheus")],
    overlap="skip",  # a long file still being read: the next minute waits its turn
    description="Reads the text files dropped into the inbox (spark2, Orpheus).",
)
