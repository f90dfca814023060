#!/usr/bin/env python3
"""A downstream SMTP peer for the end-to-end suite, built on aiosmtpd.

Runs in its own process (so a test can kill it, or stop it and start it again
on the same port). Every accepted message is stored in DIR/messages/ as two
files with the same stem:

    <stem>.eml   the exact bytes received (aiosmtpd's envelope.original_content,
                 i.e. DATA content after dot-unstuffing)
    <stem>.json  the envelope: mail_from, rcpt_tos, mail_options, rcpt_options,
                 peer, helo, connection number

The .json file is written last (atomically, by rename), so a reader that keys
on .json files never sees a half-written message.

Every accepted TCP connection appends one line to DIR/connections.log.

Behaviour is steered by DIR/control.json, read again at every command (so a
test can change it while the sink runs; write it atomically). Keys, all
optional:

    {"mail": "451 4.3.0 try later",            # reply to every MAIL
     "rcpt": [{"match": "nobody@", "reply": "550 5.1.1 No such user"}],
                                                # first rule whose "match" is a
                                                # substring of the address wins
     "data": "554 5.6.0 rejected",              # reply to every end of DATA
     "data_from": "author@",                    # ... only when MAIL FROM contains this
     "data_delay": 0.5,                         # seconds to wait before it
     "mail_delay": 30,                          # seconds to wait before MAIL's reply
     "drop_data": true}                         # close the connection instead of
                                                # answering the end of DATA

On start it prints "sink listening <port>" on stdout. SIGTERM/SIGINT stop it.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid

from aiosmtpd.smtp import SMTP


class Store:
    def __init__(self, root):
        self.root = root
        self.messages = os.path.join(root, "messages")
        os.makedirs(self.messages, exist_ok=True)
        self.control_path = os.path.join(root, "control.json")
        self.connections_path = os.path.join(root, "connections.log")

    def control(self):
        try:
            with open(self.control_path, "rb") as f:
                return json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return {}
        except ValueError:
            # Being rewritten (should not happen with rename); behave normally.
            return {}

    def connection(self, peer):
        with open(self.connections_path, "a") as f:
            f.write(f"{time.time():.6f} {peer}\n")

    def save(self, content, meta):
        stem = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        eml = os.path.join(self.messages, stem + ".eml")
        meta_path = os.path.join(self.messages, stem + ".json")
        with open(eml + ".tmp", "wb") as f:
            f.write(content)
        os.rename(eml + ".tmp", eml)
        with open(meta_path + ".tmp", "w") as f:
            json.dump(meta, f)
        os.rename(meta_path + ".tmp", meta_path)
        return stem


class SinkSMTP(SMTP):
    # Long lines are the point of some tests: allow up to 1 MiB per line.
    line_length_limit = 1 << 20
    command_size_limit = 4096

    def __init__(self, *args, store, **kwargs):
        self._store = store
        super().__init__(*args, **kwargs)

    def connection_made(self, transport):
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._store.connection(f"{peer[0]}:{peer[1]}" if peer else "?")


class Handler:
    def __init__(self, store):
        self.store = store

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        delay = self.store.control().get("mail_delay")
        if delay:
            await asyncio.sleep(float(delay))
        reply = self.store.control().get("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for rule in self.store.control().get("rcpt", []):
            if rule.get("match", "") in address:
                return rule["reply"]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        ctl = self.store.control()
        delay = ctl.get("data_delay")
        if delay:
            await asyncio.sleep(float(delay))
        if ctl.get("data") and ctl.get("data_from", "") in (envelope.mail_from or ""):
            return ctl["data"]
        if ctl.get("drop_data"):
            # The client sent the whole message and waits for the verdict.
            server.transport.abort()
            return "421 dropped"
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "peer": list(session.peer) if session.peer else None,
            "helo": session.host_name,
            "received_at": time.time(),
            "tls": session.ssl is not None,
            "authenticated": bool(getattr(session, "authenticated", False)),
        }
        stem = self.store.save(envelope.original_content, meta)
        return f"250 2.0.0 OK stored {stem}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--hostname", default="sink.test")
    ap.add_argument("--tls-cert", help="offer STARTTLS with this PEM certificate (and --tls-key); require it")
    ap.add_argument("--tls-key")
    ap.add_argument("--auth", help="USER:PASSWORD: require AUTH (PLAIN/LOGIN, only after STARTTLS)")
    ap.add_argument("--strict", action="store_true",
                    help="aiosmtpd's own limits: lines of at most 1001 octets with CRLF "
                         "(longer ones, and bare-LF content, get '500 Line too long')")
    args = ap.parse_args()

    tls_context = None
    if args.tls_cert:
        import ssl
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)
    authenticator = None
    if args.auth:
        from aiosmtpd.smtp import AuthResult, LoginPassword
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            return AuthResult(success=ok, handled=False)

    store = Store(args.dir)
    handler = Handler(store)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    smtp_class = SMTP if args.strict else SinkSMTP

    def factory():
        extra = {} if args.strict else {"store": store}
        return smtp_class(
            handler,
            **extra,
            hostname=args.hostname,
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=64 * 1024 * 1024,
            loop=loop,
            tls_context=tls_context,
            require_starttls=tls_context is not None,
            authenticator=authenticator,
            auth_required=authenticator is not None,
            auth_require_tls=True,
        )

    server = loop.run_until_complete(
        loop.create_server(factory, host=args.host, port=args.port, reuse_address=True)
    )
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink listening {port}", flush=True)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
