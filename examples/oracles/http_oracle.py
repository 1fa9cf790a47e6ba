"""An HTTP oracle: the reward is a service; ``HttpOracle`` is its client (urllib, with a timeout).

Protocol: ``POST`` JSON ``{"samples": [[token ids], ...]}`` -> ``{"rewards": [1, 0, null, ...]}``.
This file also holds a tiny test server (``http.server``, bound to 127.0.0.1 only) that speaks it.

In a run config::

    task: banel_ray.reward_plugins:CallableTask
    task_options:
      base: addition_attack
      oracle: {kind: http, url: "http://127.0.0.1:8000/rewards", timeout_s: 10, batch_size: 32}

Serve: ``.venv/bin/python examples/oracles/http_oracle.py --serve 8000``
Demo (server in a thread, client through ``RewardService``): ``.venv/bin/python examples/oracles/http_oracle.py``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reward(sample) -> int:
    """The service's reward: 1 iff the first token id is larger than the last."""
    return int(len(sample) >= 2 and sample[0] > sample[-1])


class Handler(BaseHTTPRequestHandler):
    reward_fn = staticmethod(reward)
    fail_next = 0  # answer 503 to the next n requests (tests)
    requests = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        type(self).requests += 1
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            self.send_error(503, "busy")
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            out = {"rewards": [self.reward_fn(tuple(s)) for s in body["samples"]]}
            code = 200
        except Exception as e:  # noqa: BLE001 - bad request
            out, code = {"error": str(e)}, 400
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


def serve(port: int = 0, handler: type = Handler) -> tuple[ThreadingHTTPServer, str]:
    """Start the server in a daemon thread on 127.0.0.1 (port 0: a free one); returns (server, url).
    Stop it with ``server.shutdown(); server.server_close()``."""
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True, name="oracle-http").start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/rewards"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=int, default=None, help="only serve on this port (127.0.0.1)")
    a = ap.parse_args(argv)
    if a.serve is not None:
        srv = ThreadingHTTPServer(("127.0.0.1", a.serve), Handler)
        print(f"serving http://127.0.0.1:{srv.server_address[1]}/rewards")
        srv.serve_forever()
        return
    from banel_ray.actors.reward_service import RewardService
    from banel_ray.records import SampleBatch

    srv, url = serve()
    try:
        with tempfile.TemporaryDirectory() as d:
            o = RewardService(
                "banel_ray.reward_plugins:CallableTask",
                {"oracle": {"kind": "http", "url": url, "timeout_s": 5}},
                f"{d}/ledger.sqlite",
                budget=10,
                timeout_s=10,
                backoff_s=0.05,
            )
            Handler.fail_next = 1  # the first request fails: retried
            r = o.pay(1, SampleBatch([(5, 1), (1, 5), (9, 2, 3), (4,)]))
            print(
                f"{url}: rewards {r.rewards} paid {r.paid} errors {r.errors} "
                f"requests {Handler.requests} attempts {[x['attempt'] for x in o.ledger_rows()]}"
            )
            o.close()
    finally:
        srv.shutdown()
        srv.server_close()


if __name__ == "__main__":
    main()
