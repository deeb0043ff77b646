"""Real-looking log lines for the parser and log-rate tests."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

NGINX = (
    '203.0.113.7 - alice [02/Mar/2026:10:15:32 +0100] "GET /api/cart?id=12 HTTP/1.1" 200 512 '
    '"https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64) Firefox/123.0"'
)
NGINX_5XX = (
    '198.51.100.23 - - [02/Mar/2026:10:15:33 +0100] "POST /api/checkout HTTP/2.0" 502 157 '
    '"-" "curl/8.5.0"'
)
APACHE_COMMON = '192.0.2.1 - frank [10/Oct/2025:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 -'
SYSLOG_3164 = (
    "<27>Mar  2 10:15:34 web01 nginx[1234]: upstream timed out (110: Connection timed out)"
)
SYSLOG_3164_NO_PRI = "Mar  2 10:15:35 web01 kernel: EXT4-fs error (device sda1): bad block"
SYSLOG_3164_INFO = "<30>Mar 12 10:15:36 web01 systemd[1]: Started nginx.service."
SYSLOG_5424 = (
    "<11>1 2026-03-02T10:15:37.123456Z db01 postgres 4242 ERR01 "
    '[origin ip="10.0.0.5"][meta sequenceId="7"] could not write to file: No space left'
)
SYSLOG_5424_NO_SD = "<14>1 2026-03-02T10:15:38Z db01 cron - - - job finished"
JSON_ERROR = json.dumps(
    {"time": "2026-03-02T10:15:39.5Z", "level": "ERROR", "msg": "payment declined", "order": 7}
)
JSON_INFO = json.dumps({"timestamp": 1772446539, "level": "info", "msg": "ok"})


def _nginx(stamp: float, status: int, rng: random.Random) -> str:
    when = datetime.fromtimestamp(stamp, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    path = rng.choice(["/", "/api/cart", "/api/search?q=lamp", "/static/app.js"])
    return (
        f'10.0.{rng.randrange(256)}.{rng.randrange(1, 255)} - - [{when}] "GET {path} HTTP/1.1" '
        f'{status} {rng.randrange(100, 9000)} "-" "Mozilla/5.0"'
    )


def nginx_burst(
    minutes: int = 150, burst_at: int = 148, burst: int = 40, end: float | None = None
) -> str:
    """An access log of ``minutes`` minutes ending at ``end`` (default now): a quiet baseline
    (about 6 requests a minute, now and then one 5xx), then ``burst`` 5xx in minute
    ``burst_at``."""
    rng = random.Random(11)
    end = time.time() if end is None else end
    start = (int(end) // 60 - minutes + 1) * 60
    lines = []
    for minute in range(minutes):
        base = start + 60 * minute
        for second in sorted(rng.sample(range(60), 6)):
            lines.append(_nginx(base + second, rng.choice([200] * 12 + [304, 404, 500]), rng))
        if minute == burst_at:
            lines += [_nginx(base + i % 60, rng.choice([500, 502, 503]), rng) for i in range(burst)]
    return "\n".join(lines) + "\n"
