"""Provider webhooks in, end to end: an application's message goes out
through sluice; Amazon SES (through SNS), SendGrid, Mailgun, Postmark and
SparkPost then post what became of it to `POST /v1/webhooks/{provider}`,
each signed or authenticated as that provider does it, with keys made here
by openssl as the providers make theirs: an RSA certificate served over
HTTPS for SNS (a test CA sluice is told to trust, and a host pattern that
allows 127.0.0.1), an ECDSA P-256 key for SendGrid, an HMAC key for Mailgun.

What must hold: a signature or credential that does not hold is a 401 and
records nothing; a body that is not the provider's, or a batch with one bad
event, is a 400 and records nothing; events are matched to our message by
our Message-ID (or the provider's id, once linked), recorded once however
often the provider retries, suppress as our own bounces do (a block never),
and are listed by `GET /v1/events?source=PROVIDER`."""

import base64
import hashlib
import hmac
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from helpers.procs import to_toml
from test_outbound import BOUNCE_DOMAIN, api, create_key, delivered_to, message, send, wait_status

PASSWORDS = {"postmark": ("pm-user", "pm-secret-1"), "sparkpost_bearer": "sp-token-2"}
MAILGUN_KEY = "key-mailgun-signing-3"


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


class Keys:
    """A CA and an HTTPS server certificate for 127.0.0.1, the SNS signing
    key and certificate, and SendGrid's ECDSA key, all made for this test."""

    def __init__(self, d):
        self.dir = d
        p = lambda n: os.path.join(d, n)  # noqa: E731
        self.ca, self.ca_key = p("ca.pem"), p("ca.key")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca,
                "-days", "2", "-subj", "/CN=sluice test CA")
        self.server, self.server_key = p("server.pem"), p("server.key")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.server_key, "-out", p("server.csr"),
                "-subj", "/CN=127.0.0.1")
        with open(p("ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", p("server.csr"), "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", self.server, "-days", "2", "-extfile", p("ext"))
        self.sns_key, self.sns_cert = p("sns.key"), p("sns.pem")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.sns_key, "-out", self.sns_cert,
                "-days", "2", "-subj", "/CN=sns.us-east-1.amazonaws.com")
        self.ec_key = p("ec.key")
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.ec_key)
        self.ec_public = base64.b64encode(openssl("ec", "-in", self.ec_key, "-pubout", "-outform", "DER")).decode()

    def sign(self, key, digest, data):
        return base64.b64encode(openssl("dgst", f"-{digest}", "-sign", key, input=data)).decode()


class CertServer:
    """The HTTPS server SNS would be: serves the signing certificate and
    counts GETs of subscription-confirmation URLs."""

    def __init__(self, keys):
        confirmations = self.confirmations = []
        cert = open(keys.sns_cert, "rb").read()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/confirm"):
                    confirmations.append(self.path)
                    body = b"<ConfirmSubscriptionResponse/>"
                elif self.path == "/SimpleNotificationService-test.pem":
                    body = cert
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(keys.server, keys.server_key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def sns(keys, base, message_type, message, version="1", **extra):
    """An SNS message signed as SNS signs it (the documented string to sign)."""
    m = {"Type": message_type, "MessageId": str(uuid.uuid4()),
         "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events", "Message": message,
         "Timestamp": "2026-12-06T10:00:00.000Z", "SignatureVersion": version,
         "SigningCertURL": f"{base}/SimpleNotificationService-test.pem", **extra}
    fields = (["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
              if message_type != "Notification" else ["Message", "MessageId", "Subject", "Timestamp",
                                                      "TopicArn", "Type"])
    signed = "".join(f"{k}\n{m[k]}\n" for k in fields if k in m).encode()
    m["Signature"] = keys.sign(keys.sns_key, "sha1" if version == "1" else "sha256", signed)
    return m


def ses_bounce(mid, address, diagnostic, event_id):
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "feedbackId": event_id,
                   "timestamp": "2026-12-06T10:00:00.000Z", "reportingMTA": "dns; a.example",
                   "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1", "action": "failed",
                                          "diagnosticCode": diagnostic}]},
        "mail": {"timestamp": "2026-12-06T09:59:00.000Z", "source": "app@acme.test",
                 "messageId": f"0100-{event_id}", "destination": [address],
                 "commonHeaders": {"messageId": f"<{mid}>"}},
    })


