"""The quarantine store over IMAP (issue 4) with real clients: Python's
imaplib (STARTTLS, LIST, SELECT, UID FETCH byte for byte, SEARCH, STORE,
MOVE, IDLE), mbsync syncing an account to a Maildir, release, retention
with --as-of, and hostile input."""

import datetime
import imaplib
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from helpers.mail import send_raw
from helpers.net import tls_context
from helpers.procs import wait_until

from test_tee import blob, fixture, on_disk, stored

PASSWORD = "imap-s3cret"
BOUNCE = "bounces/lhost-postfix-05.eml"
AUTOREPLY = "autoreplies/sisimai-rfc3834-01.eml"
COMPLAINT = "complaints/flanker-aol.eml"


@pytest.fixture
def store(sink, sluice_factory, tmp_path):
    """A sluice relaying to `sink`, with account acme for sluice.test."""
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    sl.cli("account", "add", "acme", "--password-file", str(pw), "--domain", "sluice.test", "--data", sl.data)
    sl.stop()
    sl.start()
    return sl


def deliver(sl, *names):
    """Sends corpus samples over SMTP; returns {name: bytes} once all are filed."""
    sent = {}
    before = len(stored(sl))
    for n in names:
        raw = fixture(n)
        send_raw(sl.smtp, raw, mail_from="", rcpts=("bounces@sluice.test",))
        sent[n] = raw
    wait_until(lambda: len(stored(sl)) == before + len(names), 20, what="copies filed")
    return sent


def login(sl, user="acme", password=PASSWORD):
    m = imaplib.IMAP4(*sl.imap)
    m.starttls(ssl_context=tls_context())
    m.login(user, password)
    return m


