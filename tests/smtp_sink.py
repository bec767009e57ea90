"""A real SMTP server for the tests (tests/api/smtp.rs), on 127.0.0.1 and the port named
as the only argument.

On stdout: `ready` once it listens, then one JSON line per message received, with the
envelope, the raw message and its parsed fields, so the tests need no MIME parser of
their own.

Recipients whose local part starts with `reject` are refused for good (550); those
starting with `tempfail` are refused for now (451) the first time the address is seen,
and accepted afterwards, so a sender's retry can be tested.
"""

import asyncio
import json
import sys
import traceback
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP


def parsed(raw):
    message = BytesParser(policy=policy.default).parsebytes(raw)
    headers = []
    for name, value in message.raw_items():
        try:
            # policy.default decodes RFC 2047 words and unfolds.
            value = str(policy.default.header_fetch_parse(name, value))
        except Exception:
            # A header too broken to parse is still worth seeing, unfolded, as it came.
            value = "".join(value.splitlines())
        headers.append([name, value])
    return headers, body(message, "plain"), body(message, "html")


def body(message, subtype):
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    # Tests compare text as written, not as the wire's CRLF lines carry it.
    return part.get_content().replace("\r\n", "\n")


class Sink:
    def __init__(self):
        self.tempfailed = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("tempfail") and address.lower() not in self.tempfailed:
            self.tempfailed.add(address.lower())
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        try:
            headers, text, html = parsed(raw)
        except Exception:
            # The raw message still reaches the test, which fails on what it lacks.
            traceback.print_exc()
            headers, text, html = [], None, None
        line = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            # Replaced, not escaped: a lone surrogate is not valid JSON for the reader.
            "data": raw.decode("utf-8", errors="replace"),
            "headers": headers,
            "text": text,
            "html": html,
        }
        print(json.dumps(line), flush=True)
        return "250 OK"


async def main(port):
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        # A fixed hostname: the default looks up this machine's FQDN, which can hang
        # without DNS.
        lambda: SMTP(sink, hostname="smtp-sink.test", enable_SMTPUTF8=True),
        "127.0.0.1",
        port,
    )
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
