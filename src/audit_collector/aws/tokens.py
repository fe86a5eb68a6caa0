"""API tokens from Secrets Manager, through Powertools Parameters with a cache.

The cache (``max_age``) keeps warm invocations from calling Secrets Manager every five minutes, and
is short enough that a rotated secret is picked up within minutes, with no redeploy.
Nothing here ever puts a token value in a message.
"""

from __future__ import annotations

import json

from audit_collector.errors import ConfigError

SECRET_MAX_AGE_SECONDS = 300


class TokenError(ConfigError):
    """The token could not be read, or the secret does not hold one. Fix the secret; never retried."""


def parse_secret_value(value: str | bytes | None, secret_id: str) -> str:
    """The token from a secret: a plain string, or JSON ``{"token": "..."}``."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenError(f"secret {secret_id!r} is not UTF-8 text") from None
    text = (value or "").strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise TokenError(f"secret {secret_id!r} looks like JSON but does not parse") from None
        token = document.get("token") if isinstance(document, dict) else None
        if not isinstance(token, str):
            keys = sorted(document) if isinstance(document, dict) else []
            raise TokenError(f"secret {secret_id!r} is JSON without a string 'token' key (keys: {keys})")
        text = token.strip()
    if not text:
        raise TokenError(f'secret {secret_id!r} is empty: store the token as plain text or {{"token": "..."}}')
    if any(c.isspace() for c in text):
        raise TokenError(f"secret {secret_id!r} holds whitespace inside the token; store the token alone")
    return text


def load_token(secret_id: str, *, max_age: int = SECRET_MAX_AGE_SECONDS) -> str:
    """Read (or reuse from the cache) the secret and return its token."""
    from aws_lambda_powertools.utilities import parameters  # deferred: a bad payload never loads boto3

    try:
        value = parameters.get_secret(secret_id, max_age=max_age)
    except parameters.exceptions.GetParameterError as exc:
        cause = exc.__cause__ or exc
        raise TokenError(
            f"could not read secret {secret_id!r}: {type(cause).__name__}: {cause}. Check the secret exists "
            "and the function's role may call secretsmanager:GetSecretValue on it"
        ) from None
    return parse_secret_value(value, secret_id)
