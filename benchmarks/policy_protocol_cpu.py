"""The CPU one policy request costs inside `PolicyProtocol` alone (parsing Postfix's 30
attributes, deciding, metrics on), without the kernel: what a change to the policy service's
connection or answer path adds or saves, measurable even on a busy machine (CPU time, best of
5 runs of 50,000 requests).

Requests alternate as in `policy_bench.py`: an authenticated submission (the sender's limits
checked at RCPT, the message counted at END-OF-MESSAGE) and inbound mail to a local mailbox
(resolved, checked against the full mailboxes). The transport is a stand-in that drops the
reply.

    .venv/bin/python benchmarks/policy_protocol_cpu.py

To compare two versions of lookupd in one run, set PYTHONPATH to the other tree (e.g. one
unpacked by `git archive`): this script takes lookupd from wherever Python finds it.
"""

from __future__ import annotations

import asyncio
import time

from socketmap_protocol_cpu import DroppingTransport  # this folder: the reply is dropped

from dinomail.records import DomainRow, MailboxRow, MailData
from lookupd.counters import SendCounters
from lookupd.metrics import LookupdMetrics
from lookupd.policy.rules import OTHER_STATE, STATES, PolicyDecider
from lookupd.policy.server import PolicyProtocol, PolicyResponder
from lookupd.policy.tables import DomainLimits, PolicyTables, SendLimits
from lookupd.snapshot import Snapshot

REQUESTS = 50_000
HIGH = 1_000_000_000  # limits that are checked but never reached

# What Postfix 3.7 sends, in its order; {state}, {recipient}, {count}, {instance} and {sasl}
# vary.
TEMPLATE = (
    "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n"
    "client_address=192.0.2.7\nclient_name=client.example.net\nclient_port=52814\n"
    "reverse_client_name=client.example.net\nserver_address=198.51.100.25\nserver_port=587\n"
    "helo_name=client.example.net\nsender={sasl}\nrecipient={recipient}\n"
    "recipient_count={count}\nqueue_id=\ninstance={instance}\nsize=12345\netrn_domain=\n"
    "stress=\nsasl_method={method}\nsasl_username={sasl}\nsasl_sender=\nccert_subject=\n"
    "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
    "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n"
    "encryption_keysize=256\npolicy_context=\ncompatibility_level=3.6\n\n"
)


def requests(count: int) -> list[bytes]:
    out = []
    for n in range(count // 3):
        user = f"user{n % 1000}@bench.example"
        out.append(TEMPLATE.format(state="RCPT", recipient="someone@far.example", count=0,
                                   instance=f"{n:x}", sasl=user, method="PLAIN").encode())
        out.append(TEMPLATE.format(state="END-OF-MESSAGE", recipient="", count=1,
                                   instance=f"{n:x}", sasl=user, method="PLAIN").encode())
        out.append(TEMPLATE.format(state="RCPT", recipient=f"user{n % 1000}+tag@bench.example",
                                   count=0, instance=f"i{n:x}", sasl="", method="").encode())
    return out


async def main() -> None:
    snapshot = Snapshot.build(MailData(
        [DomainRow(1, "bench.example", True)], [],
        [MailboxRow(m + 1, 1, f"user{m}@bench.example", "{PLAIN}x", 10**9, True)
         for m in range(1000)], [],
    ))
    limits = SendLimits(HIGH, HIGH, HIGH, HIGH)
    tables = PolicyTables(
        domains={"bench.example": DomainLimits(limits, limits, "")}, full_mailboxes={1: 1},
    )
    metrics = LookupdMetrics()
    recorder = metrics.recorder("policy", (*STATES.values(), OTHER_STATE))
    decider = PolicyDecider(lambda: snapshot, lambda: tables, SendCounters())
    protocol = PolicyProtocol(PolicyResponder(decider, recorder), recorder=recorder)
    protocol.connection_made(DroppingTransport())  # type: ignore[arg-type]
    work = requests(REQUESTS)
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for request in work:
            protocol.data_received(request)
        best = min(best, (time.process_time() - started) / len(work))
    print(f"{best * 1e6:.2f} µs of CPU per request")


if __name__ == "__main__":
    asyncio.run(main())
