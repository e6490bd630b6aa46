"""Customer e-mail from an IMAP mailbox (a support@ or feedback@ inbox), read without marking it seen.

Each page is one batch of messages with a UID above the cursor's ``last_uid``: ``UID SEARCH UID n:*`` and
``UID FETCH ... (UID INTERNALDATE BODY.PEEK[])`` on the folder opened read-only (EXAMINE), so nothing in the
mailbox changes. The cursor is ``{uidvalidity, last_uid}``; when the server's UIDVALIDITY changes (the folder
was recreated or migrated) the folder is read again from the start and storage drops the messages it already
has by their Message-ID, the external id (a hash of the message when it has none).

A message becomes one record: its subject and body, the text/plain part preferred and HTML turned into text
otherwise, with quoted replies ("On ... wrote:" and the lines under it, lines starting with ">") and the
signature (after "-- ") cut. From is the author, Date the time (the server's arrival time when Date is
unreadable), Content-Language the language. Auto-replies (Auto-Submitted) and senders matching
``ignore_from`` (your own agents) are skipped.

Needs the host, the account's username, and either its password (an app password where the provider allows
one) or OAuth 2 (SASL XOAUTH2, which Microsoft 365 requires and Gmail prefers): an access token, or a client
id, refresh token and token URL from which the source mints its own tokens. Connections use TLS (implicit on
993, or STARTTLS on 143). Timeouts and dropped connections are retried with backoff; a refused login fails
the run at once.
"""

from __future__ import annotations

import email
import email.policy
import fnmatch
import hashlib
import imaplib
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, TypeVar

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from scrapers.contract import Cursor, Malformed, Page, Record, Source, SourceConfig
from scrapers.http import (
    BadCredentialsError,
    HttpPolicy,
    NotFoundError,
    PoliteClient,
    SourceError,
    TransientError,
    logger,
)
from scrapers.oauth import OAuthAccessToken
from scrapers.parsing import html_to_text
from scrapers.registry import register_source

T = TypeVar("T")

FETCH_ITEMS = "(UID INTERNALDATE BODY.PEEK[])"

ImapData: TypeAlias = list[Any]
"""The data part of an imaplib reply: bytes lines, (header, literal) tuples, or None."""


class ImapClient(Protocol):
    """The few ``imaplib.IMAP4`` calls the source makes, so that tests can replay a mailbox."""

    def login(self, user: str, password: str) -> tuple[str, ImapData]: ...

    def authenticate(
        self, mechanism: str, authobject: Callable[[bytes], bytes | None]
    ) -> tuple[str, Any]: ...

    def select(self, mailbox: str = "INBOX", readonly: bool = False) -> tuple[str, ImapData]: ...

    def response(self, code: str) -> tuple[str, ImapData]: ...

    def uid(self, command: str, *args: str) -> tuple[str, ImapData]: ...

    def list(self, directory: str = '""', pattern: str = "*") -> tuple[str, ImapData]: ...

    def logout(self) -> tuple[str, ImapData]: ...


