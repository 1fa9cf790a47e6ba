"""An HTTP endpoint as an oracle (standard library only).

Protocol: ``POST <url>`` with ``Content-Type: application/json`` and body
``{"samples": [[token ids], ...]}``; the answer is ``{"rewards": [1, 0, null, ...]}``, one entry per
sample in order (``null``: that sample could not be evaluated). Any HTTP error status, a timeout, a
body that is not that JSON, or a wrong number of rewards fails the whole call (the reward service
retries it). ``examples/oracles/http_oracle.py`` has a matching server.

What the client promises, because the endpoint is paid and may need credentials:

- **Only the configured host.** It talks to the URL's scheme, host and port and nothing else: a
  redirect to another origin is refused with an error (samples, headers and credentials never go
  there, and no other host's answer is recorded as a reward); a same-origin 307/308 redirect is
  followed (at most 3) with the same body; 301/302/303, which would turn the POST into a GET, are
  refused too. Proxy settings (``HTTP(S)_PROXY``) are not used.
- **One deadline per call.** ``timeout_s`` bounds the whole call (connect, TLS, sending, headers,
  body): a watchdog closes the connection at the deadline, so a server that trickles bytes cannot
  stretch it. Answers larger than ``max_bytes`` are refused.
- **TLS verified.** ``https://`` checks the certificate chain and the host name against the
  system's CAs, or against ``ca_file`` (a PEM bundle, e.g. a private CA); there is no option to
  turn verification off.
- **Told to wait, it says so.** An answer 429 (too many requests) or 503 (unavailable) raises
  ``RetryLater`` carrying the server's ``Retry-After`` (seconds or an HTTP date; None when absent)
  and ``billed=False``: the reward service waits that long (capped by ``oracle.retry_after_max_s``)
  before any further call, does not charge the call's ``oracle.cost_per_call`` and retries it.
- **Credentials out of the config.** ``headers_env`` maps a header to an environment variable
  (``{"Authorization": "ORACLE_AUTH"}``), read when the oracle is built, so the secret is not
  written into the run folder's config like ``headers`` are.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from banel_ray.reward_plugins.base import Oracle

MAX_REDIRECTS = 3


class RedirectRefused(OSError):
    """The endpoint redirected somewhere the client will not follow."""


class RetryLater(OSError):
    """HTTP 429 or 503: the server refused the call before doing (and billing) the work.

    ``retry_after``: seconds the server asked to wait (None: it did not say); ``billed`` is False,
    so the reward service releases the call's cost reservation."""

    billed = False

    def __init__(self, message: str, status: int, retry_after: float | None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now (>= 0): delta-seconds or an HTTP date (RFC 9110 10.2.3);
    None when absent or unreadable (the caller then backs off on its own)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        dt = parsedate_to_datetime(value)
        when = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()  # HTTP dates are GMT
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _origin(url: str) -> tuple[str, str, int]:
    u = urlsplit(url)
    return u.scheme, (u.hostname or "").lower(), u.port or (443 if u.scheme == "https" else 80)


class HttpOracle(Oracle):
    def __init__(
        self,
        url: str,
        timeout_s: float = 30.0,
        headers: dict | None = None,
        batch_size: int = 0,
        ca_file: str = "",
        headers_env: dict | None = None,
        max_bytes: int = 64 << 20,
    ):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
            raise ValueError(f"HttpOracle needs an http(s) URL with a host, got {url!r}")
        if not float(timeout_s) > 0:
            raise ValueError(f"HttpOracle timeout_s must be > 0, got {timeout_s!r}")
        self.url, self.timeout_s, self.batch_size = url, float(timeout_s), int(batch_size)
        self.headers = dict(headers or {})
        for name, var in (headers_env or {}).items():
            if var not in os.environ:
                raise ValueError(
                    f"HttpOracle headers_env: environment variable {var!r} (for header {name!r}) is not set"
                )
            self.headers[name] = os.environ[var]
        self.ca_file, self.max_bytes = ca_file, int(max_bytes)
        if ca_file and not os.path.isfile(ca_file):
            raise ValueError(f"HttpOracle ca_file not found: {ca_file}")

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file or None)  # verifies chain and host name

    def _post_once(self, url: str, body: bytes, deadline: float) -> tuple[int, dict, bytes]:
        """One request on its own connection, cut at ``deadline``: (status, headers, body)."""
        scheme, host, port = _origin(url)
        u = urlsplit(url)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.url}: no answer within timeout_s={self.timeout_s:g}")
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=left, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=left)
        fired = threading.Event()
        socks = []  # the connection's socket (http.client drops its own reference once the answer starts)

        def cut():  # the deadline: whatever the connection is doing, it ends now
            fired.set()
            for sock in socks or [conn.sock]:
                try:
                    sock.shutdown(2)
                except (OSError, AttributeError):
                    pass

        timer = threading.Timer(left, cut)
        timer.daemon = True
        timer.start()
        late = TimeoutError(f"{self.url}: no complete answer within timeout_s={self.timeout_s:g}")
        try:
            conn.connect()
            socks.append(conn.sock)
            if fired.is_set():
                raise late
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(self.max_bytes + 1)
            if fired.is_set():  # cut short: what was read is not the answer
                raise late
            if len(data) > self.max_bytes:
                raise ValueError(f"{self.url}: answer larger than max_bytes={self.max_bytes}")
            expected = resp.getheader("Content-Length")
            if expected and expected.isdigit() and len(data) != int(expected):
                raise http.client.IncompleteRead(data, int(expected) - len(data))
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        except (OSError, http.client.HTTPException):
            if fired.is_set():
                raise late from None
            raise
        finally:
            timer.cancel()
            conn.close()
            for sock in socks:
                sock.close()

    def rewards(self, samples):
        body = json.dumps({"samples": [list(map(int, s)) for s in samples]}).encode()
        deadline = time.monotonic() + self.timeout_s
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, data = self._post_once(url, body, deadline)
            if status not in (301, 302, 303, 307, 308):
                break
            target = urljoin(url, headers.get("location", ""))
            if _origin(target) != _origin(self.url):
                raise RedirectRefused(
                    f"{self.url} redirected ({status}) to another host, {target}: refused "
                    f"(samples and credentials go only to the configured host; configure the final URL)"
                )
            if status not in (307, 308):
                raise RedirectRefused(
                    f"{self.url} redirected ({status}) to {target}, which would turn the POST into a GET: "
                    f"refused (configure the final URL)"
                )
            url = target
        else:
            raise RedirectRefused(f"{self.url}: more than {MAX_REDIRECTS} redirects")
        if status in (429, 503):
            after = retry_after_seconds(headers.get("retry-after"))
            raise RetryLater(
                f"{url}: HTTP {status}" + (f", Retry-After {after:g}s" if after is not None else "") + " (not billed)",
                status,
                after,
            )
        if status >= 400:
            raise OSError(f"{url}: HTTP {status} {data[:200].decode(errors='replace')}")
        data = json.loads(data.decode())
        rewards = data.get("rewards") if isinstance(data, dict) else None
        if not isinstance(rewards, list) or len(rewards) != len(samples):
            raise ValueError(f"{self.url}: expected {{'rewards': [{len(samples)} values]}}, got {str(data)[:200]}")
        return rewards
