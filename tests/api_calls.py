"""Calling a live server's API in tests, and checking the answers' common shapes."""

from __future__ import annotations

import io
import socket
import zipfile

import httpx

__all__ = ["assert_error", "call", "members", "read_until_closed"]


def call(server, method: str, path: str, params, prefix: str = "/api/v0.1", files=None) -> httpx.Response:
    """``method`` (GET: ``params`` in the query; POST: a form, with ``files`` if given) on ``prefix + path``."""
    url = server.url + prefix + path
    if method == "GET":
        return httpx.get(url, params=params, timeout=60)
    return httpx.post(url, data=params, files=files, timeout=60)


def assert_error(r: httpx.Response, status: int, field: str | None, *needles: str) -> dict:
    """``r`` is the one error shape with ``status``, naming ``field``, its message holding ``needles``."""
    assert r.status_code == status, r.text
    body = r.json()
    err = body["error"]
    assert err["status"] == status
    assert err["field"] == field
    assert err["message"] and body["msg"] == err["message"]
    assert err["request_id"] == r.headers["x-request-id"]
    for needle in needles:
        assert needle in err["message"], (needle, err["message"])
    return body


def members(r: httpx.Response) -> dict[str, bytes]:
    """The members of a zip answer, by name."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def read_until_closed(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """Everything the server sends on ``sock`` until it closes it, as the status line, the headers (names
    lower-cased) and the bytes after the head (all of them, so a body longer than its
    Content-Length shows)."""
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return lines[0], headers, body