class ImapConfig(SourceConfig):
    """Which mailbox and folder, and how to sign in."""

    host: str = Field(min_length=1, description="The IMAP server, e.g. imap.gmail.com.")
    port: int | None = Field(default=None, ge=1, le=65535, description="993 for ssl, 143 for starttls.")
    security: Literal["ssl", "starttls"] = Field(default="ssl", description="Implicit TLS or STARTTLS.")
    username: str = Field(min_length=1)
    password: SecretStr | None = Field(
        default=None, description='The password or app password; use an {"env": ...} reference.'
    )
    access_token: SecretStr | None = Field(default=None, description="OAuth 2: an access token (XOAUTH2).")
    client_id: str | None = Field(
        default=None, description="OAuth 2: the client that owns the refresh token."
    )
    client_secret: SecretStr | None = Field(
        default=None, description="OAuth 2: its secret (confidential clients)."
    )
    refresh_token: SecretStr | None = Field(
        default=None, description="OAuth 2: the source mints access tokens."
    )
    token_url: str | None = Field(
        default=None,
        description="OAuth 2 token endpoint: https://oauth2.googleapis.com/token, or "
        "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token.",
    )
    scope: str | None = Field(
        default=None,
        description="OAuth 2 scope to ask for (Microsoft: https://outlook.office.com/IMAP.AccessAsUser.All "
        "offline_access).",
    )
    folder: str = Field(default="INBOX", min_length=1, description="The folder to read.")
    batch_size: int = Field(default=50, ge=1, le=500, description="Messages per page.")
    since: date | None = Field(default=None, description="Only messages received on or after this day.")
    ignore_from: list[str] = Field(
        default=[], description="Sender addresses to skip, with * wildcards (e.g. *@yourcompany.com)."
    )
    product: str | None = Field(default=None, description="Product to file the messages under.")

    @field_validator("password", "access_token", "refresh_token")
    @classmethod
    def _secret_is_set(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("the secret is empty")
        return value

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> ImapConfig:
        ways = [
            self.password is not None,
            self.access_token is not None,
            self.refresh_token is not None or self.client_id is not None,
        ]
        if sum(ways) != 1:
            raise ValueError(
                "sign in one way: password, access_token, or client_id + refresh_token + token_url (OAuth 2)"
            )
        if ways[2] and not (self.client_id and self.refresh_token and self.token_url):
            raise ValueError("OAuth 2 with a refresh token needs client_id, refresh_token and token_url")
        return self

    @property
    def uses_oauth(self) -> bool:
        return self.password is None

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "ssl" else 143)


Connector = Callable[[ImapConfig], ImapClient]


def connect_imap(config: ImapConfig) -> ImapClient:
    """A TLS connection to the configured server (certificate and host name verified)."""
    context = ssl.create_default_context()
    if config.security == "ssl":
        return imaplib.IMAP4_SSL(
            config.host, config.effective_port, ssl_context=context, timeout=config.timeout_seconds
        )
    client = imaplib.IMAP4(config.host, config.effective_port, timeout=config.timeout_seconds)
    client.starttls(ssl_context=context)
    return client


@dataclass
class _Session:
    client: ImapClient
    uidvalidity: int


@dataclass(frozen=True)
class FetchedMessage:
    """One message as ``UID FETCH`` returned it."""

    uid: int
    raw: bytes
    internal_date: datetime | None


_TRANSIENT = (imaplib.IMAP4.abort, OSError, EOFError)
"""Dropped connections, socket timeouts and TLS failures: reconnect and retry. ``abort`` first: it is also an
``IMAP4.error``, which otherwise means the server refused a command."""