def test_imaplib_session_over_starttls(store, sink):
    sl = store
    sent = deliver(sl, BOUNCE, AUTOREPLY, COMPLAINT)
    # The downstream received each original.
    got = [m.content for m in sink.wait_for(3, timeout=20)]
    for raw in sent.values():
        assert any(g.endswith(raw) for g in got)

    m = imaplib.IMAP4(*sl.imap)
    # No password before TLS.
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        m.login("acme", PASSWORD)
    m.starttls(ssl_context=tls_context())
    assert "AUTH=PLAIN" in m.capabilities
    typ, _ = m.login("acme", PASSWORD)
    assert typ == "OK"

    typ, listing = m.list()
    names = {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in listing}
    for f in ("Bounces/Hard", "Bounces/Soft", "Delays", "Delivered", "AutoReplies", "Complaints",
              "Unsubscribes", "Challenges", "Human", "Release", "INBOX"):
        assert f in names, listing
    assert any(b"\\Noselect" in line and line.endswith(b'"Bounces"') for line in listing)
    typ, sub = m.list("Bounces/", "%")
    assert sorted(sub) == [b'(\\HasNoChildren) "/" "Bounces/Hard"', b'(\\HasNoChildren) "/" "Bounces/Soft"']

    # Each sample in the folder of its verdict, byte for byte.
    for folder, name in (("Bounces/Hard", BOUNCE), ("AutoReplies", AUTOREPLY), ("Complaints", COMPLAINT)):
        typ, data = m.select(f'"{folder}"', readonly=True)
        assert (typ, data) == ("OK", [b"1"]), (folder, data)
        typ, data = m.uid("FETCH", "1", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK"
        assert data[0][1] == sent[name], folder
        assert f"RFC822.SIZE {len(sent[name])}".encode() in data[0][0]
    # Verdict and reason as keywords; peeking left \Seen unset.
    m.select('"Bounces/Hard"')
    typ, data = m.uid("FETCH", "1", "(FLAGS)")
    assert b"$Verdict_bounce" in data[0] and b"$Reason_userunknown" in data[0] and b"\\Seen" not in data[0]

    # ENVELOPE, BODYSTRUCTURE, header fields and partial sections.
    typ, data = m.uid("FETCH", "1", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[1]<0.10>)")
    assert typ == "OK"
    head = data[0][0]
    assert b'"Undelivered Mail Returned to Sender"' in head
    assert b'"report" ("report-type" "delivery-status"' in head
    assert data[0][1] == b"Subject: Undelivered Mail Returned to Sender\r\n\r\n"
    assert data[1][1] == b"This is th"

    # SEARCH by sender, subject, header, text and flags.
    assert m.uid("SEARCH", "FROM", "MAILER-DAEMON") == ("OK", [b"1"])
    assert m.uid("SEARCH", "SUBJECT", "undelivered") == ("OK", [b"1"])
    assert m.uid("SEARCH", "HEADER", "Message-ID", "FFFFFFFFFFF") == ("OK", [b"1"])
    assert m.uid("SEARCH", "TEXT", "kijitora") == ("OK", [b"1"])
    assert m.uid("SEARCH", "TEXT", "no-such-words-here") == ("OK", [b""])
    assert m.uid("SEARCH", "KEYWORD", "$Reason_userunknown") == ("OK", [b"1"])
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%d-%b-%Y")
    assert m.uid("SEARCH", "SINCE", today) == ("OK", [b"1"])
    assert m.uid("SEARCH", "BEFORE", "01-Jan-2000") == ("OK", [b""])

    # STORE persists; a non-peek fetch sets \Seen.
    typ, data = m.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and b"\\Flagged" in data[0]
    assert m.uid("SEARCH", "FLAGGED") == ("OK", [b"1"])
    m.uid("FETCH", "1", "(BODY[TEXT])")
    assert m.uid("SEARCH", "SEEN") == ("OK", [b"1"])

    # MOVE (UIDPLUS answer), then the message is in Human with a new UID.
    typ, data = m._simple_command("UID", "MOVE", "1", "Human")
    assert typ == "OK"
    copyuid = m.untagged_responses.get("OK", [b""])
    assert any(b"COPYUID" in c for c in copyuid), copyuid
    assert m.select("Bounces/Hard") == ("OK", [b"0"])
    typ, data = m.status("Human", "(MESSAGES UIDNEXT UNSEEN)")
    assert data == [b'"Human" (MESSAGES 1 UIDNEXT 2 UNSEEN 0)'], data
    m.select("Human")
    typ, data = m.uid("FETCH", "1", "(FLAGS BODY.PEEK[])")
    assert b"\\Flagged" in data[0][0] and data[0][1] == sent[BOUNCE]

    # COPY, then delete + EXPUNGE the copy.
    typ, data = m._simple_command("UID", "COPY", "1", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0]
    m.select("Archive")
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert data == [b"1"]
    assert m.select("Archive") == ("OK", [b"0"])
    m.logout()


def test_fetch_over_several_chunks_pairs_each_uid_with_its_own_bytes(store):
    # A FETCH reads blobs 256 messages at a time, the next chunk while the
    # last one's responses go out: 300 messages cross a chunk boundary.
    import smtplib
    n = 300
    with smtplib.SMTP(*store.smtp) as c:
        for i in range(n):
            c.sendmail("ann@src.test", ["desk@sluice.test"],
                       f"From: ann@src.test\r\nSubject: note {i}\r\nX-Seq: {i}\r\n\r\nHello {i}\r\n")
    wait_until(lambda: len(stored(store)) == n, 60, what=f"{n} copies filed")
    m = login(store)
    typ, data = m.select("Human", readonly=True)
    assert (typ, data) == ("OK", [str(n).encode()])
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (x-seq)])")
    assert typ == "OK"
    got = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(item[0].split(b"UID ")[1].split()[0])
            got[uid] = item[1]
    assert sorted(got) == list(range(1, n + 1))
    assert sorted(int(v.split(b":")[1]) for v in got.values()) == list(range(n))
    # Each UID's field is the one in its own full bytes, across the boundary.
    for uid in (1, 255, 256, 257, 299, 300):
        typ, full = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        seq = next(ln for ln in full[0][1].split(b"\r\n") if ln.startswith(b"X-Seq:"))
        assert got[uid] == seq + b"\r\n\r\n", (uid, got[uid], seq)
    m.logout()


