"""IMAP: a fake server answers in imaplib's own reply shapes with recorded RFC 822 messages."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scrapers.http import BadCredentialsError, NotFoundError, SourceError, TransientError
from scrapers.registry import SourceConfigError, build_source, masked_config
from scrapers.sources.imap import (
    FETCH_ITEMS,
    ImapConfig,
    ImapData,
    ImapSource,
    fetched_messages,
    message_record,
    strip_quoted,
)
from tests.scrapers.replay import FakeSleep, ReplayTransport, Route, json_response, load_bytes, run_source

KIND = "imap"
PASSWORD = "app-password-k3y"
UIDVALIDITY = 1773300000
MESSAGES = [
    "01_plain_german.eml",
    "02_multipart_html.eml",
    "03_reply_quoted.eml",
    "04_windows1256_arabic.eml",
    "05_broken.eml",
    "06_auto_reply.eml",
    "07_agent_note.eml",
    "08_outlook_persian.eml",
]


class FakeMailbox:
    """One account's folders as the server holds them, and every command the source sent."""

    def __init__(self, names: Iterable[str] = MESSAGES, *, first_uid: int = 101) -> None:
        self.messages = {first_uid + index: load_bytes(KIND, name) for index, name in enumerate(names)}
        self.uidvalidity = UIDVALIDITY
        self.folders = ["INBOX", "Feedback", "[Gmail]/Sent Mail"]
        self.password = PASSWORD
        self.oauth_token = "ya29.mailbox-token"
        self.failures: dict[str, list[BaseException]] = {}
        self.commands: list[tuple[Any, ...]] = []
        self.connections = 0

    def connect(self, config: ImapConfig) -> FakeImap:
        self.connections += 1
        self.commands.append(("CONNECT", config.host, config.effective_port))
        return FakeImap(self)

    def fail(self, command: str, *errors: BaseException) -> None:
        self.failures.setdefault(command, []).extend(errors)

    def sent(self, command: str) -> list[tuple[Any, ...]]:
        return [entry for entry in self.commands if entry[0] == command]


