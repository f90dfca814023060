"""Filter mode (issue 20): mail for a filter-mode domain is scanned once and
each recipient's own policy decides its fate. Users of one domain with
different policies receive the same mail: one gets it quarantined in the
`Spam` folder of their store account (browsable over IMAP) and archived,
one tagged (`X-Spam-Status`, a subject prefix), one delivered unchanged,
one rejected; allow and block lists win over the score; a policy change
applies to the next message without a restart; every decision is a
`filtered` event naming the policy level that decided.
`SLUICE_TEST_DATABASE=postgres` runs it on PostgreSQL."""

import imaplib
import json
import time

from helpers.mail import assert_relayed_exactly, send_raw
from helpers.net import tls_context
from helpers.procs import wait_until

DOMAIN = "isp.test"

SPAMMY = (
    b"From: \"WINNER NOTICE\" <promo@prizes.example>\r\n"
    b"To: undisclosed-recipients:;\r\n"
    b"Subject: YOU HAVE WON $1,000,000 CLAIM NOW!!!\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=us-ascii\r\n"
    b"\r\n"
    b"<html><body><p>CLICK <a href=\"http://198.51.100.7/claim\">HERE</a> to claim your prize!!!"
    b" 100% FREE, act now, limited time, no credit card needed.</p></body></html>\r\n"
)


def policy(sl, *args):
    return sl.cli("policy", *args, "--data", sl.data).stdout.decode()


def thresholds(sl, scope, unsure, spam):
    """Sets both ends of the unsure band, in the order that keeps it valid
    (unsure never above spam, at every step)."""
    first = sl.cli("policy", "set", scope, "unsure_threshold", f"{unsure:.2f}", "--data", sl.data, check=False)
    policy(sl, "set", scope, "spam_threshold", f"{spam:.2f}")
    if first.returncode != 0:
        policy(sl, "set", scope, "unsure_threshold", f"{unsure:.2f}")


def score_of(sl, tmp_path, content):
    """What the filter scores `content` (the same shipped rules and model
    the server uses), from `sluice spam score`."""
    f = tmp_path / "probe.eml"
    f.write_bytes(content)
    line = sl.cli("spam", "score", str(f), "--data", sl.data).stdout.decode().strip().splitlines()[-1]
    return json.loads(line)["score"]


def filtered(sl):
    """address -> (action, detail) of every `filtered` event."""
    rows = sl.rows("SELECT address, reason, detail FROM events WHERE type = 'filtered' ORDER BY id")
    return [(a, r, json.loads(d)) for a, r, d in rows]


def imap_folder(sl, user, password, folder):
    host, port = sl.imap
    with imaplib.IMAP4(host, port) as m:
        m.starttls(ssl_context=tls_context())
        m.login(user, password)
        typ, data = m.select(f'"{folder}"')
        assert typ == "OK", (folder, data)
        n = int(data[0])
        bodies = []
        for i in range(1, n + 1):
            typ, got = m.fetch(str(i), "(BODY.PEEK[])")
            bodies.append(got[0][1])
        return bodies


def setup(sluice_factory, sink, tmp_path):
    # Sender authentication (its own test: test_authentication.py) would
    # add a header; here the copies are compared byte for byte.
    sl = sluice_factory(relay=sink.addr, extra_args=["--filter-domain", DOMAIN],
                        config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
                                "spam": {"authenticate": False}})
    pw = tmp_path / "ann.pw"
    pw.write_text("ann-secret\n")
    sl.cli("account", "add", f"ann@{DOMAIN}", "--password-file", str(pw), "--data", sl.data)
    return sl