def test_accounts_see_only_their_own_folders(store, tmp_path):
    sl = store
    pw = tmp_path / "pw2"
    pw.write_text("other-pw\n")
    sl.cli("account", "add", "globex", "--password-file", str(pw), "--domain", "globex.test", "--data", sl.data)
    deliver(sl, BOUNCE)
    m = login(sl, "globex", "other-pw")
    assert m.select('"Bounces/Hard"') == ("OK", [b"0"])
    m.logout()
    m = login(sl)
    assert m.select('"Bounces/Hard"') == ("OK", [b"1"])
    m.logout()


def test_idle_is_woken_by_a_new_arrival(store):
    sl = store
    m = login(sl)
    m.select("AutoReplies")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    threading.Timer(0.5, lambda: send_raw(sl.smtp, fixture(AUTOREPLY), mail_from="",
                                         rcpts=("bounces@sluice.test",))).start()
    m.sock.settimeout(20)
    line = m.readline()
    assert line == b"* 1 EXISTS\r\n", line
    m.send(b"DONE\r\n")
    assert m.readline() == f"{tag} OK IDLE terminated\r\n".encode()
    m.logout()


def test_mbsync_syncs_the_account_to_a_maildir(store, tmp_path):
    sl = store
    sent = deliver(sl, BOUNCE, AUTOREPLY)
    maildir = tmp_path / "mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""
IMAPAccount acme
Host localhost
Port {sl.imap[1]}
User acme
Pass {PASSWORD}
SSLType STARTTLS
CertificateFile {sl.tls_cert}

IMAPStore acme-remote
Account acme

