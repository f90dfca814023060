"""PostgreSQL down (issue 18, item 5): the API answers 503, the MX keeps
accepting and relaying (the spool, not the database, is what its 250
promises), and once the database is back the front line's record catches
up: nothing accepted is lost, in the mail or in the record."""

import json
import os
import subprocess

from helpers.mail import send_raw
from helpers.procs import ROOT, wait_until
from test_outbound import api, create_key

SCRIPT = os.path.join(ROOT, "scripts", "pg-test-server")


def track(sl, qid):
    p = sl.cli("track", qid, "--json", "--data", sl.data, check=False)
    return json.loads(p.stdout) if p.returncode == 0 else {}


def relayed(doc, address):
    rcpts = [r for r in doc.get("recipients", []) if r["address"] == address]
    return bool(rcpts) and rcpts[0]["status"] == "relayed"


def test_an_outage_is_answered_and_the_record_catches_up(sink, sluice_factory, tmp_path):
    # A server of its own, so stopping it stops no other test's database.
    pg = f"/tmp/sluice-pg-outage-{os.getpid()}"
    url = subprocess.run([SCRIPT, "start", pg, str(os.getpid())], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        sl = sluice_factory(relay=sink.addr, env={"SLUICE_DATABASE": url})
        key = create_key(sl, "default")
        qid = send_raw(sl.smtp, b"Subject: before\r\n\r\nbefore the outage\r\n", rcpts=("ann@sluice.test",))
        sink.wait_for(1, timeout=20)
        wait_until(lambda: relayed(track(sl, qid), "ann@sluice.test"), 20, what="the first message recorded")

        subprocess.run([SCRIPT, "stop", pg], check=True)
        status, body, _ = api(sl, "GET", "/v1/events", key)
        assert status == 503, (status, body)
        # Accepted (250, with its queue id) and relayed without the database.
        qid = send_raw(sl.smtp, b"Subject: during\r\n\r\nduring the outage\r\n", rcpts=("bob@sluice.test",))
        sink.wait_for(2, timeout=20)
        wait_until(lambda: "kept until it can" in sl.log(), 10, what="the record's backlog said at WARN")

        subprocess.run([SCRIPT, "resume", pg], check=True)
        wait_until(lambda: relayed(track(sl, qid), "bob@sluice.test"), 30, what="the record to catch up")
        assert "caught up" in sl.log()
        assert api(sl, "GET", "/v1/events", key)[0] == 200
    finally:
        subprocess.run([SCRIPT, "stop", pg], check=False)