@register_source
class ImapSource(Source):
    """Customer messages in one IMAP folder."""

    kind: ClassVar[str] = "imap.v1"
    config_model = ImapConfig
    channel: ClassVar[str] = "email"
    config: ImapConfig

    def __init__(
        self,
        config: SourceConfig,
        *,
        connect: Connector | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` carries the OAuth token requests (tests replay them)."""
        assert isinstance(config, ImapConfig)
        self.config = config
        self._connect = connect or connect_imap
        self._sleep = sleep
        self._jitter = jitter
        self._policy = HttpPolicy(timeout_seconds=config.timeout_seconds)
        self._session: _Session | None = None
        self._token_http: PoliteClient | None = None
        self._oauth: OAuthAccessToken | None = None
        if config.uses_oauth:
            self._token_http = PoliteClient(
                policy=self._policy,
                transport=transport,
                sleep=sleep,
                clock=clock,
                service_name="the mail provider's token endpoint",
            )
            self._oauth = OAuthAccessToken(config, self._token_http)

    @property
    def _where(self) -> str:
        return f"{self.config.host} ({self.config.username}, {self.config.folder})"

    def fetch_page(self, cursor: Cursor | None) -> Page:
        """The next batch of messages above the cursor's UID, oldest first."""
        state = dict(cursor or {})
        uidvalidity, last_uid, uids, messages = self._with_retries(lambda: self._fetch_batch(state))
        batch = uids[: self.config.batch_size]
        records: list[Record] = []
        malformed: list[Malformed] = []
        for message in messages:
            try:
                record = message_record(message, folder=self.config.folder, product=self.config.product)
            except ValueError as exc:
                malformed.append(
                    Malformed(
                        where=f"{self.config.folder}/uid={message.uid}",
                        reason=str(exc),
                        external_id=message_id_of(message.raw),
                    )
                )
                continue
            if record is not None and not self._ignored(record.author):
                records.append(record)
        next_uid = max([last_uid, *batch])
        done = len(uids) <= len(batch)
        return Page(
            records=records,
            cursor={"uidvalidity": uidvalidity, "last_uid": next_uid},
            done=done,
            malformed=malformed,
        )

    def close(self) -> None:
        self._drop_session()
        if self._token_http is not None:
            self._token_http.close()

    # ------------------------------------------------------------------------------------------ IMAP

    def _fetch_batch(self, state: Cursor) -> tuple[int, int, list[int], list[FetchedMessage]]:
        session = self._open_session()
        last_uid = int(state.get("last_uid", 0))
        if state.get("uidvalidity") != session.uidvalidity:
            if state:
                logger.info(
                    "IMAP UIDVALIDITY changed; reading the folder again",
                    extra={"folder": self.config.folder, "uidvalidity": session.uidvalidity},
                )
            last_uid = 0
        criteria = [f"UID {last_uid + 1}:*"]
        if self.config.since is not None:
            criteria.append(f"SINCE {self.config.since.strftime('%d-%b-%Y')}")
        status, data = session.client.uid("SEARCH", *criteria)
        self._expect_ok(status, data, "search the folder")
        # "n:*" always matches the highest UID, even one below n.
        uids = sorted(uid for uid in _numbers(data) if uid > last_uid)
        batch = uids[: self.config.batch_size]
        messages: list[FetchedMessage] = []
        if batch:
            status, data = session.client.uid("FETCH", ",".join(map(str, batch)), FETCH_ITEMS)
            self._expect_ok(status, data, "fetch messages")
            messages = sorted(fetched_messages(data), key=lambda message: message.uid)
        return session.uidvalidity, last_uid, uids, messages

    def _open_session(self) -> _Session:
        if self._session is not None:
            return self._session
        client = self._connect(self.config)
        try:
            self._sign_in(client)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            _quietly_logout(client)
            how = (
                "Check the OAuth token, its scope (Microsoft: IMAP.AccessAsUser.All) and that IMAP is enabled."
                if self.config.uses_oauth
                else "Check the username and password (Gmail and Microsoft 365 need an app password or OAuth 2, "
                "and IMAP enabled for the account)."
            )
            raise BadCredentialsError(
                f"the IMAP server {self.config.host} refused the login for {self.config.username}: "
                f"{_server_words(exc)}. {how}"
            ) from None
        except SourceError:
            _quietly_logout(client)
            raise
        status, data = client.select(_quote_mailbox(self.config.folder), readonly=True)
        if status != "OK":
            folders = _folder_names(client)
            _quietly_logout(client)
            known = f"; the account's folders are: {', '.join(folders)}" if folders else ""
            raise NotFoundError(
                f"the IMAP folder {self.config.folder!r} cannot be opened on {self.config.host}: "
                f"{_decode(data)}{known}"
            )
        _status, validity = client.response("UIDVALIDITY")
        numbers = _numbers(validity)
        self._session = _Session(client=client, uidvalidity=numbers[0] if numbers else 0)
        return self._session

    def _sign_in(self, client: ImapClient) -> None:
        if self._oauth is None:
            assert self.config.password is not None
            client.login(self.config.username, self.config.password.get_secret_value())
            return
        # SASL XOAUTH2: "user=<name>^Aauth=Bearer <token>^A^A" (imaplib base64-encodes it).
        payload = f"user={self.config.username}\x01auth=Bearer {self._oauth.token()}\x01\x01".encode()
        client.authenticate("XOAUTH2", lambda _challenge: payload)

    def _with_retries(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, reconnecting after transient failures with backoff and jitter."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except SourceError:
                raise
            except _TRANSIENT as exc:
                failure: BaseException = exc
            except imaplib.IMAP4.error as exc:
                self._drop_session()
                raise SourceError(
                    f"the IMAP server {self.config.host} rejected a command: {_server_words(exc)}"
                ) from None
            self._drop_session()
            if attempt >= self._policy.max_attempts:
                raise TransientError(
                    f"the IMAP server {self.config.host} did not answer properly ({_describe(failure)}) "
                    f"after {attempt} attempts"
                ) from None
            ceiling = min(
                self._policy.backoff_max_seconds, self._policy.backoff_base_seconds * 2.0 ** (attempt - 1)
            )
            wait = ceiling * self._jitter()
            logger.info(
                "IMAP request failed; retrying",
                extra={"host": self.config.host, "attempt": attempt, "wait_s": round(wait, 2)},
            )
            self._sleep(wait)

    def _expect_ok(self, status: str, data: list[Any], doing: str) -> None:
        if status != "OK":
            raise SourceError(f"the IMAP server {self.config.host} would not {doing}: {_decode(data)}")

    def _drop_session(self) -> None:
        if self._session is not None:
            _quietly_logout(self._session.client)
            self._session = None

    def _ignored(self, author: str | None) -> bool:
        if not author or not self.config.ignore_from:
            return False
        address = author.lower()
        return any(fnmatch.fnmatch(address, pattern.lower()) for pattern in self.config.ignore_from)


# -------------------------------------------------------------------------------------- FETCH responses

_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


def fetched_messages(data: list[Any]) -> Iterator[FetchedMessage]:
    """Messages from ``UID FETCH`` data: ``[(b'1 (UID 7 INTERNALDATE "..." BODY[] {n}', raw), b')', ...]``.

    Servers may put UID or INTERNALDATE after the literal (``b' UID 7)'``), so both parts are read.
    """
    pending: tuple[bytes, bytes] | None = None
    for item in [*data, None]:
        if isinstance(item, tuple) and len(item) == 2:
            if pending is not None:
                yield from _message(*pending, trailer=b"")
            pending = (bytes(item[0]), bytes(item[1]))
        elif pending is not None:
            trailer = bytes(item) if isinstance(item, bytes) else b""
            yield from _message(*pending, trailer=trailer)
            pending = None


def _message(head: bytes, raw: bytes, *, trailer: bytes) -> Iterator[FetchedMessage]:
    described = head + b" " + trailer
    uid = _UID.search(described)
    if uid is None:
        return
    stamp = _INTERNALDATE.search(described)
    internal_date = None
    if stamp is not None:
        parsed = imaplib.Internaldate2tuple(b'INTERNALDATE "' + stamp.group(1) + b'"')
        if parsed is not None:
            internal_date = datetime.fromtimestamp(time.mktime(parsed), tz=UTC)
    yield FetchedMessage(uid=int(uid.group(1)), raw=raw, internal_date=internal_date)


# ------------------------------------------------------------------------------------------ messages

_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|tr|sv|antw|رد|پاسخ)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_ATTRIBUTION = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^on\b.{0,300}\bwrote:\s*$",
        r"^am\b.{0,300}\bschrieb\b.{0,300}:\s*$",
        r"^le\b.{0,300}\ba écrit\s*:\s*$",
        r"^el\b.{0,300}\bescribió:\s*$",
        r"^op\b.{0,300}\bschreef\b.{0,300}:\s*$",
        r"^il\b.{0,300}\bha scritto:\s*$",
        r"^في\b.{0,300}كتب.{0,300}:\s*$",
        r"^.{0,300}\bنوشت:\s*$",
        r"^-{2,}\s*(original message|ursprüngliche nachricht|message d'origine)\s*-{2,}\s*$",
        r"^_{10,}\s*$",
    )
]
_HEADER_BLOCK = re.compile(r"^(from|von|de|van)\s*:", re.IGNORECASE)
_HEADER_FOLLOW = re.compile(r"^(sent|gesendet|envoyé|date|datum|to|an|à|subject|betreff)\s*:", re.IGNORECASE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def strip_quoted(body: str) -> str:
    """The new part of a message: quoted replies, forwarded headers and the signature removed."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if line.rstrip("\n") in ("-- ", "--"):
            break
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        joined = f"{stripped} {following}"
        if any(pattern.match(stripped) for pattern in _ATTRIBUTION) or (
            stripped.lower().startswith(("on ", "am ", "le ")) and _ATTRIBUTION[0].match(joined)
        ):
            break
        if _HEADER_BLOCK.match(stripped) and _HEADER_FOLLOW.match(following):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    return _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip()


def message_id_of(raw: bytes) -> str:
    """The Message-ID without angle brackets, or a hash of the message when it has none."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        value = str(message.get("Message-ID") or "").strip().strip("<>").strip()
    except Exception:  # a report must not fail on the message it reports
        value = ""
    return value or f"sha256:{hashlib.sha256(raw).hexdigest()[:32]}"


def message_record(message: FetchedMessage, *, folder: str, product: str | None = None) -> Record | None:
    """The record of one message; None for an auto-reply; ``ValueError`` when it has no text or time."""
    parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    auto = str(parsed.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return None
    subject = _REPLY_PREFIX.sub("", _header(parsed, "Subject")).strip()
    body, body_type = _body_text(parsed)
    text = "\n".join(part for part in (subject, strip_quoted(body)) if part)
    if not text:
        raise ValueError("the message has no subject and no text")
    created_at = _date(parsed) or message.internal_date
    if created_at is None:
        raise ValueError(
            f"the message's Date {_header(parsed, 'Date')!r} is not a date, and the server gave none"
        )
    metadata: dict[str, Any] = {"uid": message.uid, "folder": folder}
    for key, header in (("subject", "Subject"), ("to", "To"), ("in_reply_to", "In-Reply-To")):
        if value := _header(parsed, header):
            metadata[key] = value
    if body_type:
        metadata["body_type"] = body_type
    if parsed.is_multipart() and next(parsed.iter_attachments(), None) is not None:
        metadata["has_attachments"] = True
    return Record(
        external_id=message_id_of(message.raw),
        text=text,
        created_at=created_at,
        author=_sender(parsed),
        language=_header(parsed, "Content-Language").split(",")[0].strip() or None,
        product=product,
        metadata=metadata,
    )


def _body_text(message: EmailMessage) -> tuple[str, str | None]:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None or not isinstance(part, EmailMessage):
        return "", None
    content_type = part.get_content_type()
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError, KeyError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return "", content_type
    if content_type == "text/html":
        return html_to_text(content), content_type
    return content, content_type


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the parser cannot read at all
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _sender(message: EmailMessage) -> str | None:
    try:
        header = message.get("From")
        addresses = getattr(header, "addresses", ())
    except (ValueError, IndexError, TypeError):
        return None
    for address in addresses:
        if address.addr_spec and address.addr_spec != "<>":
            return str(address.addr_spec).lower()
    return _header(message, "From") or None


def _date(message: EmailMessage) -> datetime | None:
    value = _header(message, "Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------- plumbing


def _numbers(data: list[Any]) -> list[int]:
    found: list[int] = []
    for item in data:
        if isinstance(item, bytes | str):
            text = item.decode("ascii", errors="replace") if isinstance(item, bytes) else item
            found.extend(int(token) for token in text.split() if token.isdigit())
    return found


def _decode(data: list[Any]) -> str:
    parts = [item.decode(errors="replace") if isinstance(item, bytes) else str(item) for item in data if item]
    return " ".join(parts) or "no reason given"


def _quote_mailbox(name: str) -> str:
    if name.startswith('"') or re.fullmatch(r"[A-Za-z0-9._/\-\[\]]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LIST_NAME = re.compile(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')


def _folder_names(client: ImapClient) -> list[str]:
    try:
        status, data = client.list()
    except (*_TRANSIENT, imaplib.IMAP4.error):
        return []
    if status != "OK":
        return []
    names = []
    for item in data:
        if isinstance(item, bytes) and (match := _LIST_NAME.match(item)):
            names.append(match.group("name").decode(errors="replace").strip().strip('"'))
    return names


def _server_words(exc: Exception) -> str:
    text = str(exc)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text or "no reason given"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _quietly_logout(client: ImapClient) -> None:
    try:
        client.logout()
    except (*_TRANSIENT, imaplib.IMAP4.error):
        pass