@pytest.fixture
def hooked(sink, sluice_factory, tmp_path):
    keys = Keys(str(tmp_path))
    certs = CertServer(keys)
    secrets = {}
    for name, line in [("postmark", ":".join(PASSWORDS["postmark"])), ("bearer", PASSWORDS["sparkpost_bearer"]),
                       ("mailgun", MAILGUN_KEY)]:
        secrets[name] = str(tmp_path / f"{name}.secret")
        with open(secrets[name], "w") as f:
            f.write(line + "\n")
    config = {
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr},
        "provider_webhooks.ses": {"tenant": "acme", "sns_cert_hosts": ["127.0.0.1:*"], "sns_ca_file": keys.ca},
        "provider_webhooks.sendgrid": {"tenant": "acme", "public_key": keys.ec_public},
        "provider_webhooks.mailgun": {"tenant": "acme", "signing_key_file": secrets["mailgun"]},
        "provider_webhooks.postmark": {"tenant": "acme", "basic_auth_file": secrets["postmark"]},
        "provider_webhooks.sparkpost": {"tenant": "acme", "bearer_file": secrets["bearer"]},
    }
    sl = sluice_factory(start=False, config=config)
    key = create_key(sl, "acme")
    sl.start()
    yield sl, sink, key, keys, certs
    certs.stop()


