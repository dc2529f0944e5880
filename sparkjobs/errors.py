"""The one exception tree of sparkjobs, and the exit code each branch maps to.

SparkjobsError
├── ConfigError            bad cluster config (exit 2)
├── BadInput               bad command-line or API input (exit 2)
│   ├── UnknownService
│   ├── UnknownNode
│   ├── UnknownRun         a run or step id the store does not hold
│   └── UnknownArtifact    a sha256 the store does not hold (or not where asked)
├── AlreadyRunning         a second `up` on one data dir (exit 2)
├── SchemaBehind           the database needs `sparkjobs db upgrade` (exit 2)
├── Unreachable            broker, database or server not reachable (exit 3)
│   └── ArtifactUnavailable  no location of an artifact could deliver it (exit 3)
├── ArtifactError          an artifact could not be stored (exit 1)
│   ├── CorruptArtifact    bytes or a manifest that do not match their digest
│   └── DiskFull           no space left for the artifact; nothing partial is kept
└── ModelServerError       a model server answered badly
    ├── RetryableError     try again later (5xx, timeouts, refused connections...)
    │   ├── ServerUnreachable  no connection at all: the step waits for the server
    │   └── BadAudio       a 200 whose WAV is empty, malformed or implausible
    └── PermanentError     retrying cannot help (validation, unknown model)
        ├── UnknownModel   the server does not serve the model asked for
        ├── UnknownVoice   the server (or the config) does not know the voice
        └── ContextOverflow  the prompt and max_tokens do not fit the server's context
"""

from __future__ import annotations


class SparkjobsError(Exception):
    """Base of every error sparkjobs raises on purpose."""

    exit_code: int = 1


class ConfigError(SparkjobsError):
    """The cluster config is invalid; the message names the file, key, value and fix."""

    exit_code = 2


class BadInput(SparkjobsError):
    """Input from a person or a caller is invalid; nothing was queued or written."""

    exit_code = 2


class UnknownService(BadInput):
    """A task or command named a service the config does not define."""


class UnknownNode(BadInput):
    """A command named a node the config does not define."""


class UnknownRun(BadInput):
    """A command or caller named a run (or step) id that the store does not hold."""


class UnknownArtifact(BadInput):
    """A command or caller named an artifact (sha256) the store does not hold."""


class AlreadyRunning(SparkjobsError):
    """Another process already owns a resource that only one may hold."""

    exit_code = 2


class SchemaBehind(SparkjobsError):
    """The database schema is older than this code; `sparkjobs db upgrade` fixes it."""

    exit_code = 2


class Unreachable(SparkjobsError):
    """Infrastructure (broker, database) did not answer; the message says which and where."""

    exit_code = 3


class ArtifactUnavailable(Unreachable):
    """No location of an artifact delivered it: servers down, refusing, or all bad."""


class ArtifactError(SparkjobsError):
    """An artifact could not be fetched or stored on this side."""


class CorruptArtifact(ArtifactError):
    """Bytes (or a manifest) did not match the digest the store records; never stored."""


class DiskFull(ArtifactError):
    """The destination filesystem has no room for the artifact; no partial file is left."""


class ModelServerError(SparkjobsError):
    """A model server failed a request."""


class RetryableError(ModelServerError):
    """The failure is transient: the same request may succeed later."""


class PermanentError(ModelServerError):
    """The request itself is wrong: sending it again cannot succeed."""


class ServerUnreachable(RetryableError):
    """The server could not be reached at all (connection refused or timed out).

    The step waits for the server's health to come back, up to its wait deadline,
    rather than spending its retries on a server that is down or loading.
    """


class BadAudio(RetryableError):
    """A TTS server answered 200 with audio that is empty, malformed or too short.

    Retryable: the Orpheus front-end answers exactly this way while its completions
    backend is down, and the next attempt may find the backend back.
    """


class UnknownModel(PermanentError):
    """The server does not serve the model the request named."""


class UnknownVoice(PermanentError):
    """The voice is not one the server (or the service's config) offers."""


class ContextOverflow(PermanentError):
    """The prompt (with max_tokens) is longer than the server's context window."""
