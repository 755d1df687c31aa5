"""Identifiers a caller gives (a user id): text shown as is, in logs, reports and exports."""


def printable(text: str) -> str:
    """`text`, if every character is printable: no control characters, nor the other
    invisible ones (format characters, separators other than the space, surrogates)."""
    if not text.isprintable():
        raise ValueError("may hold only printable characters, no control characters")
    return text