MaildirStore acme-local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel acme
Far :acme-remote:
Near :acme-local:
Patterns "Bounces/Hard" AutoReplies
Create Near
Sync Pull
SyncState *
""")
    p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    for folder, name in (("Bounces/Hard", BOUNCE), ("AutoReplies", AUTOREPLY)):
        files = [os.path.join(dp, f) for dp, _, fs in os.walk(maildir / folder) for f in fs
                 if os.path.basename(dp) in ("cur", "new")]
        assert len(files) == 1, (folder, files)
        with open(files[0], "rb") as f:
            got = f.read()
        # mbsync stores lines with LF and adds its own X-TUID tracking
        # header; everything else is the bytes sent over SMTP.
        got_lines = got.split(b"\n")
        assert sum(ln.startswith(b"X-TUID: ") for ln in got_lines) == 1, got[:2000]
        got = b"\n".join(ln for ln in got_lines if not ln.startswith(b"X-TUID: "))
        assert got == sent[name].replace(b"\r\n", b"\n"), folder


def test_release_reinjects_to_the_original_recipients(store, sink):
    sl = store
    sent = deliver(sl, BOUNCE, AUTOREPLY)
    sink.wait_for(2, timeout=20)
    # By command.
    p = sl.cli("quarantine", "release", "acme", "Bounces/Hard", "1", "--data", sl.data)
    assert b"released UID 1" in p.stdout, p.stdout
    msgs = sink.wait_for(3, timeout=20)
    assert msgs[-1].rcpts == ["bounces@sluice.test"]
    assert msgs[-1].content.endswith(sent[BOUNCE])
    # By moving it into Release over IMAP.
    m = login(sl)
    m.select("AutoReplies")
    typ, data = m._simple_command("UID", "MOVE", "1", "Release")
    assert typ == "OK" and b"1 of 1 released" in data[0], data
    msgs = sink.wait_for(4, timeout=20)
    assert any(x.content.endswith(sent[AUTOREPLY]) for x in msgs[3:])
    m.select("Release")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"$Released" in data[0]
    m.logout()
    # Unknown UIDs are an error, not a crash.
    p = sl.cli("quarantine", "release", "acme", "Bounces/Hard", "99", "--data", sl.data, check=False)
    assert p.returncode != 0 and b"no message with UID 99" in p.stderr


def test_retention_with_as_of(store):
    sl = store
    deliver(sl, BOUNCE, AUTOREPLY)
    rows = stored(sl)
    hashes = {r[5] for r in rows}
    for h in hashes:
        assert blob(sl, h)
    m = login(sl)
    # Fresh mail survives a sweep as of now + 29 days.
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=29)).isoformat()
    p = sl.cli("quarantine", "sweep", "--as-of", later, "--data", sl.data)
    assert b"swept 0 message(s)" in p.stdout
    assert m.select('"Bounces/Hard"') == ("OK", [b"1"])
    # 31 days on, it has expired: gone from IMAP and from disk.
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=31)).isoformat()
    p = sl.cli("quarantine", "sweep", "--as-of", later, "--data", sl.data)
    assert b"swept 2 message(s), 2 blob(s)" in p.stdout, p.stdout
    # A NOOP in the selected folder reports the expunge.
    m.noop()
    assert m.untagged_responses.get("EXPUNGE") == [b"1"], m.untagged_responses
    assert m.select('"Bounces/Hard"') == ("OK", [b"0"])
    for h in hashes:
        assert blob(sl, h) is None
    # Not just unreachable: on SQLite the bytes are overwritten in the
    # database's files (secure_delete, then a truncating checkpoint).
    # (PostgreSQL keeps a deleted row's bytes in its files until VACUUM
    # reuses the space: no such promise there yet.)
    for rel in (BOUNCE, AUTOREPLY) if not sl.database else ():
        body = fixture(rel).split(b"\r\n\r\n", 1)[1]
        assert not on_disk(sl.data, body[:200]), f"swept bytes of {rel} still in {on_disk(sl.data, body[:200])}"
    # UIDs are never reused: the next copy is UID 2.
    deliver(sl, BOUNCE)
    m.select('"Bounces/Hard"')
    typ, data = m.uid("SEARCH", "ALL")
    assert data == [b"2"]
    m.logout()


class Raw:
    """A line-level IMAP client for input no library would send."""

    def __init__(self, addr):
        self.s = socket.create_connection(addr, timeout=10)
        self.f = self.s.makefile("rb")
        self.greeting = self.f.readline()

    def tls(self):
        self.cmd(b"s STARTTLS")
        self.s = tls_context().wrap_socket(self.s)
        self.f = self.s.makefile("rb")

    def cmd(self, line):
        self.s.sendall(line + b"\r\n")
        return self.until(line.split(b" ", 1)[0])

    def until(self, tag):
        lines = []
        while True:
            line = self.f.readline()
            assert line, f"connection closed; got {lines}"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines


def test_hostile_input_gets_tagged_errors(store):
    sl = store
    c = Raw(sl.imap)
    assert c.greeting.startswith(b"* OK")
    # Garbage and unknown commands: tagged BAD, the session goes on.
    assert c.cmd(b"a1 FROBNICATE now")[-1].startswith(b"a1 BAD")
    assert c.cmd(b"a2 FETCH")[-1].startswith(b"a2 BAD")
    assert c.cmd(b"a3 SELECT INBOX")[-1].startswith(b"a3 NO")  # not logged in
    # A huge literal is refused before the client sends it.
    c.s.sendall(b"a4 LOGIN {999999999}\r\n")
    assert c.f.readline().startswith(b"a4 BAD [TOOBIG]")
    # The connection is still usable.
    assert c.cmd(b"a5 NOOP")[-1].startswith(b"a5 OK")
    # Wrong passwords: NO after a delay; the third closes the connection.
    c.tls()
    t = time.monotonic()
    assert c.cmd(b'b1 LOGIN acme "wrong"')[-1].startswith(b"b1 NO [AUTHENTICATIONFAILED]")
    assert time.monotonic() - t >= 0.2
    assert c.cmd(b'b2 LOGIN acme "wrong"')[-1].startswith(b"b2 NO")
    out = c.cmd(b'b3 LOGIN acme "wrong"')
    assert out[-1].startswith(b"b3 NO [AUTHENTICATIONFAILED]"), out
    assert c.f.readline().startswith(b"* BYE")
    # Two more failures from the same address lock it out, right password or not.
    for i in range(2):
        c = Raw(sl.imap)
        c.tls()
        c.cmd(b'c LOGIN acme "wrong"')
    c = Raw(sl.imap)
    c.tls()
    assert c.cmd(f'd LOGIN acme "{PASSWORD}"'.encode())[-1].startswith(b"d NO [UNAVAILABLE]")
    # The server is fine: SMTP still works and nothing panicked.
    deliver(sl, BOUNCE)


def test_client_that_never_logs_in_is_dropped(sink, sluice_factory):
    sl = sluice_factory(relay=sink.addr, config={"imap": {"login_timeout_secs": 3}})
    c = Raw(sl.imap)
    # Meanwhile the listener keeps serving others.
    other = Raw(sl.imap)
    assert other.cmd(b"x CAPABILITY")[-1].startswith(b"x OK")
    c.s.settimeout(30)
    t = time.monotonic()
    line = c.f.readline()
    assert line.startswith(b"* BYE"), line
    assert 2 < time.monotonic() - t < 15
    assert c.f.readline() == b"", "the connection is closed after BYE"


def test_retention_per_account_and_folder(sink, sluice_factory, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    # The account comes from the config file, with a 1-day AutoReplies folder.
    sl = sluice_factory(relay=sink.addr, config=f"""
