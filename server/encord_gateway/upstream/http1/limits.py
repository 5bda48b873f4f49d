"""The bounds every answer is held to; read as `limits.NAME` where used, so that a test may lower one."""

from __future__ import annotations

# Status line and headers together; Encord's are well under 2 KiB.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_LINES = 100
# 100 Continue, 103 Early Hints: a few at most before the real answer.
MAX_INTERIM_ANSWERS = 8
# What the gateway asks Encord for is a key or a list of keys: a few KiB, and 1 MiB holds some
# 2,000 keys. A body is held in memory whole, and its decoded JSON costs many times its size, so
# anything bigger is refused unread. The limit holds for the decoded body too, so a small gzip
# cannot expand into gigabytes.
MAX_BODY_BYTES = 1024 * 1024
RECV_BYTES = 64 * 1024
