"""The reward service: the one place that spends NREs.

``RewardService`` owns the hard budget, dedupe, a token-bucket rate limit, a concurrency cap, a
per-call timeout, retries with backoff, and the SQLite ledger (``actors.ledger``) around the reward
plug-in (``reward_plugins``). The runtime runs it as one threaded actor per run (see
``runtime.actors``), so the budget, the rate limit and the cap hold cluster-wide whatever the
number of callers.

How a paid evaluation goes (``pay``):

1. **Reserve.** In one SQLite transaction, under the oracle's lock: each distinct new sample gets a
   ``pending`` row, charged (``charged=1``), while ``spent < budget``; committed before any oracle
   call. Budget is counted inside that transaction, so concurrent callers never exceed it. A sample
   already ``ok`` returns its stored reward at no NRE; a sample another caller is evaluating right
   now (``pending`` and in flight in this process) is waited for, not paid twice.
2. **Call.** The samples are cut into chunks of ``max_batch`` (default: the plug-in oracle's
   ``batch_size``; 0 = one call for all), run in parallel up to ``max_in_flight`` oracle calls at
   once across all callers. Each call first takes one rate-limit token per sample (``rate_limit``
   counts evaluations, i.e. NREs, per second; a batch call of n samples waits for n tokens and its
   n samples start together), then runs with a
   ``timeout_s`` limit; a failed call (exception, timeout, wrong length) is retried up to
   ``retries`` attempts in all, with backoff ``backoff_s * 2**(attempt-1)``; samples the oracle
   answers with ``None`` (or an exception object) are retried alone.
3. **Complete.** Each chunk's rows become ``ok`` (reward 0/1) or ``error`` (reward NULL), committed
   (fsynced) before anyone sees the result.

NRE accounting of errors: an error is never a negative; its reward is ``None``. With
``charge_errors=False`` (default) the failed sample's reservation is released (``charged=0``): it
costs no NRE and a later call that asks for it evaluates it again (charging it then). With
``charge_errors=True`` (an oracle that bills failed calls) it costs exactly one NRE however many
attempts were made, and it is not evaluated again.

Restarts (``pending_rule``): a ``pending`` row left by a dead process (actor killed, node lost) was
charged when it was reserved; the oracle may or may not have been called for it.

- ``"reevaluate"`` (default): the row keeps its one charge and is evaluated again by the first
  call that asks for it, without charging twice: the retried Ray task (same task id, so the same
  ``call_id``) or any later call, or ``resolve_pending()``. The ledger counts one NRE; the external
  oracle may have seen the sample twice (at most ``max_in_flight`` calls in flight at the crash).
- ``"charge"``: at start the rows become ``lost`` (charged, reward NULL) and are never sent again:
  the oracle is never called twice for a sample, and those results are lost.

A call's idempotency key (``call_id``) is chosen by the caller (the runner uses the round), so
a retried call, after a restart of this actor or of the whole run, reports the same ``paid``
count: ``paid`` is the number of charged rows whose ``call_id`` is this call's.

Success-rate estimates never come here: they are the evaluator's (``actors.evaluator``).
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from banel_ray import reward_plugins, tasks
from banel_ray.actors.ledger import ADOPT, EVALUATE, LIVE, UNPAID, Ledger, sample_key
from banel_ray.records import PaidBatch, SampleBatch

PENDING_RULES = ("reevaluate", "charge")


class TokenBucket:
    """At most ``rate`` tokens per second on average, bursts up to ``burst``. Thread-safe.

    A taker that finds too few tokens books them (the balance goes negative) and sleeps until they
    are earned, outside the lock, so waiters are served in order and never oversubscribe: over any
    window of length T, at most ``burst + rate * T`` tokens are handed out.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.burst, self.clock, self.sleep = rate, max(burst, 1.0), clock, sleep
        self.tokens, self.last = self.burst, clock()
        self.lock = threading.Lock()

    def take(self, n: int = 1) -> float:
        """Take ``n`` tokens, sleeping as needed; returns the clock time they were granted at."""
        if self.rate <= 0 or n <= 0:
            return self.clock()
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return now + wait


def _as_reward(x) -> tuple[int | None, str | None]:
    """(reward, error) from what an oracle returned for one sample."""
    if isinstance(x, BaseException):
        return None, f"{type(x).__name__}: {x}"
    if x is None:
        return None, "oracle returned no reward"
    if hasattr(x, "item") and not isinstance(x, (bool, int, float)):  # numpy / torch scalars
        try:
            x = x.item()
        except Exception:  # noqa: BLE001 - not a scalar: invalid below
            pass
    if isinstance(x, (bool, int, float)) and x in (0, 1):
        return int(x), None
    return None, f"invalid reward {x!r} (expected 0 or 1)"


