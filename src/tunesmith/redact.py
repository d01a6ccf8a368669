"""Credentials never reach disk or the terminal: every writer and printer of a storage URL masks it here."""
from __future__ import annotations

import re

# query parameters that carry a secret in database URLs (libpq's password/sslpassword, tokens of cloud drivers)
SECRET_PARAMS = {"password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token", "api_key", "apikey"}


def mask_url(url: str | None) -> str | None:
    """The URL with its password shown as *** (user:***@host) and secret query values masked;
    None stays None. URLs SQLAlchemy cannot parse are masked by pattern, never returned as given."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy knows: mask what looks like user:password@
        masked = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
        return re.sub(r"(?i)([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&]*", r"\1***", masked)
    secret = {k: "***" for k in parsed.query if k.lower() in SECRET_PARAMS}
    if parsed.password is None and not secret:
        return url  # nothing to hide: keep the URL exactly as written
    if secret:
        parsed = parsed.update_query_dict(secret)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
