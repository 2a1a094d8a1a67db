"""The one stdin request loop: the ``serve`` worker's reader and the one-shot cancel listener.

Why bytes and one function: a text-mode ``for line in sys.stdin`` dies on the first non-UTF-8
byte under a strict UTF-8 locale, a line of 100 000 ``[`` raised RecursionError inside
``json.loads`` and killed the reader thread, and a 5001-digit integer a ValueError: the worker
then exited or hung without answering, and a one-shot run ignored ``cancel``. Here each line is
read as bytes (at most :data:`engine.contract.protocol.MAX_LINE_BYTES`; a longer one is skipped to its
end), decoded and parsed by :func:`engine.contract.protocol.parse_request`, and every bad line is handed
to ``on_bad`` while the loop goes on. Only end of input (or a closed stream) ends it.
"""
from __future__ import annotations

import sys
from typing import IO, Any, Callable, Iterator

from engine.contract.protocol import MAX_LINE_BYTES, ProtocolError, parse_request, request_job

_CHUNK = 1 << 20


def request_lines(stream: IO[Any]) -> Iterator[bytes | None]:
    """Each line of ``stream`` as bytes; None for a line over :data:`MAX_LINE_BYTES` (skipped)."""
    binary = getattr(stream, "buffer", stream)
    while True:
        try:
            line = binary.readline(MAX_LINE_BYTES + 1)
        except (OSError, ValueError):
            return  # closed
        if not line:
            return
        if isinstance(line, str):  # a text stream without a buffer (tests, StringIO)
            line = line.encode("utf-8", "surrogateescape")
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                try:
                    rest = binary.readline(_CHUNK)
                except (OSError, ValueError):
                    return
                if not rest or (rest.endswith(b"\n") if isinstance(rest, bytes) else rest.endswith("\n")):
                    break
            yield None
            continue
        yield line


def read_requests(stream: IO[Any], on_request: Callable[[dict[str, Any]], None],
                  on_bad: Callable[[str, str | None], None]) -> None:
    """Call ``on_request(req)`` for each valid request line and ``on_bad(message, job)`` for each
    bad one; returns at end of input. Never raises: a failing callback is logged and skipped."""
    for line in request_lines(stream):
        try:
            if line is None:
                raise ProtocolError(f"request line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
            req = parse_request(line)
        except ProtocolError as exc:
            _call(on_bad, str(exc), None if line is None else request_job(line))
            continue
        except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the listener
            _call(on_bad, f"unreadable request ({type(exc).__name__})", None)
            continue
        if req is not None:
            _call(on_request, req)


def _call(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - e.g. stdout closed: keep listening for cancel/EOF
        print(f"stdin reader: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