def test_each_recipient_gets_what_their_policy_says(sluice_factory, sink, tmp_path):
    sl = setup(sluice_factory, sink, tmp_path)
    s = score_of(sl, tmp_path, SPAMMY)
    # Thresholds on either side of this message's score, whatever it is.
    for user, threshold, action in [("ann", s - 1, "quarantine"), ("bob", s - 1, "tag"),
                                    ("cat", s + 10, "quarantine"), ("dan", s - 1, "reject")]:
        thresholds(sl, f"{user}@{DOMAIN}", threshold - 0.5, threshold)
        policy(sl, "set", f"{user}@{DOMAIN}", "spam_action", action)
        policy(sl, "set", f"{user}@{DOMAIN}", "unsure_action", "deliver")
    policy(sl, "set", f"ann@{DOMAIN}", "archive", "true")
    policy(sl, "set", f"bob@{DOMAIN}", "subject_prefix", "[SPAM]")
    explained = policy(sl, "explain", f"cat@{DOMAIN}")
    assert f"from user cat@{DOMAIN}" in explained, explained

    rcpts = [f"{u}@{DOMAIN}" for u in ("ann", "bob", "cat", "dan")]
    send_raw(sl.smtp, SPAMMY, mail_from="promo@prizes.example", rcpts=rcpts)

    # bob's copy is tagged, cat's is the original unchanged; ann and dan get none.
    msgs = sink.wait_for(2, timeout=20)
    by_rcpt = {tuple(m.rcpts): m.content for m in msgs}
    assert set(by_rcpt) == {(f"bob@{DOMAIN}",), (f"cat@{DOMAIN}",)}, by_rcpt.keys()
    tagged = by_rcpt[(f"bob@{DOMAIN}",)]
    assert b"\r\nX-Spam-Status: Yes, score=" in tagged, tagged[:400]
    assert b"\r\nSubject: [SPAM] YOU HAVE WON" in tagged, tagged[:400]
    assert_relayed_exactly(by_rcpt[(f"cat@{DOMAIN}",)], SPAMMY)

    # ann's copy is in her Spam folder, and in her Archive, over IMAP.
    spam = wait_until(lambda: imap_folder(sl, f"ann@{DOMAIN}", "ann-secret", "Spam") or None, 20,
                      what="ann's Spam folder")
    assert spam == [SPAMMY]
    assert imap_folder(sl, f"ann@{DOMAIN}", "ann-secret", "Archive") == [SPAMMY]

    # Every decision is an event with the level that decided.
    events = wait_until(lambda: len(filtered(sl)) >= 4 and filtered(sl), 20, what="filtered events")
    got = {a: (r, d["level"], d["class"]) for a, r, d in events}
    assert got == {
        f"ann@{DOMAIN}": ("quarantine", f"user ann@{DOMAIN}", "spam"),
        f"bob@{DOMAIN}": ("tag", f"user bob@{DOMAIN}", "spam"),
        f"cat@{DOMAIN}": ("deliver", f"user cat@{DOMAIN}", "ham"),
        f"dan@{DOMAIN}": ("reject", f"user dan@{DOMAIN}", "spam"),
    }, got
    assert all(abs(d["score"] - s) < 0.01 for _, _, d in events), (s, events)
    sl.wait_queue_empty(20)

    # A change applies to the next message, no restart: cat now tags.
    thresholds(sl, f"cat@{DOMAIN}", s - 1.5, s - 1)
    policy(sl, "set", f"cat@{DOMAIN}", "spam_action", "tag")
    send_raw(sl.smtp, SPAMMY, mail_from="promo@prizes.example", rcpts=[f"cat@{DOMAIN}"])
    again = sink.wait_for(3, timeout=20)[-1]
    assert b"X-Spam-Status: Yes" in again.content, again.content[:300]


def test_the_sweeper_honours_each_users_retention_policy(sluice_factory, sink, tmp_path):
    """ann keeps Spam 2 days (her own policy), eve 10 (her domain's): a
    sweep as of 3 days later takes ann's copy only, one as of 11 days
    later eve's too."""
    sl = setup(sluice_factory, sink, tmp_path)
    pw = tmp_path / "eve.pw"
    pw.write_text("eve-secret\n")
    sl.cli("account", "add", f"eve@{DOMAIN}", "--password-file", str(pw), "--data", sl.data)
    s = score_of(sl, tmp_path, SPAMMY)
    thresholds(sl, DOMAIN, s - 1.5, s - 1)
    policy(sl, "set", DOMAIN, "spam_action", "quarantine")
    policy(sl, "set", DOMAIN, "retention_days.Spam", "10")
    policy(sl, "set", f"ann@{DOMAIN}", "retention_days.Spam", "2")
    assert "from user ann@" in policy(sl, "explain", f"ann@{DOMAIN}")
    send_raw(sl.smtp, SPAMMY, mail_from="promo@prizes.example", rcpts=[f"ann@{DOMAIN}", f"eve@{DOMAIN}"])
    for user in ("ann", "eve"):
        wait_until(lambda: imap_folder(sl, f"{user}@{DOMAIN}", f"{user}-secret", "Spam") or None, 20,
                   what=f"{user}'s Spam folder")

    def sweep(days):
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + days * 86400))
        return sl.cli("quarantine", "sweep", "--as-of", at, "--data", sl.data).stdout.decode()

    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
    dry = sl.cli("quarantine", "sweep", "--dry-run", "--as-of", at, "--data", sl.data).stdout.decode()
    assert f"ann@{DOMAIN}/Spam: 1 message(s)" in dry and "would sweep 1 message(s)" in dry, dry
    assert len(imap_folder(sl, f"ann@{DOMAIN}", "ann-secret", "Spam")) == 1, "a dry run deletes nothing"
    assert "swept 1 message" in sweep(3)
    assert imap_folder(sl, f"ann@{DOMAIN}", "ann-secret", "Spam") == []
    kept = imap_folder(sl, f"eve@{DOMAIN}", "eve-secret", "Spam")
    assert len(kept) == 1 and kept[0].endswith(SPAMMY), kept
    assert "swept 1 message" in sweep(11)
    assert imap_folder(sl, f"eve@{DOMAIN}", "eve-secret", "Spam") == []