class RewardService:
    def __init__(
        self,
        task_name: str,
        task_options: dict,
        ledger_path: str,
        budget: int,
        settings=None,
        threads: int = 1,
        *,
        backoff_s: float = 0.2,
        max_batch: int | None = None,
        **overrides,
    ):
        """``settings``: the ``oracle.*`` config section (``config.OracleConfig``; defaults when
        None): ``rate_limit`` evaluations (samples) per second, 0 = unlimited; ``burst`` tokens the
        bucket holds; ``max_in_flight`` oracle calls running at once, all callers together;
        ``timeout_s`` limit on one call (0 = none; a call past it is abandoned, counted as a failed
        attempt and retried); ``retries``; ``charge_errors``; ``pending_rule`` (module docstring).
        ``max_batch``: samples per oracle call (None: the plug-in's ``batch_size``, 0 = all in one
        call). ``threads``: torch threads for model-based oracles (0: torch is not imported).
        ``overrides``: single ``oracle.*`` settings by name (``retries=2``), over ``settings``."""
        import dataclasses

        from banel_ray.config import SECTIONS

        o = settings if settings is not None else SECTIONS["oracle"]()
        o = dataclasses.replace(o, **overrides) if overrides else o
        rate_limit, retries, charge_errors = o.rate_limit, o.retries, o.charge_errors
        max_in_flight, timeout_s, burst, pending_rule = o.max_in_flight, o.timeout_s, o.burst, o.pending_rule
        if pending_rule not in PENDING_RULES:
            raise ValueError(f"pending_rule must be one of {PENDING_RULES}, not {pending_rule!r}")
        if threads:
            from banel_ray.models import set_threads

            set_threads(threads)
        self.task = tasks.build(task_name, task_options)
        self.oracle = reward_plugins.from_task(self.task)
        self.ledger = Ledger(ledger_path)
        self.budget = int(budget)
        self.bucket = TokenBucket(rate_limit, burst)
        self.retries, self.backoff_s, self.charge_errors = max(1, int(retries)), backoff_s, charge_errors
        self.timeout_s = float(timeout_s)
        self.max_in_flight = max(1, int(max_in_flight))
        self.max_batch = int(getattr(self.oracle, "batch_size", 0) or 0) if max_batch is None else int(max_batch)
        self.pending_rule = pending_rule
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()  # reservation + in-flight table
        self._inflight: dict[str, threading.Event] = {}
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="oracle")
        self._stat_lock = threading.Lock()
        self._stats = {
            "calls": 0,
            "evaluations": 0,
            "failed_calls": 0,
            "timeouts": 0,
            "in_flight": 0,
            "max_in_flight_seen": 0,
        }
        self._starts: collections.deque = collections.deque(maxlen=100_000)
        self._grants: collections.deque = collections.deque(maxlen=100_000)
        # a previous process's reservations (it died mid-call)
        self.pending_at_start = len(self.ledger.pending())
        if self.pending_at_start and pending_rule == "charge":
            self.ledger.close_pending(
                f"in flight when its oracle process died; charged, not "
                f"re-evaluated (pending_rule='charge', closed by {self.owner})"
            )

    # ---- accounting ----------------------------------------------------------------------------
    def spent(self) -> int:
        return self.ledger.spent()

    def successes(self) -> int:
        """Distinct paid samples with reward 1 (what "successes" means in every report)."""
        return self.ledger.successes()

    def remaining(self) -> int:
        return max(0, self.budget - self.ledger.spent())

    def ledger_rows(self) -> list[dict]:
        return self.ledger.rows()

    def stats(self) -> dict:
        """Counters of oracle calls (all attempts); ``starts``: (monotonic time, samples) of each call
        as it started; ``grants``: the same at the time the rate limiter granted its tokens."""
        with self._stat_lock:
            return {
                **self._stats,
                "starts": list(self._starts),
                "grants": list(self._grants),
                "rate_limit": self.bucket.rate,
                "burst": self.bucket.burst,
                "max_in_flight": self.max_in_flight,
                "pending_at_start": self.pending_at_start,
            }

    # ---- one oracle call, then one chunk with retries -------------------------------------------
    def _invoke(self, samples: list) -> list:
        if self.timeout_s <= 0:
            return list(self.oracle.rewards(samples))
        fut: Future = Future()

        def run():
            try:
                fut.set_result(list(self.oracle.rewards(samples)))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)

        threading.Thread(target=run, daemon=True, name="oracle-call").start()
        try:
            return fut.result(timeout=self.timeout_s)
        except TimeoutError:
            if fut.done():
                return fut.result()
            with self._stat_lock:
                self._stats["timeouts"] += 1
            raise TimeoutError(f"oracle call exceeded timeout_s={self.timeout_s:g}") from None

    def _call(self, samples: list) -> list[tuple[int | None, str | None, int]]:
        """(reward, error, attempts) per sample, after retries. Never raises for oracle errors."""
        n = len(samples)
        rewards: list = [None] * n
        errors: list = [None] * n
        attempts = [0] * n
        todo = list(range(n))
        for attempt in range(1, self.retries + 1):
            sub = [samples[i] for i in todo]
            with self._slots:
                granted = self.bucket.take(len(sub))
                with self._stat_lock:
                    s = self._stats
                    s["calls"] += 1
                    s["evaluations"] += len(sub)
                    s["in_flight"] += 1
                    s["max_in_flight_seen"] = max(s["max_in_flight_seen"], s["in_flight"])
                    self._grants.append((granted, len(sub)))
                    self._starts.append((time.monotonic(), len(sub)))
                try:
                    out, exc = self._invoke(sub), None
                    if len(out) != len(sub):
                        out, exc = None, f"ValueError: oracle returned {len(out)} rewards for {len(sub)} samples"
                except Exception as e:  # an oracle error is not a negative
                    out, exc = None, f"{type(e).__name__}: {e}"
                finally:
                    with self._stat_lock:
                        self._stats["in_flight"] -= 1
                        self._stats["failed_calls"] += out is None
            left = []
            for j, i in enumerate(todo):
                attempts[i] += 1
                r, err = (None, exc) if out is None else _as_reward(out[j])
                rewards[i], errors[i] = r, err
                if r is None:
                    left.append(i)
            todo = left
            if not todo:
                break
            if attempt < self.retries and self.backoff_s > 0:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return list(zip(rewards, errors, attempts))

    def _run_chunk(self, keys: list[str], samples: list) -> None:
        """Evaluate one chunk of reserved samples and close their rows (durable), then wake waiters."""
        try:
            res = self._call(samples)
            self.ledger.complete(
                [
                    {"key": k, "reward": r, "error": e, "attempts": a, "charged": int(self.charge_errors)}
                    for k, (r, e, a) in zip(keys, res)
                ]
            )
        finally:  # rows not completed stay pending: no longer live, the next caller adopts them
            with self._lock:
                for k in keys:
                    ev = self._inflight.pop(k, None)
                    if ev is not None:
                        ev.set()

    # ---- the public calls ----------------------------------------------------------------------
    def pay(self, round_: int, *batches, call_id: str | None = None) -> PaidBatch:
        """Pay for the distinct, not-yet-paid samples of ``batches`` (``SampleBatch``es), within budget.

        Returns a ``PaidBatch``: the samples (in order), their rewards (None where unpaid: budget
        exhausted or oracle error), the weight versions and the counts (see ``records``);
        ``recovered`` counts reservations of a dead process re-evaluated here.
        """
        samples: list[tuple[int, ...]] = []
        versions: list[int] = []
        for b in batches:
            samples += [tuple(int(t) for t in s) for s in b.samples]
            versions += [b.version] * len(b.samples)
        call_id = call_id or uuid.uuid4().hex
        keys = [sample_key(s) for s in samples]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        with self._lock:
            plan = self.ledger.reserve(
                [(k, samples[i], round_, versions[i]) for k, i in first.items()],
                self.budget,
                call_id,
                self.owner,
                self._inflight.__contains__,
            )
            mine = [k for k, a in plan.items() if a in EVALUATE]
            for k in mine:
                self._inflight[k] = threading.Event()
            waits = [self._inflight[k] for k, a in plan.items() if a == LIVE]
        if mine:
            size = self.max_batch if self.max_batch > 0 else len(mine)
            chunks = [mine[i : i + size] for i in range(0, len(mine), size)]
            jobs = [(c, [samples[first[k]] for k in c]) for c in chunks]
            if len(jobs) == 1:
                self._run_chunk(*jobs[0])
            else:
                futs = [self._pool.submit(self._run_chunk, *j) for j in jobs]
                for f in futs:
                    f.result()
        for ev in waits:
            ev.wait()
        rows = self.ledger.lookup_rows(keys)
        own = {k for k, r in rows.items() if r["call_id"] == call_id}
        rewards = [rows[k]["reward"] if k in rows and rows[k]["status"] == "ok" else None for k in keys]
        return PaidBatch(
            samples=samples,
            rewards=rewards,
            versions=versions,
            paid=sum(rows[k]["charged"] for k in own),
            reused=sum(1 for k in keys if k in rows) - len(own),
            errors=sum(1 for k in own if rows[k]["status"] == "error"),
            spent=self.ledger.spent(),
            unpaid=sum(1 for k in keys if plan[k] == UNPAID),
            recovered=sum(1 for a in plan.values() if a == ADOPT),
            waited=len(waits),
            new_successes=sum(1 for k in own if rows[k]["status"] == "ok" and rows[k]["reward"] == 1),
            call_id=call_id,
        )

    def resolve_pending(self) -> int:
        """Evaluate now every reservation a dead process left pending (``pending_rule='reevaluate'``),
        without charging again. Returns how many were resolved."""
        with self._lock:
            rows = [r for r in self.ledger.pending() if r["key"] not in self._inflight]
        groups: dict[tuple, list] = collections.defaultdict(list)
        for r in rows:
            groups[(r["round"], r["version"])].append(r["sample"])
        for (round_, version), s in groups.items():
            self.pay(round_, SampleBatch(s, version), call_id=f"resolve-{uuid.uuid4().hex}")
        return len(rows)

    def checkpoint(self) -> None:
        """Fold the ledger's write-ahead log into ``ledger.sqlite`` (after every round)."""
        self.ledger.checkpoint()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.ledger.close()
