"""The HTTP oracle against real local servers on 127.0.0.1: redirects to another host are refused
(nothing reaches that host, no answer of its is recorded), one deadline bounds the whole call, TLS
is verified, proxies and credentials stay out of it (the Ray actor case is in
test_reward_service_actor.py)."""

import json
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from banel_ray.actors.reward_service import RewardService
from banel_ray.reward_plugins import HttpOracle
from banel_ray.reward_plugins.base import check_spec
from banel_ray.reward_plugins.http import RedirectRefused

from helpers import batch

CALLABLE = "banel_ray.reward_plugins:CallableTask"


class Recorder(BaseHTTPRequestHandler):
    """Answers every request (GET or POST) with reward 1 per sample and records what it got."""

    seen: list = []

    def _answer(self):
        n = int(self.headers.get("Content-Length", 0) or 0)
        body = json.loads(self.rfile.read(n)) if n else {"samples": [[0]]}
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        data = json.dumps({"rewards": [1] * len(body["samples"])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *a):
        pass


def redirector(status: int, location: str):
    class Redirect(Recorder):
        seen: list = []

        def do_POST(self):  # noqa: N802
            if self.path == "/final":
                return self._answer()
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            type(self).seen.append(("POST", self.path, self.headers.get("Authorization")))
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Redirect


class Trickle(BaseHTTPRequestHandler):
    """A valid answer, one byte every 0.1 s (3 s in all): each read is quick, the call is not."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = b'{"rewards": [1]}' + b" " * 14
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for i in range(len(data)):
            try:
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)

    def log_message(self, *a):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(handler, tls=None):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        if tls:
            srv.socket = tls.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_nothing_reaches_it(serve, status):
    Recorder.seen = []
    other = serve(Recorder)  # "localhost" is another host name than the configured 127.0.0.1
    handler = redirector(status, f"http://localhost:{other}/rewards")
    port = serve(handler)
    o = HttpOracle(f"http://127.0.0.1:{port}/rewards", timeout_s=5, headers={"Authorization": "Bearer secret"})
    with pytest.raises(RedirectRefused, match="to another host"):
        o.rewards([(1, 2)])
    assert Recorder.seen == []  # no sample, no credential went there
    assert handler.seen == [("POST", "/rewards", "Bearer secret")]


def test_same_host_redirects_307_308_are_followed_and_others_refused(serve):
    for status in (307, 308):
        handler = redirector(status, "/final")
        port = serve(handler)
        assert HttpOracle(f"http://127.0.0.1:{port}/rewards", timeout_s=5).rewards([(1,), (2,)]) == [1, 1]
        assert [p for _, p, _ in handler.seen] == ["/rewards", "/final"]
    port = serve(redirector(302, "/final"))
    with pytest.raises(RedirectRefused, match="into a GET"):
        HttpOracle(f"http://127.0.0.1:{port}/rewards", timeout_s=5).rewards([(1,)])


def test_a_cross_host_redirect_is_an_error_in_the_ledger_not_a_reward(serve, tmp_path):
    Recorder.seen = []
    other = serve(Recorder)
    port = serve(redirector(302, f"http://localhost:{other}/rewards"))
    spec = {"kind": "http", "url": f"http://127.0.0.1:{port}/rewards", "timeout_s": 5}
    o = RewardService(CALLABLE, {"oracle": spec}, str(tmp_path / "l.sqlite"), 10, retries=2, backoff_s=0.0)
    r = o.pay(1, batch([(1,), (2,)]))
    rows = o.ledger_rows()
    assert r.rewards == [None, None] and o.spent() == 0 and Recorder.seen == []
    assert all(row["status"] == "error" and "another host" in row["error"] for row in rows)


def test_one_deadline_bounds_the_whole_call(serve):
    port = serve(Trickle)
    o = HttpOracle(f"http://127.0.0.1:{port}/rewards", timeout_s=0.6)
    t = time.monotonic()
    with pytest.raises(TimeoutError, match="timeout_s=0.6"):
        o.rewards([(1,)])
    assert time.monotonic() - t < 1.5  # the server would take 3 s; every single read is quick


def test_proxy_settings_are_not_used(serve, monkeypatch):
    Recorder.seen = []
    proxy = serve(Recorder)

    class Direct(Recorder):
        seen: list = []

    port = serve(Direct)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{proxy}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert HttpOracle(f"http://127.0.0.1:{port}/rewards", timeout_s=5).rewards([(1,)]) == [1]
    assert Recorder.seen == [] and len(Direct.seen) == 1


def test_credentials_from_the_environment_reach_only_the_configured_host(serve, monkeypatch):
    class Host(Recorder):
        seen: list = []

    port = serve(Host)
    monkeypatch.setenv("BANEL_TEST_AUTH", "Bearer from-env")
    spec = {"kind": "http", "url": f"http://127.0.0.1:{port}/r", "headers_env": {"Authorization": "BANEL_TEST_AUTH"}}
    assert check_spec(spec) is None
    o = HttpOracle(**{k: v for k, v in spec.items() if k != "kind"})
    assert o.rewards([(1,)]) == [1] and Host.seen == [("POST", "/r", "Bearer from-env")]
    monkeypatch.delenv("BANEL_TEST_AUTH")
    assert "BANEL_TEST_AUTH" in check_spec(spec) and "is not set" in check_spec(spec)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_tls_is_verified_against_system_cas_or_the_given_ca_file(serve, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    port = serve(Recorder, tls=ctx)
    url = f"https://127.0.0.1:{port}/rewards"
    with pytest.raises(ssl.SSLCertVerificationError):  # self-signed: not trusted by default
        HttpOracle(url, timeout_s=5).rewards([(1,)])
    assert HttpOracle(url, timeout_s=5, ca_file=str(cert)).rewards([(1,)]) == [1]
    other = tmp_path / "other"
    subprocess.run(  # a certificate for another name, signed by the same "CA" as itself: host name checked
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other) + ".key"]
        + ["-out", str(other) + ".pem", "-days", "1", "-subj", "/CN=example.org"]
        + ["-addext", "subjectAltName=DNS:example.org"],
        check=True,
        capture_output=True,
    )
    ctx2 = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx2.load_cert_chain(str(other) + ".pem", str(other) + ".key")
    port2 = serve(Recorder, tls=ctx2)
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        HttpOracle(f"https://127.0.0.1:{port2}/r", timeout_s=5, ca_file=str(other) + ".pem").rewards([(1,)])
