"""The HTTP oracle against real local servers on 127.0.0.1: redirects to another host are refused
(nothing reaches that host, no answer of its is recorded), one deadline bounds the whole call, TLS
is verified, proxies and credentials stay out of it (the Ray actor case is in
test_reward_service_actor.py)."""

import json
import shutil
import sqlite3
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from banel_ray.actors.reward_service import RewardService
from banel_ray.reward_plugins import HttpOracle
from banel_ray.reward_plugins.http import RedirectRefused
from banel_ray.reward_plugins.spec import check_spec

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


# ---- issue 24: a paid API (Retry-After, jittered backoff, tokens per minute, a USD budget) ----------
class Scripted(BaseHTTPRequestHandler):
    """Answers from ``script`` in order ((status, headers) per request; 200 with reward 0 per sample
    once it runs out) and records the monotonic time and sample count of every request."""

    script: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802
        n = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))["samples"]
        cls = type(self)
        cls.seen.append((time.monotonic(), len(n)))
        status, headers = cls.script.pop(0) if cls.script else (200, {})
        data = json.dumps({"rewards": [0] * len(n)}).encode() if status == 200 else b"slow down"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def scripted(serve, *script):
    handler = type("Script", (Scripted,), {"script": list(script), "seen": []})
    return handler, f"http://127.0.0.1:{serve(handler)}/rewards"


def paid_service(tmp_path, url, budget=100, **kw):
    spec = {"kind": "http", "url": url, "timeout_s": 5}
    return RewardService(CALLABLE, {"oracle": spec}, str(tmp_path / "l.sqlite"), budget, **kw)


def test_retry_after_is_honoured_and_the_refused_call_is_not_charged(serve, tmp_path):
    server, url = scripted(serve, (429, {"Retry-After": "1"}))
    o = paid_service(tmp_path, url, retries=3, cost_per_call=0.25, backoff_s=0.0)
    t = time.monotonic()
    r = o.pay(1, batch([(1, 2), (3, 4)]))
    assert time.monotonic() - t >= 1.0 and r.rewards == [0, 0] and r.paid == 2 and o.spent() == 2
    (t1, _), (t2, _) = server.seen
    assert t2 - t1 >= 1.0  # nothing was sent before the server's Retry-After
    assert [c["status"] for c in o.ledger.calls()] == ["refunded", "done"]
    assert o.cost_usd() == 0.25 and o.accounting()["paid_calls"] == 1  # charged once
    assert [row["attempt"] for row in o.ledger_rows()] == [2, 2]  # both calls counted
    assert o.stats()["waits"] == [("retry_after", 1.0)]


def test_retry_after_is_capped_and_read_as_an_http_date(serve, tmp_path):
    from email.utils import formatdate

    from banel_ray.reward_plugins.http import retry_after_seconds

    assert retry_after_seconds(formatdate(1000.0 + 30, usegmt=True), now=1000.0) == 30.0
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    server, url = scripted(serve, (503, {"Retry-After": formatdate(time.time() + 3600, usegmt=True)}))
    o = paid_service(tmp_path, url, retries=2, retry_after_max_s=0.5)
    t = time.monotonic()
    assert o.pay(1, batch([(1,)])).rewards == [0]
    assert 0.5 <= time.monotonic() - t < 5 and len(server.seen) == 2  # an hour asked, the cap waited
    assert o.stats()["waits"][0][0] == "retry_after" and o.stats()["waits"][0][1] == 0.5


def test_503_without_retry_after_backs_off_with_seeded_full_jitter(serve, tmp_path):
    import random

    server, url = scripted(serve, (503, {}), (503, {}))
    o = paid_service(tmp_path, url, retries=3, backoff_s=0.4, backoff_max_s=0.6, rng=random.Random(7))
    assert o.pay(1, batch([(1,)])).rewards == [0]
    ref = random.Random(7)
    expected = [ref.uniform(0, 0.4), ref.uniform(0, 0.6)]  # 0.4 * 2**1 = 0.8, capped at 0.6
    assert o.stats()["waits"] == [("backoff", w) for w in expected]
    times = [s[0] for s in server.seen]
    assert len(times) == 3 and all(b - a >= w for a, b, w in zip(times, times[1:], expected))


