"""A real SMTP server (aiosmtpd) that keeps every message it accepts, for kami's mail tests.

    python sink.py --listen 127.0.0.1:2525 --dir OUT [--tls starttls|tls --cert C --key K]
                   [--auth USER:PASSWORD]

Each accepted message becomes OUT/NNNNNN.json (written atomically): the envelope, how the
session was secured and authenticated, the raw message, and the message as Python's standard
`email` parser reads it (decoded headers and text parts) — an independent check that what
kami sends is well-formed MIME. Prints "READY" once it listens; runs until killed.
With --auth, AUTH is required (and, as usual, only offered over TLS).
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out, mode):
        self.out = out
        self.mode = mode
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "transfer_encoding": part.get("Content-Transfer-Encoding"),
                "body": part.get_content(),
            })
        if self.mode == "tls":
            transport = "tls"
        elif session.ssl is not None:
            transport = "starttls"
        else:
            transport = "plain"
        login = getattr(session.auth_data, "login", None) if session.authenticated else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "transport": transport,
            "auth_login": login.decode() if isinstance(login, bytes) else login,
            "subject": str(msg["Subject"]),
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "message_id": str(msg["Message-ID"]),
            "auto_submitted": msg.get("Auto-Submitted"),
            "content_type": msg.get_content_type(),
            "parts": parts,
            "raw": raw.decode("utf-8", errors="replace"),
        }
        self.count += 1
        name = os.path.join(self.out, "%06d.json" % self.count)
        with open(name + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=1)
        os.replace(name + ".tmp", name)
        return "250 Message accepted for delivery"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == self.user and auth_data.password == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


async def main():
    # aiosmtpd's own deprecation notices and its warning about AUTH on an implicit-TLS
    # listener (which it cannot see is encrypted) are noise in test output.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "tls"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    os.makedirs(a.dir, exist_ok=True)

    context = None
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
    kwargs = {}
    if a.auth:
        user, password = a.auth.split(":", 1)
        kwargs.update(authenticator=Authenticator(user, password), auth_required=True)
    if a.tls == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif a.tls == "tls":
        # Already encrypted: AUTH may be offered at once.
        kwargs.update(auth_require_tls=False)

    handler = Sink(a.dir, a.tls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", **kwargs),
        host=host, port=int(port),
        ssl=context if a.tls == "tls" else None,
    )
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
