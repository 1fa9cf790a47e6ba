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
   n samples start together), then runs with a ``timeout_s`` limit. Each attempt is counted in the
   ledger (``attempt``) before it is made. A call past its deadline is reported failed but keeps
   its in-flight slot until the plug-in really returns, so the cap holds also for hung calls. A
   failed call (exception, timeout, wrong length) is retried up to ``retries`` attempts in all,
   after a backoff with full jitter (a random wait in ``[0, backoff_s * 2**(attempt-1)]``, at most
   ``backoff_max_s``, so callers that failed together do not retry together); samples the oracle
   answers with ``None`` (or an exception object) are retried alone. A call the endpoint refused
   with a ``retry_after`` (HTTP 429/503 ``Retry-After``, ``reward_plugins.http.RetryLater``) holds
   back *every* caller's next call that long (at most ``retry_after_max_s``) instead.

   Paid endpoints: ``tokens_per_minute`` is a second token bucket beside ``rate_limit``, counting
   a call's token ids (the sum of its samples' lengths; rate ``tokens_per_minute/60`` a second,
   one second's worth in the bucket). With ``cost_per_call`` > 0 every call sent gets a ledger row
   in ``calls`` with that cost, committed with its attempt count before it is sent, refunded when
   the endpoint refused it unbilled (429/503, connection refused); ``budget_usd`` > 0 caps their
   sum like ``budget`` caps NREs: a call that would pass it is not sent, and its samples'
   reservations are released (unpaid, not charged).
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
- ``"charge"``: at start the rows that were sent (``attempt`` >= 1) become ``lost`` (charged,
  reward NULL) and are never sent again: the oracle is never called twice for a sample, and those
  results are lost. Rows never sent (``attempt`` 0) are released (uncharged, as if never
  reserved): a later call that asks for one reserves and sends it then.

A call's idempotency key (``call_id``) is chosen by the caller (the runner uses the round), so
a retried call, after a restart of this actor or of the whole run, reports the same ``paid``
count: ``paid`` is the number of charged rows whose ``call_id`` is this call's.

Success-rate estimates come here only for a task without a free evaluator, when the run allows
it (``eval.paid_budget``): ``estimate`` sends the draws through the same slots, rate limit and
timeout, one attempt each, never past that budget over the whole run (reserved in the ledger's
``eval_sent`` counter before the calls), and never as NREs. Otherwise estimates are the
evaluator's (``actors.evaluator``), which never calls a paid oracle.

One writer: the service takes the ledger's lease when it starts (``actors.ledger``); if a newer
service took it since, every write of this one is refused (``StaleWriter``) before its next oracle
call, and ``pay`` raises.

