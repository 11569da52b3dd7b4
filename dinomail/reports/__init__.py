"""DMARC aggregate reports (RFC 7489) and SMTP TLS reports (RFC 8460) received by mail.

- `unpack`: the attachment's bytes, decompressed (gzip, zip) within size and ratio limits;
- `message`: the report files of a mail message (by content type, file name and content);
- `dmarc`, `tlsrpt`: a report file → a parsed report, or `ReportError` with the reason;
- `intake`: one message → stored reports, or the message set aside with the reason;
- `lmtp`: the LMTP listener Postfix hands the report address's mail to;
- `service`: the listener and the daily clean-up, as the admin API's process runs them.
"""

from dinomail.reports.errors import ReportError

__all__ = ["ReportError"]
