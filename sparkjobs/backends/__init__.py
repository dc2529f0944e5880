"""Clients of the model servers: OpenAI-compatible (vLLM), Ollama, Orpheus, Qwen clone."""

from sparkjobs.backends.factory import client_for
from sparkjobs.backends.http import Health, ServerClient
from sparkjobs.backends.ollama import OllamaClient
from sparkjobs.backends.openai import Delta, OpenAIClient, TextResult
from sparkjobs.backends.orpheus import OrpheusClient
from sparkjobs.backends.qwen_clone import QwenCloneClient, Reference
from sparkjobs.backends.speech import SpeechResult
from sparkjobs.backends.timings import Timings, real_time_factor

__all__ = [
    "Delta",
    "Health",
    "OllamaClient",
    "OpenAIClient",
    "OrpheusClient",
    "QwenCloneClient",
    "Reference",
    "ServerClient",
    "SpeechResult",
    "TextResult",
    "Timings",
    "client_for",
    "real_time_factor",
]