A killed run's service stops calling: on Ray a service outlives its SIGKILLed driver for a few
seconds (its worker notices the dead raylet only then), and before this check it kept sending the
calls left in its ``pay``. Given the driver's ``core.liveness`` token it checks, just before each
call, that the driver still runs; once it does not, it raises ``DriverGone`` instead of calling
(the call's rows stay pending, their attempt not counted, as if never sent).
"""

from __future__ import annotations

import collections
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from banel_ray import reward_plugins, tasks
from banel_ray.actors.evaluator import eval_result
from banel_ray.actors.ledger import (
    ADOPT,
    EVALUATE,
    LIVE,
    UNPAID,
    Ledger,
    OverBudget,
    StaleWriter,
    micro_usd,
    sample_key,
)
from banel_ray.core import liveness
from banel_ray.records import EvalResult, PaidBatch, SampleBatch

EVAL_SENT = "eval_sent"  # ledger counter: evaluation draws sent to the paid oracle


class DriverGone(RuntimeError):
    """The run that started this reward service has exited (SIGKILL of its driver): no further
    oracle call is sent. Calls already running end by themselves; each was counted before it began."""


PENDING_RULES = ("reevaluate", "charge")


class OracleDown(RuntimeError):
    """Every evaluation failed in ``oracle.max_failed_rounds`` rounds in a row: the run stops
    (resumable; the command line prints this one line and exits 3)."""


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
        backoff_s: float | None = None,
        max_batch: int | None = None,
        rng: random.Random | None = None,
        ledger_id: str | None = None,
        driver: str | None = None,
        **overrides,
    ):
        """``settings``: the ``oracle.*`` config section (``config.OracleConfig``; defaults when
        None): ``rate_limit`` evaluations (samples) per second, 0 = unlimited; ``burst`` tokens the
        bucket holds; ``max_in_flight`` oracle calls running at once, all callers together;
        ``timeout_s`` limit on one call (0 = none; a call past it is abandoned, counted as a failed
        attempt and retried); ``retries``; ``charge_errors``; ``pending_rule`` (module docstring).
        ``max_batch``: samples per oracle call (None: the plug-in's ``batch_size``, 0 = all in one
        call). ``threads``: torch threads for model-based oracles (0: torch is not imported).
        ``overrides``: single ``oracle.*`` settings by name (``retries=2``), over ``settings``;
        ``backoff_s`` is one of them (None: the settings'). ``rng``: the source of the backoff
        jitter (a seeded ``random.Random`` makes the waits reproducible in tests). ``ledger_id``: the
        run's ledger (``ledger.adopt``): only that file is opened, never a new one made in place of a
        missing one (``WrongLedger``, before any oracle call); None: any ledger at ``ledger_path``.
        ``driver``: the run's driver (``core.liveness.token``); once it has exited, no further
        oracle call is sent (``DriverGone``); None, or a driver not seen alive from here when the
        service starts (another pid namespace): no such check."""
        import dataclasses

        from banel_ray.config_sections import OracleConfig

        o = settings if settings is not None else OracleConfig()
        if backoff_s is not None:
            overrides["backoff_s"] = backoff_s
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
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # takes the lease: the one writer from now on
        self.ledger = Ledger(ledger_path, owner=self.owner, ledger_id=ledger_id)
        # a driver this process cannot see even now (another pid namespace) is not checked
        self.driver = driver if liveness.alive(driver) else None
        self.budget = int(budget)
        self.bucket = TokenBucket(rate_limit, burst)
        self.token_bucket = TokenBucket(o.tokens_per_minute / 60.0, o.tokens_per_minute / 60.0)
        self.retries, self.backoff_s, self.charge_errors = max(1, int(retries)), o.backoff_s, charge_errors
        self.backoff_max_s, self.retry_after_max_s = o.backoff_max_s, o.retry_after_max_s
        self.cost_per_call, self.budget_usd = o.cost_per_call, o.budget_usd
        self.rng = rng if rng is not None else random.Random()
        self._not_before = 0.0  # monotonic time before which no call is sent (a server's Retry-After)
        self.timeout_s = float(timeout_s)
        self.max_in_flight = max(1, int(max_in_flight))
        self.max_batch = int(getattr(self.oracle, "batch_size", 0) or 0) if max_batch is None else int(max_batch)
        self.pending_rule = pending_rule
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
            "overdue": 0,
            "refused_usd": 0,
        }
        self._waits: collections.deque = collections.deque(
            maxlen=100_000
        )  # (kind, seconds) of every retry wait: "backoff" or "retry_after"
        self._starts: collections.deque = collections.deque(maxlen=100_000)
        self._grants: collections.deque = collections.deque(maxlen=100_000)
        # a previous process's reservations (it died mid-call)
        self.pending_at_start = len(self.ledger.pending())
        self.lost_at_start = self.released_at_start = 0  # the charge rule: sent rows lost, unsent released
        if self.pending_at_start and pending_rule == "charge":
            self.lost_at_start, self.released_at_start = self.ledger.close_pending(
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

    def accounting(self) -> dict:
        """What the run reports about its oracle, from the ledger (so it covers every process of a
        resumed run): NRE-purpose oracle evaluations made (attempts), samples that failed, and
        evaluation draws sent to the paid oracle for estimates."""
        out = {
            "oracle_evaluations": self.ledger.attempts(),
            "oracle_errors": self.ledger.errors(),
            "eval_paid": self.ledger.counter(EVAL_SENT),
        }
        if self.cost_per_call > 0:  # a paid endpoint: what it cost, from the ledger's calls table
            calls = self.ledger.calls()
            out["cost_usd"] = self.ledger.cost_usd()
            out["paid_calls"] = sum(1 for c in calls if c["status"] != "refunded")
            out["refunded_calls"] = sum(1 for c in calls if c["status"] == "refunded")
        return out

    def cost_usd(self) -> float:
        """USD charged for oracle calls so far (0 when ``cost_per_call`` is 0)."""
        return self.ledger.cost_usd()

    def can_afford_call(self) -> bool:
        """Whether one more oracle call fits in ``budget_usd`` (always, without a USD cap)."""
        if self.budget_usd <= 0 or self.cost_per_call <= 0:
            return True
        return micro_usd(self.ledger.cost_usd()) + micro_usd(self.cost_per_call) <= micro_usd(self.budget_usd)

    def eval_remaining(self, budget: int) -> int:
        return max(0, int(budget) - self.ledger.counter(EVAL_SENT))

    def lease(self) -> dict:
        return self.ledger.lease()

    def stats(self) -> dict:
        """Counters of oracle calls (all attempts); ``starts``: (monotonic time, samples) of each call
        as it started; ``grants``: the same at the time the rate limiter granted its tokens."""
        with self._stat_lock:
            return {
                **self._stats,
                "starts": list(self._starts),
                "grants": list(self._grants),
                "waits": list(self._waits),
                "rate_limit": self.bucket.rate,
                "burst": self.bucket.burst,
                "max_in_flight": self.max_in_flight,
                "pending_at_start": self.pending_at_start,
                "lost_at_start": self.lost_at_start,
                "released_at_start": self.released_at_start,
            }

    # ---- one oracle call, then one chunk with retries -------------------------------------------
    def _attempt(self, samples: list, keys: list[str] | None = None) -> list:
        """One oracle call: takes an in-flight slot and the rate-limit tokens, then calls the plug-in.

        The slot belongs to the call, not to its caller: a call past ``timeout_s`` is reported as
        failed (TimeoutError) but keeps its slot until the plug-in really returns, so at most
        ``max_in_flight`` calls ever run at once. A caller that finds no free slot within
        ``timeout_s`` (every slot held by a call past its deadline) fails the same way. ``keys``:
        the ledger rows of ``samples``, whose attempt is counted (committed) just before the call,
        with the call's cost (``OverBudget``, before anything is sent, when it would pass
        ``budget_usd``).
        """
        self._hold()
        wait = self.timeout_s if self.timeout_s > 0 else None
        if not self._slots.acquire(timeout=wait):
            with self._stat_lock:
                self._stats["timeouts"] += 1
                stuck = self._stats["overdue"]
            raise TimeoutError(
                f"no oracle slot free within timeout_s={self.timeout_s:g} "
                f"({stuck} of max_in_flight={self.max_in_flight} calls still running past their deadline)"
            )
        tokens = sum(len(s) for s in samples)
        try:
            granted = self.bucket.take(len(samples))
            self.token_bucket.take(tokens)
            self._hold()  # a Retry-After that came in while this call waited for its tokens
            if not liveness.alive(self.driver):  # a killed run's service: its calls end here
                raise DriverGone(
                    f"the run's driver ({self.driver}) has exited; reward service {self.owner} sends no further "
                    f"oracle call (its reservations stay pending for the resumed run)"
                )
            # a stale writer is refused here, and a call past budget_usd, before anything is sent
            seq = self.ledger.begin_call(
                keys or [], len(samples), tokens, self.cost_per_call, self.budget_usd, "nre" if keys else "eval"
            )
        except BaseException:
            self._slots.release()
            raise
        with self._stat_lock:
            st = self._stats
            st["calls"] += 1
            st["evaluations"] += len(samples)
            st["in_flight"] += 1
            st["max_in_flight_seen"] = max(st["max_in_flight_seen"], st["in_flight"])
            self._grants.append((granted, len(samples)))
            self._starts.append((time.monotonic(), len(samples)))
        fut: Future = Future()
        overdue = threading.Event()

        def run():
            try:
                try:
                    out = list(self.oracle.rewards(samples))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    self._end_call(seq, e)
                    fut.set_exception(e)
                else:
                    self._end_call(seq, None)
                    fut.set_result(out)
            finally:  # the slot is free only now, when the call has really ended
                with self._stat_lock:
                    self._stats["in_flight"] -= 1
                    self._stats["overdue"] -= overdue.is_set()
                self._slots.release()

        if wait is None:
            run()
            return fut.result()
        threading.Thread(target=run, daemon=True, name="oracle-call").start()
        try:
            return fut.result(timeout=wait)
        except TimeoutError:
            with self._stat_lock:  # the same lock as the call's own end: overdue is counted once
                late = not fut.done()
                if late:
                    overdue.set()
                    self._stats["overdue"] += 1
                    self._stats["timeouts"] += 1
            if not late:
                return fut.result()
            raise TimeoutError(f"oracle call exceeded timeout_s={self.timeout_s:g}") from None

    def _end_call(self, seq: int | None, exc: BaseException | None) -> None:
        """Close a paid call's ``calls`` row: charged, unless the endpoint refused it unbilled
        (an exception with ``billed = False``, e.g. HTTP 429/503, or a refused connection). A row
        that cannot be closed (stale writer) stays ``sent``: still counted, never under-counted."""
        if seq is None:
            return
        billed = exc is None or getattr(exc, "billed", not isinstance(exc, ConnectionRefusedError))
        try:
            self.ledger.end_call(seq, bool(billed), None if exc is None else f"{type(exc).__name__}: {exc}"[:500])
        except Exception:  # noqa: BLE001 - the row stays charged
            pass

    def _hold(self) -> None:
        """Wait out a server's Retry-After (shared by every caller of this service)."""
        while True:
            left = self._not_before - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

    def _hold_for(self, retry_after) -> None:
        """A server asked to wait ``retry_after`` seconds: no call of this service is sent before
        then (capped at ``retry_after_max_s``)."""
        wait = min(max(float(retry_after), 0.0), self.retry_after_max_s)
        with self._stat_lock:
            self._not_before = max(self._not_before, time.monotonic() + wait)
            self._waits.append(("retry_after", wait))

    def _retry_wait(self, attempt: int, retry_after) -> None:
        """Before attempt ``attempt + 1``: the server's Retry-After (already set as the hold every
        caller waits out), else full-jitter exponential backoff."""
        if retry_after is not None:
            self._hold()
            return
        if self.backoff_s <= 0:
            return
        wait = self.rng.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))
        with self._stat_lock:
            self._waits.append(("backoff", wait))
        time.sleep(wait)

    def _call(self, keys: list[str], samples: list) -> tuple[list[tuple[int | None, str | None]], list[int]]:
        """(reward, error) per sample after retries, and the indices never sent because the next
        call would have passed ``budget_usd``. Each attempt is counted in the ledger before it is
        made. Never raises for oracle errors (a stale ledger writer does raise: it must stop)."""
        n = len(samples)
        rewards: list = [None] * n
        errors: list = [None] * n
        todo = list(range(n))
        for attempt in range(1, self.retries + 1):
            sub = [samples[i] for i in todo]
            retry_after = None
            try:
                out, exc = self._attempt(sub, [keys[i] for i in todo]), None
                if len(out) != len(sub):
                    out, exc = None, f"ValueError: oracle returned {len(out)} rewards for {len(sub)} samples"
            except (StaleWriter, DriverGone):
                raise
            except OverBudget:  # not sent: these samples stay unpaid (the caller releases them)
                with self._stat_lock:
                    self._stats["refused_usd"] += 1
                return list(zip(rewards, errors)), todo
            except Exception as e:  # an oracle error is not a negative
                out, exc = None, f"{type(e).__name__}: {e}"
                retry_after = getattr(e, "retry_after", None)
                if retry_after is not None:  # holds every caller back, also after a last attempt
                    self._hold_for(retry_after)
            if out is None:
                with self._stat_lock:
                    self._stats["failed_calls"] += 1
            left = []
            for j, i in enumerate(todo):
                r, err = (None, exc) if out is None else _as_reward(out[j])
                rewards[i], errors[i] = r, err
                if r is None:
                    left.append(i)
            todo = left
            if not todo:
                break
            if attempt < self.retries:
                self._retry_wait(attempt, retry_after)
        return list(zip(rewards, errors)), []

    def _run_chunk(self, keys: list[str], samples: list) -> set[str]:
        """Evaluate one chunk of reserved samples and close their rows (durable), then wake waiters.
        Returns the keys never sent (``budget_usd`` reached), whose reservations were released."""
        try:
            res, unsent = self._call(keys, samples)
            refused = {keys[i] for i in unsent}
            if refused:
                self.ledger.release(
                    sorted(refused),
                    f"not sent: oracle.budget_usd {self.budget_usd:g} reached (not charged)",
                )
            self.ledger.complete(
                [
                    {"key": k, "reward": r, "error": e, "charged": int(self.charge_errors)}
                    for k, (r, e) in zip(keys, res)
                    if k not in refused
                ]
            )
            return refused
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
        refused: set[str] = set()
        if mine:
            size = self.max_batch if self.max_batch > 0 else len(mine)
            chunks = [mine[i : i + size] for i in range(0, len(mine), size)]
            jobs = [(c, [samples[first[k]] for k in c]) for c in chunks]
            if len(jobs) == 1:
                refused |= self._run_chunk(*jobs[0])
            else:
                futs = [self._pool.submit(self._run_chunk, *j) for j in jobs]
                for f in futs:
                    refused |= f.result()
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
            errors=sum(1 for k in own if rows[k]["status"] == "error" and k not in refused),
            spent=self.ledger.spent(),
            unpaid=sum(1 for k in keys if plan[k] == UNPAID or k in refused),
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

    def estimate(self, *batches, budget: int) -> EvalResult:
        """A success-rate estimate from the paid oracle (a task without a free evaluator, allowed by
        ``eval.paid_budget`` = ``budget``): at most ``budget`` draws over the whole run, reserved in the
        ledger before any call; each draw gets one attempt through the slots, rate limit and timeout;
        failed draws are left out of n and counted in ``errors``. Never NREs, never ledger rows."""
        t = time.perf_counter()
        drawn = [tuple(int(x) for x in s) for b in batches for s in b.samples]
        n = self.ledger.take_counter(EVAL_SENT, len(drawn), budget)
        samples = drawn[:n]
        size = self.max_batch if self.max_batch > 0 else max(len(samples), 1)
        chunks = [samples[i : i + size] for i in range(0, len(samples), size)]

        def one(chunk):
            try:
                out = self._attempt(chunk)
                if len(out) == len(chunk):
                    return [_as_reward(x)[0] for x in out]
            except Exception as e:  # noqa: BLE001 - a failed draw is left out, never a negative
                if getattr(e, "retry_after", None) is not None:
                    self._hold_for(e.retry_after)
            with self._stat_lock:
                self._stats["failed_calls"] += 1
            return [None] * len(chunk)

        rewards = [r for f in [self._pool.submit(one, c) for c in chunks] for r in f.result()]
        ok = [(s, r) for s, r in zip(samples, rewards) if r is not None]
        res = eval_result(self.task, [s for s, _ in ok], [r for _, r in ok], time.perf_counter() - t)
        res.errors = len(samples) - len(ok)
        res.paid_oracle = len(samples)
        return res

    def checkpoint(self) -> None:
        """Fold the ledger's write-ahead log into ``ledger.sqlite`` (after every round)."""
        self.ledger.checkpoint()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.ledger.close()