def test_quarantine_without_a_store_account_is_tagged_not_stranded(sluice_factory, sink, tmp_path):
    """fay has no store account, nor has her domain: her Spam folder does
    not exist, so her quarantine is a tagged delivery and her archive is
    skipped, both said in the event; gus blocks the sender and has no
    account either: his copy is dropped (a blocked sender is never
    delivered). Nothing waits in the queue."""
    sl = setup(sluice_factory, sink, tmp_path)
    s = score_of(sl, tmp_path, SPAMMY)
    fay = f"fay@{DOMAIN}"
    thresholds(sl, fay, s - 1.5, s - 1)
    policy(sl, "set", fay, "spam_action", "quarantine")
    policy(sl, "set", fay, "archive", "true")
    gus = f"gus@{DOMAIN}"
    policy(sl, "set", gus, "block_senders", "prizes.example")
    send_raw(sl.smtp, SPAMMY, mail_from="promo@prizes.example", rcpts=[fay, gus])
    got = sink.wait_for(1, timeout=20)[0]
    assert got.rcpts == [fay] and b"X-Spam-Status: Yes" in got.content, got.content[:300]
    events = wait_until(lambda: len(filtered(sl)) >= 2 and filtered(sl), 20, what="the filtered events")
    by = {a: (r, d) for a, r, d in events}
    assert by[gus][0] == "reject" and "rejected instead of quarantined" in by[gus][1]["why"], by[gus]
    action, detail = by[fay]
    assert action == "tag", events
    assert "no store account: tagged instead of quarantined" in detail["why"], detail
    assert "not archived" in detail["why"] and not detail["archive"], detail
    sl.wait_queue_empty(20)


