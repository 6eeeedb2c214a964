"""Where the engine's secrets come from: payload keys and the codec server's token, from
settings, or on the embedded default made once and kept owner-only in the data directory."""

from __future__ import annotations

import os
import secrets

import structlog
from temporalio.converter import PayloadCodec

from icr.adapters.temporal.codec import EncryptionCodec, PayloadKeyError, PayloadKeys
from icr.runtime.settings import ConfigurationError, Settings

__all__ = ["ConfigurationError", "codec_settings", "payload_keys"]

log = structlog.get_logger(__name__)


def _secret_file(path: os.PathLike[str] | str, make: str) -> str:
    """Read a secret kept in the data directory, writing `make` there (owner-only) first
    when it does not exist yet; concurrent first starts agree on one value."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(make)
    with open(path) as f:
        return f.read().strip()


def payload_keys(settings: Settings, *, embedded: bool) -> PayloadKeys | None:
    """The payload keys from settings; on the embedded default, a key made once and kept in
    the data directory. None only when encryption is switched off on purpose."""
    if not settings.payload_encryption:
        return None  # the worker says so once at start
    text = settings.payload_keys.get_secret_value() if settings.payload_keys else None
    if text is None:
        if not embedded:
            raise ConfigurationError(
                "ICR_PAYLOAD_KEYS is not set: with a real Temporal server the engine encrypts payloads "
                "with keys you give it (`id:base64key,...`; make one with `./run starter make-key`), "
                "or set ICR_PAYLOAD_ENCRYPTION=false to store them in plaintext on purpose")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        text = _secret_file(settings.data_dir / "payload-keys", PayloadKeys.generate("local1").format())
    try:
        return PayloadKeys.parse(text, settings.payload_key_id)
    except PayloadKeyError as err:
        raise ConfigurationError(f"ICR_PAYLOAD_KEYS: {err}") from None


def codec_settings(settings: Settings, *, embedded: bool) -> tuple[PayloadCodec | None, str, set[str]]:
    """The codec server's codec, token and allowed origins."""
    keys = payload_keys(settings, embedded=embedded)
    codec = EncryptionCodec(keys) if keys else None
    if settings.codec_token is not None:
        token = settings.codec_token.get_secret_value()
    elif embedded:
        token = _secret_file(settings.data_dir / "codec-token", secrets.token_urlsafe(24))
    else:
        raise ConfigurationError("ICR_CODEC_TOKEN is not set: the codec server refuses to run without one")
    origins = {o.strip() for o in (settings.codec_cors_origins or "").split(",") if o.strip()} or {
        f"http://127.0.0.1:{settings.ui_port}", f"http://localhost:{settings.ui_port}"}
    return codec, token, origins