[[accounts]]
name = "acme"
password_file = "{pw}"
domains = ["sluice.test"]
folder_retention_days = {{ "AutoReplies" = 1 }}
""")
    deliver(sl, BOUNCE, AUTOREPLY)
    now = datetime.datetime.now(datetime.timezone.utc)

    def sweep(days):
        p = sl.cli("quarantine", "sweep", "--as-of", (now + datetime.timedelta(days=days)).isoformat(),
                   "--data", sl.data)
        return p.stdout

    assert b"swept 1 message(s)" in sweep(2)
    assert [r[0] for r in stored(sl)] == ["Bounces/Hard"]
    # The account keeps copies 60 days instead of 30.
    sl.cli("account", "retention", "acme", "60", "--data", sl.data)
    assert b"swept 0 message(s)" in sweep(40)
    assert b"swept 1 message(s)" in sweep(61)
    m = login(sl)
    assert m.select('"Bounces/Hard"') == ("OK", [b"0"])
    m.logout()


def test_authenticate_plain_and_implicit_tls(sink, sluice_factory, tmp_path):
    from helpers.net import free_port
    imaps = free_port()
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    sl = sluice_factory(relay=sink.addr, extra_args=["--imaps", f"127.0.0.1:{imaps}"], config=f"""
[[accounts]]
name = "acme"
password_file = "{pw}"
domains = ["sluice.test"]
""")
    deliver(sl, BOUNCE)
    # Implicit TLS from the first byte; AUTHENTICATE PLAIN (SASL-IR).
    m = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=tls_context())
    assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    typ, _ = m.authenticate("PLAIN", lambda _: f"\0acme\0{PASSWORD}".encode())
    assert typ == "OK"
    assert m.select('"Bounces/Hard"') == ("OK", [b"1"])
    m.logout()
    # A wrong password over AUTHENTICATE is refused like LOGIN.
    m = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=tls_context())
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.authenticate("PLAIN", lambda _: b"\0acme\0nope")
    # Without TLS, AUTHENTICATE is refused before any credentials are sent.
    plain = imaplib.IMAP4(*sl.imap)
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        plain.authenticate("PLAIN", lambda _: f"\0acme\0{PASSWORD}".encode())