def test_every_recipient_rejecting_refuses_at_end_of_data_and_lists_win(sluice_factory, sink, tmp_path):
    sl = setup(sluice_factory, sink, tmp_path)
    policy(sl, "set", DOMAIN, "spam_action", "reject")
    thresholds(sl, DOMAIN, -100, -99)
    # Everything scores as spam for this domain now: the message is refused
    # at the end of DATA, naming why.
    import smtplib
    with smtplib.SMTP(*sl.smtp) as c:
        c.ehlo("client.test")
        try:
            c.sendmail("promo@prizes.example", [f"eve@{DOMAIN}"], SPAMMY)
            raise AssertionError("accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550 and b"5.7.1" in e.smtp_error and b"spam" in e.smtp_error, e
    events = wait_until(lambda: filtered(sl) or None, 20, what="the refusal's event")
    assert [(a, r) for a, r, _ in events] == [(f"eve@{DOMAIN}", "reject")], events
    assert "refused: every recipient's filter policy says so" in sl.log()

    # An allowed sender wins over the score (for the user who allows it);
    # a blocked one is quarantined for a user whose score says ham.
    policy(sl, "set", f"eve@{DOMAIN}", "allow_senders", "*@prizes.example")
    thresholds(sl, f"fay@{DOMAIN}", 99, 100)
    policy(sl, "set", f"fay@{DOMAIN}", "spam_action", "quarantine")
    policy(sl, "set", f"fay@{DOMAIN}", "block_senders", "prizes.example")
    pw = tmp_path / "fay.pw"
    pw.write_text("fay-secret\n")
    sl.cli("account", "add", f"fay@{DOMAIN}", "--password-file", str(pw), "--data", sl.data)
    send_raw(sl.smtp, SPAMMY, mail_from="promo@prizes.example", rcpts=[f"eve@{DOMAIN}", f"fay@{DOMAIN}"])
    m = sink.wait_for(1, timeout=20)[0]
    assert m.rcpts == [f"eve@{DOMAIN}"], m.rcpts
    assert_relayed_exactly(m.content, SPAMMY)
    events = wait_until(lambda: len(filtered(sl)) >= 3 and filtered(sl), 20, what="two more events")
    last = {a: (r, d["why"]) for a, r, d in events[1:]}
    assert last[f"eve@{DOMAIN}"][0] == "deliver" and "allow_senders" in last[f"eve@{DOMAIN}"][1], last
    assert last[f"fay@{DOMAIN}"][0] == "quarantine" and "block_senders" in last[f"fay@{DOMAIN}"][1], last


def corpus(tmp_path, n=120):
    """A small training corpus of made-up ham and spam (the minimum the
    filter needs before Bayes has a say is 200 messages, 50 of each)."""
    import random
    rnd = random.Random(20)
    ham_words = "meeting agenda project schedule review notes budget team lunch report draft minutes".split()
    spam_words = "cheap pills winner prize casino credit offer viagra lottery bonus discount crypto".split()
    dirs = {}
    for kind, words in (("ham", ham_words), ("spam", spam_words)):
        d = tmp_path / f"train-{kind}"
        d.mkdir()
        for i in range(n):
            body = " ".join(rnd.choice(words) for _ in range(40))
            (d / f"{i}.eml").write_bytes(
                f"From: someone{i}@{kind}.example\r\nTo: you@{DOMAIN}\r\nSubject: {rnd.choice(words)} {i}\r\n"
                f"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{kind}{i}@x.example>\r\n\r\n{body}\r\n".encode())
        dirs[kind] = str(d)
    return dirs


def unusual(n):
    """Mail made of words the global model never saw."""
    return (f"From: Newsletter <news@digest.example>\r\nTo: reader@{DOMAIN}\r\nSubject: zorblat quixfen {n}\r\n"
            f"Date: Sun, 06 Dec 2026 11:00:00 +0000\r\nMessage-ID: <digest{n}@digest.example>\r\n\r\n"
            "zorblat quixfen marvoly tendrix plombus skatter vindrel oquamp zorblat quixfen marvoly\r\n").encode()


def test_an_imap_move_into_spam_teaches_that_user_only(sluice_factory, sink, tmp_path):
    sl = setup(sluice_factory, sink, tmp_path)
    pw = tmp_path / "bob.pw"
    pw.write_text("bob-secret\n")
    sl.cli("account", "add", f"bob@{DOMAIN}", "--password-file", str(pw), "--data", sl.data)
    dirs = corpus(tmp_path)
    sl.cli("spam", "train", "--ham", dirs["ham"], "--spam", dirs["spam"], "--data", sl.data)
    sl.log_when(lambda log: "spam model reloaded" in log, 15, what="the server reloading the model")
    for user in ("ann", "bob"):
        policy(sl, "set", f"{user}@{DOMAIN}", "archive", "true")
        thresholds(sl, f"{user}@{DOMAIN}", 50, 60)  # every message is delivered

    rcpts = [f"ann@{DOMAIN}", f"bob@{DOMAIN}"]
    send_raw(sl.smtp, unusual(1), mail_from="news@digest.example", rcpts=rcpts)
    events = wait_until(lambda: len(filtered(sl)) >= 2 and filtered(sl), 20, what="the first decisions")
    first = {a: d["score"] for a, _, d in events}
    assert first[f"ann@{DOMAIN}"] == first[f"bob@{DOMAIN}"], first

    # ann says it is spam: she moves her archived copy into Spam.
    wait_until(lambda: imap_folder(sl, f"ann@{DOMAIN}", "ann-secret", "Archive") or None, 20, what="ann's Archive")
    host, port = sl.imap
    with imaplib.IMAP4(host, port) as m:
        m.starttls(ssl_context=tls_context())
        m.login(f"ann@{DOMAIN}", "ann-secret")
        m.select('"Archive"')
        typ, data = m.copy("1", "Spam")
        assert typ == "OK", data
    sl.log_when(lambda log: "trained from an IMAP move" in log, 10, what="the move being learnt")

    send_raw(sl.smtp, unusual(2), mail_from="news@digest.example", rcpts=rcpts)
    events = wait_until(lambda: len(filtered(sl)) >= 4 and filtered(sl), 20, what="the second decisions")
    second = {a: d for a, _, d in events[2:]}
    ann, bob = second[f"ann@{DOMAIN}"], second[f"bob@{DOMAIN}"]
    assert ann["score"] > bob["score"] + 1, (ann, bob)
    assert any(s["name"].startswith("BAYES_9") for s in ann["signals"]), ann["signals"]
    assert abs(bob["score"] - first[f"bob@{DOMAIN}"]) < 0.5, (bob, first)