def post(sl, provider, body, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    return api(sl, "POST", f"/v1/webhooks/{provider}", raw=raw, headers=h)


def sent_to(sl, sink, key, address):
    """Sends one message to `address` and returns (our id, its Message-ID)."""
    sent = send(sl, key, [address])
    delivered_to(sink, address)
    wait_status(sl, key, sent["id"], address, "delivered")
    return sent["id"], message(sl, key, sent["id"])["message_id"]


def provider_events(sl, key, provider):
    status, page, _ = api(sl, "GET", f"/v1/events?source={provider}&limit=1000", key)
    assert status == 200, page
    return page["events"]


def test_ses_through_sns_is_verified_matched_suppressed_and_recorded_once(hooked):
    sl, sink, key, keys, certs = hooked
    ours, mid = sent_to(sl, sink, key, "alice@dest.test")
    note = sns(keys, certs.base, "Notification",
               ses_bounce(mid, "alice@dest.test", "smtp; 550 5.1.1 <alice@dest.test>... User unknown", "fb-1"))
    status, out, _ = post(sl, "ses", note)
    assert status == 200 and out["recorded"] == 1 and out["matched"] == 1, out
    r = wait_status(sl, key, ours, "alice@dest.test", "bounced", timeout=5)
    ev = r["events"][-1]
    assert ev["smtp_code"] == 550 and ev["smtp_status"] == "5.1.1" and ev["reason"] == "Permanent: General", ev
    assert json.loads(ev["detail"])["provider"] == "ses", ev
    status, s, _ = api(sl, "GET", "/v1/suppressions/alice@dest.test", key)
    assert status == 200 and s["source"] == "bounced" and "userunknown" in s["reason"], s
    # SNS delivers at least once: the same notification again records nothing.
    status, out, _ = post(sl, "ses", note)
    assert status == 200 and (out["recorded"], out["duplicates"]) == (0, 1), out

    # A block that SES calls permanent never suppresses (signature v2 this time).
    ours2, mid2 = sent_to(sl, sink, key, "bob@dest.test")
    block = sns(keys, certs.base, "Notification", ses_bounce(
        mid2, "bob@dest.test", "smtp; 550 5.7.1 Service unavailable; client host blocked using Spamhaus",
        "fb-2"), version="2")
    status, out, _ = post(sl, "ses", block)
    assert status == 200 and out["matched"] == 1, out
    wait_status(sl, key, ours2, "bob@dest.test", "bounced", timeout=5)
    status, _, _ = api(sl, "GET", "/v1/suppressions/bob@dest.test", key)
    assert status == 404, "a block must not suppress"

    # Not matched (another Message-ID): kept on the address all the same.
    stray = sns(keys, certs.base, "Notification",
                ses_bounce("unknown@else.test", "carol@dest.test", "smtp; 550 5.1.1 no such user", "fb-3"))
    status, out, _ = post(sl, "ses", stray)
    assert status == 200 and (out["recorded"], out["matched"]) == (1, 0), out
    status, hist, _ = api(sl, "GET", "/v1/recipients/carol@dest.test", key)
    assert status == 200 and hist["events"][0]["type"] == "bounced", hist

    # Tampered, wrong host, wrong version: 401, nothing recorded.
    before = len(provider_events(sl, key, "ses"))
    bad = dict(sns(keys, certs.base, "Notification",
                   ses_bounce(mid, "alice@dest.test", "smtp; 550 5.1.1 x", "fb-4")))
    bad["Message"] = bad["Message"].replace("fb-4", "fb-5")
    assert post(sl, "ses", bad)[0] == 401
    evil = sns(keys, "https://sns.us-east-1.amazonaws.com.evil.test", "Notification",
               ses_bounce(mid, "alice@dest.test", "smtp; 550 5.1.1 x", "fb-6"))
    status, err, _ = post(sl, "ses", evil)
    assert status == 401 and "not on an allowed host" in err["error"]["message"], err
    v3 = sns(keys, certs.base, "Notification", ses_bounce(mid, "alice@dest.test", "x", "fb-7"))
    v3["SignatureVersion"] = "3"
    assert post(sl, "ses", v3)[0] == 401
    assert len(provider_events(sl, key, "ses")) == before
    assert "provider webhook refused" in sl.log()

    # A subscription is confirmed by a GET of its SubscribeURL, once verified.
    sub = sns(keys, certs.base, "SubscriptionConfirmation", "You have chosen to subscribe...",
              SubscribeURL=f"{certs.base}/confirm?Token=t1", Token="t1")
    status, out, _ = post(sl, "ses", sub)
    assert status == 200 and out["confirmed"] is True, out
    assert certs.confirmations == ["/confirm?Token=t1"]


def sendgrid_post(sl, keys, events, tamper=False):
    body = json.dumps(events).encode() + b"\r\n"
    ts = str(int(time.time()))
    sig = keys.sign(keys.ec_key, "sha256", ts.encode() + body)
    if tamper:
        body = body.replace(b"dest.test", b"dest.tesT", 1)
    return post(sl, "sendgrid", body, {"X-Twilio-Email-Event-Webhook-Signature": sig,
                                       "X-Twilio-Email-Event-Webhook-Timestamp": ts})


def test_sendgrid_batches_are_signed_and_its_ids_link_later_events(hooked):
    sl, sink, key, keys, _ = hooked
    ours, mid = sent_to(sl, sink, key, "dave@dest.test")
    sg_id = "sgm1.filter0001.1.0"
    delivered = {"event": "delivered", "email": "dave@dest.test", "smtp-id": f"<{mid}>", "sg_message_id": sg_id,
                 "sg_event_id": "sge-1", "timestamp": int(time.time()), "response": "250 2.0.0 OK"}
    # One byte changed after signing: refused, nothing recorded.
    status, err, _ = sendgrid_post(sl, keys, [delivered], tamper=True)
    assert status == 401, err
    assert provider_events(sl, key, "sendgrid") == []
    status, out, _ = sendgrid_post(sl, keys, [delivered])
    assert status == 200 and (out["recorded"], out["matched"]) == (1, 1), out
    # An open carries only SendGrid's id: matched through the link the delivery made.
    opened = {"event": "open", "email": "dave@dest.test", "sg_message_id": sg_id, "sg_event_id": "sge-2",
              "timestamp": int(time.time()), "useragent": "Mozilla/5.0", "ip": "192.0.2.7"}
    status, out, _ = sendgrid_post(sl, keys, [opened])
    assert status == 200 and (out["recorded"], out["matched"]) == (1, 1), out
    types = [(e["type"], e["message"]) for e in provider_events(sl, key, "sendgrid")]
    assert types == [("delivered", ours), ("opened", ours)], types
    # Without the signature headers at all: 401.
    assert post(sl, "sendgrid", [delivered])[0] == 401


def mailgun_body(event, ts=None, token=None):
    ts = str(int(time.time()) if ts is None else ts)
    token = token or uuid.uuid4().hex
    sig = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event}