class FakeImap:
    """Answers like ``imaplib.IMAP4``: (status, data) with bytes lines and (header, literal) tuples."""

    def __init__(self, mailbox: FakeMailbox) -> None:
        self.mailbox = mailbox

    def _record(self, *command: Any) -> None:
        self.mailbox.commands.append(command)
        pending = self.mailbox.failures.get(str(command[0]))
        if pending:
            raise pending.pop(0)

    def login(self, user: str, password: str) -> tuple[str, ImapData]:
        self._record("LOGIN", user)
        if password != self.mailbox.password:
            raise imaplib.IMAP4.error(b"[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
        return "OK", [b"user@acme-shop.example authenticated (Success)"]

    def authenticate(self, mechanism: str, authobject: Callable[[bytes], bytes | None]) -> tuple[str, Any]:
        response = authobject(b"")
        self._record("AUTHENTICATE", mechanism, response)
        expected = (
            f"user=support@acme-shop.example\x01auth=Bearer {self.mailbox.oauth_token}\x01\x01".encode()
        )
        if mechanism != "XOAUTH2" or response != expected:
            raise imaplib.IMAP4.error(b"[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
        return "OK", b"support@acme-shop.example authenticated (Success)"

    def select(self, mailbox: str = "INBOX", readonly: bool = False) -> tuple[str, ImapData]:
        self._record("SELECT", mailbox, readonly)
        if mailbox.strip('"') not in self.mailbox.folders:
            return "NO", [b"[NONEXISTENT] Unknown Mailbox: " + mailbox.encode() + b" (Failure)"]
        return "OK", [str(len(self.mailbox.messages)).encode()]

    def response(self, code: str) -> tuple[str, ImapData]:
        self._record("RESPONSE", code)
        return code, [str(self.mailbox.uidvalidity).encode()]

    def uid(self, command: str, *args: str) -> tuple[str, ImapData]:
        self._record(command, *args)
        uids = sorted(self.mailbox.messages)
        if command == "SEARCH":
            match = re.fullmatch(r"UID (\d+):\*", args[0])
            assert match, args
            low = int(match.group(1))
            found = [uid for uid in uids if uid >= low] or uids[-1:]  # n:* includes the highest UID
            return "OK", [" ".join(map(str, found)).encode()]
        if command == "FETCH":
            assert args[1] == FETCH_ITEMS
            data: list[Any] = []
            for uid in map(int, args[0].split(",")):
                if uid not in self.mailbox.messages:
                    continue
                raw = self.mailbox.messages[uid]
                sequence = uids.index(uid) + 1
                head = (
                    f'{sequence} (UID {uid} INTERNALDATE "18-Mar-2026 09:00:00 +0000" BODY[] {{{len(raw)}}}'
                )
                data.extend([(head.encode(), raw), b")"])
            return "OK", data
        return "BAD", [b"unknown command"]

    def list(self, directory: str = '""', pattern: str = "*") -> tuple[str, ImapData]:
        self._record("LIST")
        return "OK", [f'(\\HasNoChildren) "/" "{name}"'.encode() for name in self.mailbox.folders]

    def logout(self) -> tuple[str, ImapData]:
        self._record("LOGOUT")
        return "BYE", [b"LOGOUT Requested"]


def make_source(mailbox: FakeMailbox, sleep: FakeSleep | None = None, **config: Any) -> ImapSource:
    settings = ImapConfig.model_validate(
        {
            "host": "imap.acme-shop.example",
            "username": "support@acme-shop.example",
            "password": PASSWORD,
            **config,
        }
    )
    return ImapSource(settings, connect=mailbox.connect, sleep=sleep or FakeSleep(), jitter=lambda: 0.5)


def test_reads_the_folder_in_batches_to_the_end() -> None:
    mailbox = FakeMailbox()
    sink, result = run_source(
        make_source(mailbox, batch_size=3, ignore_from=["*@acme-shop.example"]), default_touchpoint="email"
    )
    assert result.done and result.pages == 3
    assert sink.cursor == {"uidvalidity": UIDVALIDITY, "last_uid": 108}
    records = {record.external_id: record for record in sink.records}
    assert list(records) == [
        "20260314091502.4711@mail.example.de",
        "CAF=th0a9Xk2@mail.example.co.th",
        "BN8PR12MB3315.2026031608@example.com",
        "a1b2c3.1742206800@example.sa",
        "DB9PR05MB8812.1773906900@example.ir",
    ]
    german = records["20260314091502.4711@mail.example.de"]
    assert german.text == (
        "Lieferung seit zwei Wochen unterwegs\nHallo,\n\nmeine Bestellung #55812 ist seit zwei Wochen unterwegs "
        "und die Sendungsverfolgung zeigt nichts an. Bitte kümmern Sie sich darum.\n\nGrüße\nJana Becker"
    )
    assert german.author == "jana.becker@example.de"
    assert german.created_at == datetime(2026, 3, 14, 9, 15, 2, tzinfo=UTC) + timedelta(hours=-1)
    assert german.language == "de-DE"
    assert german.touchpoint == "email"
    assert german.metadata["uid"] == 101 and german.metadata["folder"] == "INBOX"


def test_html_only_messages_become_text_and_attachments_are_noted() -> None:
    sink, _ = run_source(make_source(FakeMailbox(["02_multipart_html.eml"])))
    [thai] = sink.records
    assert thai.text == "ที่จอดรถไม่พอ\nพนักงานบริการดีมาก\n\nแต่ ที่จอดรถไม่พอเลย"
    assert thai.metadata["body_type"] == "text/html"
    assert thai.metadata["has_attachments"] is True


def test_quoted_replies_and_signatures_are_cut() -> None:
    sink, _ = run_source(make_source(FakeMailbox(["03_reply_quoted.eml", "08_outlook_persian.eml"])))
    reply, persian = sink.records
    assert reply.text == (
        "[Ticket #1203] App crashes at checkout\n"
        "The update did not help, the app still closes when I tap Pay.\nPlease call me back."
    )
    assert reply.metadata["body_type"] == "text/plain"
    assert reply.metadata["in_reply_to"] == "<reply-1203-2@acme-shop.example>"
    assert persian.text == "شکایت از شعبه شيراز\nکارمند شعبه شیراز با من بی‌ادبانه رفتار کرد."
    assert persian.language == "fa-IR"


def test_a_windows_1256_message_is_decoded() -> None:
    sink, _ = run_source(make_source(FakeMailbox(["04_windows1256_arabic.eml"])))
    [arabic] = sink.records
    assert (
        arabic.text
        == "استرجاع المبلغ\nلقد طلبت استرجاع المبلغ منذ أسبوع ولم يصلني أي رد.\nأرجو المساعدة بسرعة."
    )
    assert arabic.author == "ahmad.k@example.sa"
    assert arabic.language == "ar"


def test_a_broken_message_is_reported_and_auto_replies_and_own_agents_are_skipped() -> None:
    mailbox = FakeMailbox(["05_broken.eml", "06_auto_reply.eml", "07_agent_note.eml", "01_plain_german.eml"])
    sink, result = run_source(make_source(mailbox, ignore_from=["*@acme-shop.example"]))
    assert [record.external_id for record in sink.records] == ["20260314091502.4711@mail.example.de"]
    [report] = result.malformed
    assert report.where == "INBOX/uid=101"
    assert report.reason == "the message has no subject and no text"
    assert report.external_id is not None and report.external_id.startswith("sha256:")

    kept, _ = run_source(make_source(FakeMailbox(["07_agent_note.eml"])))
    assert kept.records[0].text == "Lieferung seit zwei Wochen unterwegs\nInternal copy: carrier contacted."


def test_a_message_without_a_readable_date_takes_the_arrival_time() -> None:
    raw = b"From: a@example.com\r\nSubject: Slow app\r\nDate: sometime\r\n\r\nIt is slow.\r\n"
    data = [(b'1 (UID 5 INTERNALDATE "18-Mar-2026 09:00:00 +0100" BODY[] {70}', raw), b")"]
    [message] = fetched_messages(data)
    record = message_record(message, folder="INBOX")
    assert record is not None
    assert record.created_at == datetime(2026, 3, 18, 8, 0, tzinfo=UTC)
    assert record.external_id.startswith("sha256:")


def test_never_marks_messages_as_seen() -> None:
    mailbox = FakeMailbox()
    run_source(make_source(mailbox))
    assert mailbox.sent("SELECT") == [("SELECT", "INBOX", True)]  # EXAMINE
    assert all("BODY.PEEK[]" in entry[2] for entry in mailbox.sent("FETCH"))
    assert not any(entry[0] in {"STORE", "EXPUNGE", "COPY", "MOVE"} for entry in mailbox.commands)


def test_the_next_run_fetches_only_new_uids() -> None:
    mailbox = FakeMailbox()
    sink, _ = run_source(make_source(mailbox))
    fetches = len(mailbox.sent("FETCH"))
    nothing_new, result = run_source(make_source(mailbox), cursor=sink.cursor)
    assert result.done and nothing_new.records == []
    assert mailbox.sent("SEARCH")[-1] == ("SEARCH", "UID 109:*")  # the server answers 108 all the same
    assert len(mailbox.sent("FETCH")) == fetches

    mailbox.messages[109] = load_bytes(KIND, "03_reply_quoted.eml").replace(
        b"BN8PR12MB3315.2026031608", b"BN8PR12MB3315.2026032001"
    )
    later, result = run_source(make_source(mailbox), cursor=nothing_new.cursor)
    assert [record.external_id for record in later.records] == ["BN8PR12MB3315.2026032001@example.com"]
    assert later.cursor == {"uidvalidity": UIDVALIDITY, "last_uid": 109}


def test_resumes_from_a_saved_mid_run_cursor() -> None:
    mailbox = FakeMailbox()
    sink, result = run_source(make_source(mailbox, batch_size=2), max_pages=1)
    assert not result.done and sink.cursor == {"uidvalidity": UIDVALIDITY, "last_uid": 102}
    resumed, result = run_source(make_source(mailbox, batch_size=2), cursor=sink.cursor)
    assert result.done
    assert mailbox.sent("SEARCH")[1] == ("SEARCH", "UID 103:*")
    assert len(sink.records) + len(resumed.records) == 6  # 8 messages less the broken one and the auto-reply


def test_a_new_uidvalidity_reads_the_folder_again_with_the_same_ids() -> None:
    mailbox = FakeMailbox()
    sink, _ = run_source(make_source(mailbox))
    mailbox.uidvalidity = UIDVALIDITY + 1
    mailbox.messages = {index + 1: raw for index, raw in enumerate(mailbox.messages.values())}
    again, result = run_source(make_source(mailbox), cursor=sink.cursor)
    assert result.done
    assert mailbox.sent("SEARCH")[-1] == ("SEARCH", "UID 1:*")
    assert [record.external_id for record in again.records] == [record.external_id for record in sink.records]
    assert again.cursor == {"uidvalidity": UIDVALIDITY + 1, "last_uid": 8}


def test_since_limits_the_search() -> None:
    mailbox = FakeMailbox(["01_plain_german.eml"])
    sink, _ = run_source(make_source(mailbox, since="2026-03-01"))
    assert len(sink.records) == 1
    assert mailbox.sent("SEARCH") == [("SEARCH", "UID 1:*", "SINCE 01-Mar-2026")]


def test_a_refused_login_is_a_clear_error_without_the_password() -> None:
    mailbox = FakeMailbox()
    mailbox.password = "another"
    with pytest.raises(
        BadCredentialsError, match=r"refused the login for support@acme-shop\.example"
    ) as caught:
        run_source(make_source(mailbox))
    message = str(caught.value)
    assert "[AUTHENTICATIONFAILED] Invalid credentials (Failure)" in message
    assert "app password" in message
    assert PASSWORD not in message
    assert mailbox.connections == 1  # not retried


def test_a_missing_folder_is_a_not_found_error_naming_the_folders() -> None:
    with pytest.raises(NotFoundError, match="IMAP folder 'Feedbak' cannot be opened") as caught:
        run_source(make_source(FakeMailbox(), folder="Feedbak"))
    assert "the account's folders are: INBOX, Feedback, [Gmail]/Sent Mail" in str(caught.value)


def test_folders_with_spaces_are_quoted() -> None:
    mailbox = FakeMailbox(["01_plain_german.eml"])
    mailbox.folders.append("Kunden Feedback")
    run_source(make_source(mailbox, folder="Kunden Feedback"))
    assert mailbox.sent("SELECT") == [("SELECT", '"Kunden Feedback"', True)]


def test_a_socket_timeout_is_retried_on_a_new_connection() -> None:
    sleep = FakeSleep()
    mailbox = FakeMailbox()
    mailbox.fail("SEARCH", TimeoutError("timed out"))
    mailbox.fail("FETCH", imaplib.IMAP4.abort("socket error: EOF"))
    sink, result = run_source(make_source(mailbox, sleep), max_pages=5)
    assert result.done and len(sink.records) == 6
    assert mailbox.connections == 3
    assert sleep.waits == [0.5, 1.0]  # one page: attempts 1 and 2, backoff 1 s * 2^(n-1) * jitter 0.5


def test_a_server_that_keeps_failing_is_a_transient_error() -> None:
    sleep = FakeSleep()
    mailbox = FakeMailbox()
    mailbox.fail("LOGIN", *[TimeoutError("timed out") for _ in range(4)])
    with pytest.raises(
        TransientError,
        match=r"imap\.acme-shop\.example did not answer properly \(timed out\) after 4 attempts",
    ):
        run_source(make_source(mailbox, sleep))
    assert mailbox.connections == 4
    assert sleep.waits == [0.5, 1.0, 2.0]


def test_a_rejected_command_fails_without_retrying() -> None:
    mailbox = FakeMailbox()
    mailbox.fail("SEARCH", imaplib.IMAP4.error("SEARCH command error: BAD [b'Could not parse command']"))
    with pytest.raises(SourceError, match="rejected a command: SEARCH command error") as caught:
        run_source(make_source(mailbox))
    assert not isinstance(caught.value, TransientError)
    assert mailbox.connections == 1


def test_fetch_replies_with_uid_after_the_literal_are_read() -> None:
    raw = load_bytes(KIND, "06_auto_reply.eml")
    data = [
        (b"3 (FLAGS (\\Seen) BODY[] {" + str(len(raw)).encode() + b"}", raw),
        b' UID 42 INTERNALDATE "18-Mar-2026 07:00:01 +0000")',
        (b"4 (UID 43 BODY[] {5}", b"Hi\r\n\r\n"),
        b")",
    ]
    first, second = fetched_messages(data)
    assert (first.uid, first.internal_date) == (42, datetime(2026, 3, 18, 7, 0, 1, tzinfo=UTC))
    assert (second.uid, second.internal_date) == (43, None)
    assert message_record(first, folder="INBOX") is None  # auto-replied


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Danke!\n\nAm 14.03.2026 um 09:15 schrieb Support <s@x.de>:\n> alt", "Danke!"),
        ("Merci.\nLe lun. 16 mars 2026 à 10:00, Support <s@x.fr> a écrit :\n> ancien", "Merci."),
        ("Still broken\n-----Original Message-----\nFrom: Support", "Still broken"),
        ("Line one\n> quoted\nLine two\n-- \nSig", "Line one\nLine two"),
        ("On time delivery, thanks\nOnly one line", "On time delivery, thanks\nOnly one line"),
    ],
)
def test_strip_quoted(body: str, expected: str) -> None:
    assert strip_quoted(body) == expected


