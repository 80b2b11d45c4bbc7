"""The SMS keywords carriers require: STOP, START and HELP.

A message is a keyword only when it is nothing but the keyword (any case, surrounding spaces
ignored): "stop" opts out, "Please stop by tomorrow" is a message. START and its synonyms undo
a STOP; sent by a number that never stopped, they are ordinary messages (``YES`` is a common
answer). HELP is answered with who is sending, whoever asks.
"""

from __future__ import annotations

import enum


class Keyword(enum.StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


WORDS: dict[str, Keyword] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), Keyword.STOP),
    **dict.fromkeys(("START", "UNSTOP", "YES"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}
#: Suppression reasons a START lifts (a hard bounce or a manual block stays).
LIFTED_BY_START = ("stop", "unsubscribed")


def classify(body: str | None) -> Keyword | None:
    return WORDS.get((body or "").strip().upper())


def reply_text(template: str, brand: str, contact: str) -> str:
    # str.replace, not str.format: a brace in the configured text must not break the reply.
    return template.replace("{brand}", brand).replace("{contact}", contact)