def test_mailgun_hmac_freshness_and_replay(hooked):
    sl, sink, key, _, _ = hooked
    ours, mid = sent_to(sl, sink, key, "erin@dest.test")
    event = {"event": "failed", "severity": "permanent", "reason": "bounce", "id": "mg-1",
             "recipient": "erin@dest.test", "timestamp": time.time(),
             "message": {"headers": {"message-id": mid}},
             "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"}}
    body = mailgun_body(event)
    status, out, _ = post(sl, "mailgun", body)
    assert status == 200 and out["matched"] == 1, out
    wait_status(sl, key, ours, "erin@dest.test", "bounced", timeout=5)
    # The same signed post again is a replay.
    status, err, _ = post(sl, "mailgun", body)
    assert status == 401 and "replay" in err["error"]["message"], err
    # Signed an hour ago, or with another key: refused.
    assert post(sl, "mailgun", mailgun_body(event, ts=int(time.time()) - 3600))[0] == 401
    forged = mailgun_body(event)
    forged["signature"]["signature"] = "0" * 64
    assert post(sl, "mailgun", forged)[0] == 401
    assert len(provider_events(sl, key, "mailgun")) == 1


def test_postmark_and_sparkpost_credentials_bad_bodies_and_unconfigured(hooked):
    sl, sink, key, _, _ = hooked
    pm = {"RecordType": "Bounce", "Type": "HardBounce", "ID": 42, "MessageID": "pm-1",
          "Email": "frank@dest.test", "BouncedAt": "2026-12-06T10:00:00Z", "Details": "smtp;550 5.1.1 unknown"}
    basic = "Basic " + base64.b64encode(":".join(PASSWORDS["postmark"]).encode()).decode()
    wrong = "Basic " + base64.b64encode(b"pm-user:guess").decode()
    assert post(sl, "postmark", pm)[0] == 401
    assert post(sl, "postmark", pm, {"Authorization": wrong})[0] == 401
    status, out, _ = post(sl, "postmark", pm, {"Authorization": basic})
    assert status == 200 and out["recorded"] == 1, out
    status, s, _ = api(sl, "GET", "/v1/suppressions/frank@dest.test", key)
    assert status == 200, "a hard bounce reported by Postmark suppresses"
    # Not Postmark's shape: 400.
    assert post(sl, "postmark", b"not json", {"Authorization": basic})[0] == 400

    bearer = {"Authorization": "Bearer " + PASSWORDS["sparkpost_bearer"]}
    good = {"msys": {"message_event": {"type": "delivery", "event_id": "sp-1", "rcpt_to": "gina@dest.test",
                                       "transmission_id": "t1", "timestamp": str(int(time.time()))}}}
    # A batch with one event that is not an object is refused whole.
    status, err, _ = post(sl, "sparkpost", [good, "garbage"], bearer)
    assert status == 400, err
    assert provider_events(sl, key, "sparkpost") == []
    assert post(sl, "sparkpost", [good], {"Authorization": "Bearer nope"})[0] == 401
    status, out, _ = post(sl, "sparkpost", [good], bearer)
    assert status == 200 and out["recorded"] == 1, out
    assert [e["type"] for e in provider_events(sl, key, "sparkpost")] == ["delivered"]
    # Another tenant sees none of it.
    other = create_key(sl, "other")
    assert provider_events(sl, other, "sparkpost") == []
    status, err, _ = api(sl, "GET", "/v1/events?source=nosuch", key)
    assert status == 422, err


def test_an_unconfigured_provider_is_not_found(sink, sluice_factory):
    sl = sluice_factory(config={"outbound": {"bounce_domain": BOUNCE_DOMAIN}})
    status, err, _ = post(sl, "sendgrid", [])
    assert status == 404 and "not configured" in err["error"]["message"], err
    assert post(sl, "nosuch", [])[0] == 404
