"""One exception hierarchy with stable codes, rendered for people in English and Russian.

    HotlineError                 base; ``code`` is stable and documented in docs/errors.md
    ├── InputError               a person or a file gave us something we refuse (CLI, API, catalog)
    ├── WireError                bytes from the network or a peer are malformed or oversized
    ├── VerificationError        a signature, decryption, fingerprint or proof does not check out
    ├── ProtocolError            authentic and well-formed, but breaks the protocol (replay...)
    ├── NotFoundError            an id, peer or file that does not exist
    ├── TransportError           the peer could not be reached or answered badly
    ├── StorageError             the store refused or failed a read or a write
    └── ConfigError              a node directory, key file or config file is missing or broken

The CLI, the HTTP API and the console each catch ``HotlineError`` once and render
``code`` + ``message(lang)``; foreign exceptions are wrapped at the boundary (``raise from``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    # Input from a person or a file.
    INVALID_INPUT = "invalid_input"
    INVALID_MESSAGE = "invalid_message"
    # Bytes from the wire.
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    BAD_VERSION = "bad_version"
    # Verification.
    UNKNOWN_SENDER = "unknown_sender"
    WRONG_RECIPIENT = "wrong_recipient"
    DECRYPT_FAILED = "decrypt_failed"
    BAD_SIGNATURE = "bad_signature"
    WRONG_PURPOSE = "wrong_purpose"
    UNKNOWN_KEY = "unknown_key"
    HEADER_MISMATCH = "header_mismatch"
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    KEY_REVOKED = "key_revoked"
    KEY_EXPIRED = "key_expired"
    KEY_UNCONFIRMED = "key_unconfirmed"
    BAD_PROOF = "bad_proof"
    # Protocol.
    REPLAY_CONFLICT = "replay_conflict"
    SEQUENCE_REUSED = "sequence_reused"
    SEQUENCE_OUT_OF_RANGE = "sequence_out_of_range"
    RELEASE_REQUIRED = "release_required"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    UNKNOWN_MESSAGE = "unknown_message"
    INVALID_STATE = "invalid_state"
    MAILBOX_FULL = "mailbox_full"
    # Everything else.
    NOT_FOUND = "not_found"
    PEER_UNREACHABLE = "peer_unreachable"
    PEER_REFUSED = "peer_refused"
    TLS_PIN_MISMATCH = "tls_pin_mismatch"
    STORAGE_FAILED = "storage_failed"
    STANDBY = "standby"
    TRANSCRIPT_HELD = "transcript_held"
    BAD_CONFIG = "bad_config"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal"
    # Console and operator accounts.
    LOGIN_FAILED = "login_failed"
    ACCOUNT_LOCKED = "account_locked"
    CSRF_FAILED = "csrf_failed"
    FORBIDDEN = "forbidden"
    # Cyber referrals.
    STIX_INVALID = "stix_invalid"
    INVALID_TRANSITION = "invalid_transition"


# What a person reads. Keep both languages for every code (a test checks it).
MESSAGES: Mapping[ErrorCode, tuple[str, str]] = {
    ErrorCode.INVALID_INPUT: ("Invalid input", "Недопустимые входные данные"),
    ErrorCode.INVALID_MESSAGE: ("The message is not valid", "Сообщение недействительно"),
    ErrorCode.TOO_LARGE: ("Too large", "Слишком большой объём"),
    ErrorCode.MALFORMED: ("Malformed data", "Неверный формат данных"),
    ErrorCode.BAD_VERSION: ("Unsupported protocol version", "Неподдерживаемая версия протокола"),
    ErrorCode.UNKNOWN_SENDER: ("Unknown sender", "Неизвестный отправитель"),
    ErrorCode.WRONG_RECIPIENT: (
        "Addressed to another node",
        "Адресовано другому узлу",
    ),
    ErrorCode.DECRYPT_FAILED: ("Decryption failed", "Не удалось расшифровать"),
    ErrorCode.BAD_SIGNATURE: ("Signature does not verify", "Подпись не прошла проверку"),
    ErrorCode.WRONG_PURPOSE: (
        "Signed for another purpose",
        "Подпись предназначена для другой цели",
    ),
    ErrorCode.UNKNOWN_KEY: ("Signed with an unknown key", "Подписано неизвестным ключом"),
    ErrorCode.HEADER_MISMATCH: (
        "Routing header and signed content disagree",
        "Заголовок маршрутизации не совпадает с подписанным содержимым",
    ),
    ErrorCode.FINGERPRINT_MISMATCH: (
        "Fingerprint does not match",
        "Отпечаток ключа не совпадает",
    ),
    ErrorCode.KEY_REVOKED: (
        "Signed with a key its owner declared compromised",
        "Подписано ключом, который владелец объявил скомпрометированным",
    ),
    ErrorCode.KEY_EXPIRED: (
        "Signed with a key that was rotated out and whose overlap has ended",
        "Подписано ключом, замененным при ротации, после окончания переходного периода",
    ),
    ErrorCode.KEY_UNCONFIRMED: (
        "Signed with a new key whose fingerprint has not been confirmed out of band",
        "Подписано новым ключом, отпечаток которого ещё не подтверждён по независимому каналу",
    ),
    ErrorCode.BAD_PROOF: ("Proof does not verify", "Доказательство не прошло проверку"),
    ErrorCode.REPLAY_CONFLICT: (
        "A different message with the same id was already received",
        "Уже получено другое сообщение с тем же идентификатором",
    ),
    ErrorCode.SEQUENCE_REUSED: (
        "A different message with the same sequence number was already received",
        "Уже получено другое сообщение с тем же порядковым номером",
    ),
    ErrorCode.SEQUENCE_OUT_OF_RANGE: (
        "Sequence number too far ahead",
        "Порядковый номер слишком далеко впереди",
    ),
    ErrorCode.RATE_LIMITED: (
        "Too many requests from this address or peer; try again shortly",
        "Слишком много запросов с этого адреса или от этого узла; повторите позже",
    ),
    ErrorCode.OVERLOADED: (
        "The node is serving as many connections as it can; try again shortly",
        "Узел обслуживает максимально возможное число соединений; повторите позже",
    ),
    ErrorCode.RELEASE_REQUIRED: (
        "A second person must release this message",
        "Это сообщение должен утвердить второй человек",
    ),
    ErrorCode.UNKNOWN_MESSAGE: ("Unknown message", "Неизвестное сообщение"),
    ErrorCode.INVALID_STATE: (
        "Not possible in the message's current state",
        "Недопустимо в текущем состоянии сообщения",
    ),
    ErrorCode.MAILBOX_FULL: (
        "The relay holds as much for this recipient as it may; try again later",
        "Ретранслятор хранит для этого получателя максимально допустимый объём; повторите позже",
    ),
    ErrorCode.NOT_FOUND: ("Not found", "Не найдено"),
    ErrorCode.PEER_UNREACHABLE: ("Peer unreachable", "Узел-партнёр недоступен"),
    ErrorCode.PEER_REFUSED: ("The peer refused it", "Узел-партнёр отклонил запрос"),
    ErrorCode.TLS_PIN_MISMATCH: (
        "The server's TLS certificate is not the one in the peer's card",
        "TLS-сертификат сервера не совпадает с сертификатом из карточки узла-партнёра",
    ),
    ErrorCode.STORAGE_FAILED: ("Storage failure", "Сбой хранилища"),
    ErrorCode.STANDBY: (
        "This replica is a standby; another process of this node is active",
        "Эта реплика резервная; активен другой процесс этого узла",
    ),
    ErrorCode.TRANSCRIPT_HELD: (
        "The transcript is on hold: this store may lack entries a peer already saw",
        "Журнал приостановлен: в этом хранилище могут отсутствовать записи, уже известные "
        "узлу-партнёру",
    ),
    ErrorCode.BAD_CONFIG: ("Configuration error", "Ошибка конфигурации"),
    ErrorCode.UNAUTHORIZED: ("Not authorized", "Нет доступа"),
    ErrorCode.INTERNAL: ("Internal error", "Внутренняя ошибка"),
    ErrorCode.LOGIN_FAILED: (
        "Wrong name, password or one-time code",
        "Неверное имя, пароль или одноразовый код",
    ),
    ErrorCode.ACCOUNT_LOCKED: (
        "The account is locked after too many failed logins; ask an admin",
        "Учётная запись заблокирована после слишком многих неудачных входов; "
        "обратитесь к администратору",
    ),
    ErrorCode.CSRF_FAILED: (
        "The form is stale or was not sent by this console; reload the page",
        "Форма устарела или отправлена не из этой консоли; обновите страницу",
    ),
    ErrorCode.FORBIDDEN: (
        "Your role does not allow this",
        "Ваша роль не позволяет это действие",
    ),
    ErrorCode.STIX_INVALID: (
        "The STIX bundle does not validate",
        "Пакет STIX не прошёл проверку",
    ),
    ErrorCode.INVALID_TRANSITION: (
        "This change of the case's state is not allowed",
        "Такое изменение состояния дела недопустимо",
    ),
}


class HotlineError(Exception):
    """Base of every error hotline raises on purpose."""

    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    #: The HTTP status the API answers with for this kind of error.
    http_status: ClassVar[int] = 500
    #: Exit code of the CLI for this kind of error.
    exit_code: ClassVar[int] = 1

    def __init__(
        self,
        detail: str,
        *,
        code: ErrorCode | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.detail = detail
        self.fields: dict[str, object] = dict(fields or {})
        super().__init__(f"{self.code}: {detail}")

    def message(self, lang: str = "en") -> str:
        """The headline for a person, in ``lang`` ("en" or "ru"), followed by the detail."""
        en, ru = MESSAGES[self.code]
        headline = ru if lang == "ru" else en
        return f"{headline}: {self.detail}"

    def to_dict(self) -> dict[str, object]:
        """The documented error shape of the API and of ``--json`` output."""
        out: dict[str, object] = {"code": str(self.code), "detail": self.detail}
        if self.fields:
            out["fields"] = self.fields
        return out


class InputError(HotlineError):
    default_code = ErrorCode.INVALID_INPUT
    http_status = 422
    exit_code = 2


class WireError(HotlineError):
    default_code = ErrorCode.MALFORMED
    http_status = 400
    exit_code = 3


class VerificationError(HotlineError):
    default_code = ErrorCode.BAD_SIGNATURE
    http_status = 403
    exit_code = 4


class ProtocolError(HotlineError):
    default_code = ErrorCode.INVALID_STATE
    http_status = 409
    exit_code = 5


class NotFoundError(HotlineError):
    default_code = ErrorCode.NOT_FOUND
    http_status = 404
    exit_code = 6


class TransportError(HotlineError):
    default_code = ErrorCode.PEER_UNREACHABLE
    http_status = 502
    exit_code = 7


class StorageError(HotlineError):
    default_code = ErrorCode.STORAGE_FAILED
    http_status = 503
    exit_code = 8


class ConfigError(HotlineError):
    default_code = ErrorCode.BAD_CONFIG
    http_status = 500
    exit_code = 9


class RateLimitedError(HotlineError):
    default_code = ErrorCode.RATE_LIMITED
    http_status = 429
    exit_code = 7


class OverloadedError(HotlineError):
    default_code = ErrorCode.OVERLOADED
    http_status = 503
    exit_code = 7


class AuthError(HotlineError):
    default_code = ErrorCode.UNAUTHORIZED
    http_status = 401
    exit_code = 10


__all__ = [
    "MESSAGES",
    "AuthError",
    "ConfigError",
    "ErrorCode",
    "HotlineError",
    "InputError",
    "NotFoundError",
    "OverloadedError",
    "ProtocolError",
    "RateLimitedError",
    "StorageError",
    "TransportError",
    "VerificationError",
    "WireError",
]
