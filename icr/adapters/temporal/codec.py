"""Payload encryption: personal data (login ids, users' details, providers' messages) never
sits in Temporal in plaintext.

Every payload the engine's clients and workers write is encrypted with AES-256-GCM before it
leaves the process, and failure messages with it (they can quote what was refused). Each
encrypted payload names the key that encrypted it, so keys rotate without breaking old
histories: a new key encrypts from now on, retired keys stay listed to decrypt what they
wrote. A payload that is not encrypted (sent by a caller that has no key) is read as it is.
Search attributes and workflow ids are not payloads: they hold no personal data by design.

A worker decodes what outside callers send (a start, a signal, an update) leniently: a payload
it cannot decode reaches the workflow as an `Undecodable` marker, which the workflow refuses,
instead of failing every workflow task of that certificate (anyone who may signal could
otherwise wedge one with a payload labelled encrypted). The engine's own payloads (activity
inputs and results, on the worker; everything the client reads) keep the strict decode: one
that does not decrypt is a missing key, and fails until the key is listed again.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    PayloadConverter,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from icr.domain.models import Undecodable
from workflows.clock import StaleClockError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
# What a worker's lenient decode puts in place of a payload it could not decode; its data is
# the reason, in a line.
UNDECODABLE = b"binary/undecodable"
_REASON_MAX_CHARS = 200
_NONCE_BYTES = 12
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class PayloadKeyError(ValueError):
    """The configured keys cannot be used (the message never quotes key material)."""


@dataclass(frozen=True)
class PayloadKeys:
    """The keys the codec knows, by id, and the one that encrypts new payloads."""

    current: str
    keys: dict[str, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise PayloadKeyError(f"the current key id {self.current!r} is not among the keys "
                            f"({', '.join(sorted(self.keys)) or 'none'})")

    @staticmethod
    def parse(text: str, current: str | None = None) -> PayloadKeys:
        """`id:base64key,id:base64key` (32-byte keys); the first encrypts unless `current` says."""
        keys: dict[str, bytes] = {}
        for n, item in enumerate((part.strip() for part in text.split(",") if part.strip()), start=1):
            key_id, sep, encoded = item.partition(":")
            if not sep or not _KEY_ID_PATTERN.fullmatch(key_id):
                raise PayloadKeyError(f"key {n} is not `id:base64key` with an id of letters, digits, '.', '_' "
                                "or '-'")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise PayloadKeyError(f"key {key_id!r} is not valid base64") from None
            if len(key) != 32:
                raise PayloadKeyError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
            if key_id in keys:
                raise PayloadKeyError(f"key id {key_id!r} is listed twice")
            keys[key_id] = key
        if not keys:
            raise PayloadKeyError("no key given")
        return PayloadKeys(current or next(iter(keys)), keys)

    @staticmethod
    def generate(key_id: str = "k1") -> PayloadKeys:
        if not _KEY_ID_PATTERN.fullmatch(key_id):
            raise PayloadKeyError(f"key id {key_id!r} must be 1 to 64 letters, digits, '.', '_' or '-'")
        return PayloadKeys(key_id, {key_id: AESGCM.generate_key(bit_length=256)})

    def format(self) -> str:
        """The `parse` form, current key first."""
        ordered = [self.current, *sorted(k for k in self.keys if k != self.current)]
        return ",".join(f"{k}:{base64.b64encode(self.keys[k]).decode()}" for k in ordered)

    def __repr__(self) -> str:  # never print key material
        return f"PayloadKeys(current={self.current!r}, ids={sorted(self.keys)!r})"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: PayloadKeys) -> None:
        self._current = keys.current
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            # The key id is authenticated too: a payload cannot be relabelled to another key.
            data = cipher.encrypt(nonce, payload.SerializeToString(), self._current.encode())
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
                                   data=nonce + data))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written by a caller without a key
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                # Quoted cut: a forged payload's key id can be of any length.
                raise ValueError(f"payload encrypted with key {key_id[:64]!r}, which this process does not "
                                 "have: keep retired keys listed in ICR_PAYLOAD_KEYS")
            try:
                plain = cipher.decrypt(payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:], key_id.encode())
            except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
                raise ValueError(f"payload encrypted with key {key_id!r} failed authentication") from None
            decoded.append(Payload.FromString(plain))
        return decoded


class MessageCodec(PayloadCodec, WithSerializationContext):
    """A worker's codec: `codec`'s strict decode, except in a workflow's own context (its
    start, signals, updates and queries: what outside callers send), where a payload that
    does not decode becomes an UNDECODABLE marker for the workflow to refuse. Activity inputs
    and results are decoded in an activity's context: strictly."""

    def __init__(self, codec: PayloadCodec, lenient: bool = False) -> None:
        self._codec = codec
        self._lenient = lenient

    def with_context(self, context: SerializationContext) -> MessageCodec:
        lenient = isinstance(context, WorkflowSerializationContext)
        return self if lenient == self._lenient else MessageCodec(self._codec, lenient)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._codec.encode(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self._lenient:
            return await self._codec.decode(payloads)
        decoded = []
        for payload in payloads:
            try:
                decoded.extend(await self._codec.decode([payload]))
            except Exception as err:  # whatever a forged payload provokes: the workflow refuses it
                decoded.append(Payload(metadata={"encoding": UNDECODABLE},
                                       data=str(err)[:_REASON_MAX_CHARS].encode()))
        return decoded


class MessagePayloadConverter(PydanticPayloadConverter, WithSerializationContext):
    """A worker's payload converter: pydantic's, except in a workflow's own context, where a
    payload that does not convert (the codec's UNDECODABLE marker, an unknown encoding, not
    JSON, not the message's shape) becomes `Undecodable` instead of failing the workflow task
    (a start) or being dropped unseen (a signal: the SDK drops it with only a log line)."""

    lenient = False

    def with_context(self, context: SerializationContext) -> MessagePayloadConverter:
        lenient = isinstance(context, WorkflowSerializationContext)
        if lenient == self.lenient:
            return self
        converter = MessagePayloadConverter()
        converter.lenient = lenient
        return converter

    def from_payloads(self, payloads: Sequence[Payload], type_hints: list[type] | None = None) -> list[Any]:
        if not self.lenient:
            return super().from_payloads(payloads, type_hints)
        hints: list[type | None] = list(type_hints) if type_hints and len(type_hints) == len(payloads) \
            else [None] * len(payloads)
        values: list[Any] = []
        for payload, hint in zip(payloads, hints, strict=True):
            encoding = payload.metadata.get("encoding", b"")
            if encoding == UNDECODABLE:
                values.append(Undecodable(payload.data.decode(errors="replace")[:_REASON_MAX_CHARS]))
                continue
            try:
                values.extend(super().from_payloads([payload], None if hint is None else [hint]))
            except Exception as err:  # any failure to convert: the workflow refuses it
                # The error's class only: its message can quote the payload's content.
                shown_encoding = encoding[:40].decode(errors="replace")
                values.append(Undecodable(f"payload of encoding {shown_encoding!r} does not convert to "
                                          f"{getattr(hint, '__name__', 'a value')} ({type(err).__name__})"))
        return values


class _RefusalsWithoutStack:
    """A rule's refusal (a benign ApplicationError) is an answer, not a fault: it reaches the
    caller (the Web UI's Send an Update, the command line) as its message alone, without the
    worker's Python stack. So does a stale clock's (workflows/clock.py), never encoded."""

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        super().to_failure(exception, payload_converter, failure)  # type: ignore[misc]
        if isinstance(exception, StaleClockError):
            # Times and event numbers only, left readable so that a caller whose query met
            # one knows to ask again (docs/contract.md, status).
            failure.ClearField("encoded_attributes")
            failure.message, failure.stack_trace = str(exception), ""
            return
        if not (isinstance(exception, ApplicationError) and exception.category == ApplicationErrorCategory.BENIGN):
            return
        failure.stack_trace = ""
        if failure.HasField("encoded_attributes"):  # not yet through the codec: plain JSON here
            [attributes] = payload_converter.from_payloads([failure.encoded_attributes])
            attributes["stack_trace"] = ""
            failure.encoded_attributes.CopyFrom(payload_converter.to_payloads([attributes])[0])


class RefusalFailureConverter(_RefusalsWithoutStack, DefaultFailureConverter):
    pass


class EncodedRefusalFailureConverter(_RefusalsWithoutStack, DefaultFailureConverterWithEncodedAttributes):
    pass


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The engine's converter: pydantic models as JSON, encrypted when a codec is given, with
    failure messages encoded too, and refusals sent without a stack."""
    if codec is None:
        return dataclasses.replace(pydantic_data_converter, failure_converter_class=RefusalFailureConverter)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec,
                               failure_converter_class=EncodedRefusalFailureConverter)


def worker_data_converter(converter: DataConverter) -> DataConverter:
    """`converter` as a worker uses it: what outside callers send decodes leniently (see
    MessageCodec, MessagePayloadConverter); the engine's own payloads strictly."""
    codec = converter.payload_codec
    return dataclasses.replace(converter, payload_converter_class=MessagePayloadConverter,
                               payload_codec=None if codec is None else MessageCodec(codec))