def test_config_is_validated_through_the_registry() -> None:
    with pytest.raises(SourceConfigError, match="host: Field required"):
        build_source("imap.v1", {"username": "u", "password": "p"}, environ={})
    with pytest.raises(SourceConfigError, match="sign in one way: password, access_token, or client_id"):
        build_source("imap.v1", {"host": "h", "username": "u"}, environ={})
    with pytest.raises(SourceConfigError, match="sign in one way"):
        build_source(
            "imap.v1", {"host": "h", "username": "u", "password": "p", "access_token": "t"}, environ={}
        )
    with pytest.raises(SourceConfigError, match="needs client_id, refresh_token and token_url"):
        build_source(
            "imap.v1", {"host": "h", "username": "u", "refresh_token": "r", "client_id": "c"}, environ={}
        )
    with pytest.raises(SourceConfigError, match="security: Input should be 'ssl' or 'starttls'"):
        build_source(
            "imap.v1", {"host": "h", "username": "u", "password": "p", "security": "none"}, environ={}
        )
    with pytest.raises(SourceConfigError, match="environment variable IMAP_PASSWORD is not set"):
        build_source(
            "imap.v1", {"host": "h", "username": "u", "password": {"env": "IMAP_PASSWORD"}}, environ={}
        )
    raw = {
        "host": "imap.example.com",
        "username": "u",
        "password": {"env": "IMAP_PASSWORD"},
        "security": "starttls",
    }
    source = build_source("imap.v1", raw, environ={"IMAP_PASSWORD": PASSWORD}, connect=FakeMailbox().connect)
    assert isinstance(source, ImapSource)
    assert source.config.effective_port == 143
    assert PASSWORD not in repr(source.config)
    assert masked_config("imap.v1", {**raw, "password": PASSWORD})["password"] == "********"


