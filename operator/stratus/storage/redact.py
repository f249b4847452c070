"""URIs as they may be shown: without the credentials a user put in them (userinfo) or the
query strings and fragments that carry presigned tokens. Pure and stdlib-only: the staging
container and the operator both use it."""

from __future__ import annotations

import re
import urllib.parse

HIDDEN = "***"
MIN_SECRET = 8
# A URI inside free text (an exception's message, a log line): a scheme, then anything up to
# whitespace or a quote, which no URI may hold unescaped, less the punctuation that ends a
# clause ("https://host/m.bin: 404").
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;)]")


def redact_uri(uri: str) -> str:
    """`uri` with its userinfo, query and fragment replaced by `***`; path and host kept."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:  # an unbalanced IPv6 bracket: nothing of it can be trusted to be safe
        return f"{uri.partition('://')[0]}://{HIDDEN}"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    query = HIDDEN if parts.query else ""
    fragment = HIDDEN if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact(text: str) -> str:
    """Every URI in `text` redacted."""
    return _URI.sub(lambda match: redact_uri(match.group()), text)


def mask(text: str, secrets: list[str]) -> str:
    """`text` with each of `secrets` (values too short to be a credential are left alone, or
    every "a" would go) replaced by `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, HIDDEN)
    return text