def test_tokens_per_minute_paces_the_calls(serve, tmp_path):
    samples = [tuple(range(i, i + 10)) for i in range(6)]  # 10 token ids each, one call per sample
    spans = {}
    for tpm in (0.0, 1200.0):  # 1200 a minute: 20 a second, a bucket of 20
        server, url = scripted(serve)
        o = paid_service(tmp_path / str(tpm), url, max_batch=1, max_in_flight=6, tokens_per_minute=tpm)
        assert o.pay(1, batch(samples)).rewards == [0] * 6
        times = sorted(t for t, _ in server.seen)
        spans[tpm] = times[-1] - times[0]
    # 60 tokens: 20 at once, then 40 more at 20 a second
    assert spans[1200.0] >= 1.9 and spans[0.0] < 1.0


def test_budget_usd_is_never_passed_and_refused_calls_are_not_charged(serve, tmp_path):
    server, url = scripted(serve, (429, {}))  # one refusal on the way: refunded, not counted
    o = paid_service(
        tmp_path, url, max_batch=1, max_in_flight=4, cost_per_call=0.1, budget_usd=0.3, retries=2, backoff_s=0.0
    )
    r = o.pay(1, batch([(i,) for i in range(6)]))
    assert sum(x is not None for x in r.rewards) == 3 and r.unpaid == 3 and r.errors == 0
    assert o.spent() == r.paid == 3 and len(server.seen) == 4  # 3 paid calls and the refused one
    assert not o.can_afford_call() and o.cost_usd() == 0.3
    rows = o.ledger_rows()  # a sample never sent left no row; one refused after its 429 an uncharged error
    assert sum(row["charged"] for row in rows) == 3 and all(
        row["status"] == "ok" or (row["charged"] == 0 and "not sent: oracle.budget_usd" in row["error"]) for row in rows
    )
    again = o.pay(2, batch([(7,), (8,)]))
    assert again.rewards == [None, None] and again.unpaid == 2 and len(server.seen) == 4 and o.spent() == 3
    db = sqlite3.connect(str(tmp_path / "l.sqlite"))
    total = db.execute("SELECT SUM(cost_usd) FROM calls WHERE status != 'refunded'").fetchone()[0]
    db.close()
    assert total <= 0.3 + 1e-12 and o.accounting()["refunded_calls"] == 1


def test_budget_usd_stops_an_in_process_run_at_the_cap(serve, tmp_path):
    """A whole run (no Ray) against the endpoint: one call per round at 0.25 USD and a 0.75 cap
    stop it after 3 of 10 rounds; the ledger's summed cost is the cap."""
    from banel_ray import config as C
    from banel_ray import tasks
    from banel_ray.runtime.actors import LocalRuntime
    from banel_ray.runtime.runner import Runner

    server, url = scripted(serve)
    prior = tasks.build("addition_attack_d8", {}).prepare(progress=lambda s: None)
    logs: list = []
    sets = ["rounds=10", "budget=1000", "samples_per_round=20", "pool_size=40", "eval.samples=0"]
    sets += ["negative.epochs=1", "generator.epochs=1", "sampler.backend=torch", "runtime=local", "task=callable"]
    sets += ["task_options.base=addition_attack", f"task_options.oracle={{kind: http, url: '{url}', timeout_s: 5}}"]
    sets += ["oracle.cost_per_call=0.25", "oracle.budget_usd=0.75", f"run_dir={tmp_path / 'r'}"]
    cfg = C.load(None, sets)
    r = Runner.build(cfg, tmp_path / "r", LocalRuntime(), prior, log=logs.append)
    try:
        s = r.run()
    finally:
        r.shutdown()
    assert s["rounds"] == 3 and len(server.seen) == 3 and s["cost_usd"] == 0.75 and s["paid_calls"] == 3
    assert any("oracle.budget_usd 0.75 spent" in line for line in logs)
    hist = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [m["cost_usd"] for m in hist] == [0.25, 0.5, 0.75]
    db = sqlite3.connect(str(tmp_path / "r" / "ledger.sqlite"))
    total = db.execute("SELECT SUM(cost_usd) FROM calls WHERE status != 'refunded'").fetchone()[0]
    db.close()
    assert total <= 0.75