OAUTH = {
    "host": "outlook.office365.com",
    "username": "support@acme-shop.example",
    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "refresh_token": "0.AX0A-refresh",
    "token_url": "https://login.microsoftonline.com/acme.example/oauth2/v2.0/token",
    "scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
}


def oauth_source(mailbox: FakeMailbox, transport: ReplayTransport, **config: Any) -> ImapSource:
    settings = ImapConfig.model_validate({**OAUTH, **config})
    sleep = FakeSleep()
    return ImapSource(
        settings,
        connect=mailbox.connect,
        sleep=sleep,
        clock=sleep.clock,
        jitter=lambda: 0.5,
        transport=transport,
    )


def test_oauth2_mints_a_token_and_signs_in_with_xoauth2() -> None:
    mailbox = FakeMailbox()
    tokens = ReplayTransport(
        Route(
            "POST",
            r"/acme.example/oauth2/v2.0/token$",
            [
                json_response(
                    {
                        "token_type": "Bearer",
                        "scope": OAUTH["scope"],
                        "expires_in": 3599,
                        "access_token": mailbox.oauth_token,
                    }
                )
            ],
        )
    )
    sink, result = run_source(oauth_source(mailbox, tokens))
    assert (result.done and len(sink.records) == len(MESSAGES) - 1) or len(sink.records) > 0
    assert [command[1] for command in mailbox.sent("AUTHENTICATE")] == ["XOAUTH2"]
    assert mailbox.sent("LOGIN") == []
    form = dict(item.split("=", 1) for item in tokens.requests[0].content.decode().split("&"))
    assert form["grant_type"] == "refresh_token" and form["client_id"] == OAUTH["client_id"]
    assert "scope" in form and "client_secret" not in form  # a public client has no secret


def test_a_refused_oauth_token_is_a_clear_error() -> None:
    mailbox = FakeMailbox()
    source = ImapSource(
        ImapConfig.model_validate(
            {**{k: v for k, v in OAUTH.items() if k in ("host", "username")}, "access_token": "stale"}
        ),
        connect=mailbox.connect,
        sleep=FakeSleep(),
        jitter=lambda: 0.5,
    )
    with pytest.raises(BadCredentialsError, match="Check the OAuth token, its scope") as caught:
        run_source(source)
    assert "stale" not in str(caught.value)


def test_a_revoked_refresh_token_fails_before_connecting_to_imap_twice() -> None:
    mailbox = FakeMailbox()
    tokens = ReplayTransport(
        Route(
            "POST",
            r"/token$",
            [
                json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS70008: The refresh token has expired",
                    },
                    400,
                )
            ],
        )
    )
    with pytest.raises(SourceError, match="AADSTS70008"):
        run_source(oauth_source(mailbox, tokens))
    assert mailbox.sent("AUTHENTICATE") == []
