"""Run a batch's items on a Ray cluster: workers hold the model, the driver keeps the report.

The per-item half of :mod:`persam_studio.core.jobs` (:func:`run_item`) runs in
Ray actors, one per worker; the driver half (:class:`~persam_studio.core.jobs.Batch`)
stays in the command's process and records the outcomes in ``report.csv``.

* A *work spec* (:class:`WorkSpec`) is a small picklable value: the engine
  options, the fitted targets, the output layout. Each actor calls
  ``spec.build()`` once, so it loads the model once, and then runs
  :func:`run_item` with that work function for every item it is given.
* Workers write the outputs themselves, atomically, into folders every node
  mounts at the same path; only the rows travel back.
* Faults. An actor whose process dies (kill -9, the OOM killer, a lost node)
  is restarted by Ray (``max_restarts``); the items it held are handed to the
  next free worker, so each item is recorded exactly once. An item whose
  worker died :data:`MAX_ATTEMPTS` times is an ``error`` row (it is probably
  what kills them). After such a death the atomic-write temporaries the dead
  process left for this run's outputs are removed.

Ray is an optional extra (``pip install "persam-studio[cluster]"``) and is
imported only when a runner connects, so the core imports without it.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from persam_studio.core.errors import Cancelled, PersamError
from persam_studio.core.jobs.batch import remove_stale_temporaries
from persam_studio.core.jobs.items import Item, Outcome, Work, run_item

#: The pip extra that brings Ray.
EXTRA = "persam-studio[cluster]"
#: Items queued on each worker: the next one is there when one ends, so a
#: worker never idles for a round trip to the driver.
IN_FLIGHT = 2
#: Restarts of one worker's process before it is given up.
MAX_RESTARTS = 4
#: Worker deaths while holding one item before that item is an error row.
MAX_ATTEMPTS = 3
#: Seconds between checks of ``should_cancel`` while waiting for results.
_POLL = 0.5


class MissingExtra(ImportError):
    """Ray is not installed; ``str()`` says which extra to install."""


class WorkSpec(Protocol):
    """What a worker needs to build a batch command's per-item work; picklable.

    ``build()`` runs once per worker process (it loads the model there).
    ``shared_outputs()`` names files outside the items' outputs that the work
    also writes atomically (the embedding cache's entries), so that a killed
    worker's temporaries for them can be removed after the run.
    """

    def build(self) -> Work: ...

    def shared_outputs(self) -> Iterable[Path]: ...


@dataclass(frozen=True)
class RunStats:
    """What a run on the cluster did, for the command's last line.

    Attributes:
        workers: workers that started.
        gpus: how many of them hold a GPU.
        items: items finished by the workers (kept items not counted).
        seconds: wall time from the first item sent to the last result.
        startup: seconds until every worker had loaded its model.
        restarts: worker processes that died and were restarted.
        retried: items handed to another worker after their worker died.
    """

    workers: int = 0
    gpus: int = 0
    items: int = 0
    seconds: float = 0.0
    startup: float = 0.0
    restarts: int = 0
    retried: int = 0

    def summary(self) -> str:
        """One line: photos per second and workers (what a user sizes the next run by)."""
        if not self.workers:
            return "no photos left for the Ray workers"
        rate = self.items / self.seconds if self.seconds > 0 else 0.0
        gpus = f", {self.gpus} with a GPU" if self.gpus else ""
        line = (f"{self.items} photos in {self.seconds:.1f} s: {rate:.2f} photos/s on "
                f"{self.workers} Ray worker{'s' if self.workers != 1 else ''}{gpus} "
                f"(ready after {self.startup:.1f} s)")
        if self.restarts:
            line += f"; {self.restarts} worker restart{'s' if self.restarts != 1 else ''}, {self.retried} retried"
        return line


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        MissingExtra: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise MissingExtra(f'--ray needs Ray: pip install "{EXTRA}"') from None
    return ray


class RayRunner:
    """Connection to a Ray cluster and the runs of work specs on it.

    Args:
        address: ``local`` starts a Ray instance on this machine for this run
            (loopback only, stopped at :meth:`close`); anything else goes to
            ``ray.init(address=...)`` (``auto``, ``HOST:6379``, ``ray://...``).
            A process already connected to Ray (a test, a notebook) keeps
            that connection and ignores ``address``.
        workers: number of worker actors; default one per GPU of the
            cluster, else one per node (each using its node's cores).
        gpus: whether workers may take GPUs (False for ``--device cpu``).
        init_options: extra ``ray.init`` arguments for a ``local`` instance
            (the bench and tests pass ``num_cpus``).

    Use as a context manager: ``with RayRunner("auto") as runner: ...``.
    """

    def __init__(self, address: str, workers: int | None = None, *, gpus: bool = True,
                 init_options: dict[str, Any] | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.address = address
        self.workers = workers
        self.gpus = gpus
        self.init_options = dict(init_options or {})
        self.stats = RunStats()
        self._ray: Any = None
        self._connected_here = False

    def __enter__(self) -> RayRunner:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect to (or start) the cluster.

        Raises:
            MissingExtra: Ray is not installed.
            PersamError: the cluster cannot be reached.
        """
        ray = self._ray = import_ray()
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
        if self.address == "local":
            _loopback_only(ray)
            options.update(address="local", include_dashboard=False, **self.init_options)
        else:
            options.update(address=self.address)
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PersamError(None, f"cannot reach the Ray cluster at {self.address!r}: {message}") from None
        self._connected_here = True

    def close(self) -> None:
        """Disconnect; a ``local`` instance started here is stopped."""
        if self._connected_here and self._ray is not None:
            self._ray.shutdown()
            self._connected_here = False

    def run(self, spec: WorkSpec, items: Sequence[Item], *,
            should_cancel: Callable[[], bool] | None = None) -> Iterator[Outcome]:
        """Run ``spec``'s work on every item on the cluster; one outcome per item, in finishing order.

        Workers start (load their model) first; a worker that cannot start
        stops the run with its one-line error. :attr:`stats` describes the run
        when the iterator is exhausted.

        Raises:
            PersamError: a worker could not start, or every worker died for good.
            Cancelled: ``should_cancel()`` returned True.
            ray.exceptions.RayTaskError: a bug in the work (as a local run would raise it).
        """
        if self._ray is None:
            self.connect()
        items = list(items)
        if not items:
            self.stats = RunStats()
            return
        pool = _Pool(self._ray, spec, self._worker_options(len(items)))
        try:
            yield from pool.run(items, should_cancel)
        finally:
            self.stats = pool.stats()
            pool.stop()
            if pool.deaths:
                # Every worker of this run is gone now: a temporary left beside
                # one of our outputs can only be a killed write.
                remove_stale_temporaries([*(p for item in items for p in item.outputs), *spec.shared_outputs()])

    def _worker_options(self, n_items: int) -> list[dict[str, Any]]:
        """Ray actor options of each worker: GPUs when the cluster has them, else cores per node."""
        ray = self._ray
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.gpus else 0
        # Nodes that can run a worker (a KubeRay head often has num-cpus 0: it only schedules).
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
        count = self.workers or (gpus or len(nodes) or 1)
        count = max(1, min(count, n_items))  # a worker per item at most: loading a model is not free
        if gpus:
            per_worker: dict[str, Any] = {"num_gpus": min(1.0, gpus / count), "num_cpus": 1}
        else:
            # Ray sets each actor's thread count (OMP_NUM_THREADS) to its CPUs:
            # share the smallest node's cores among the workers that land on a node.
            node_cpus = [int(n.get("Resources", {}).get("CPU", 1)) for n in nodes] or [1]
            per_node = math.ceil(count / max(1, len(node_cpus)))
            per_worker = {"num_cpus": max(1, min(node_cpus) // per_node), "num_gpus": 0}
        return [dict(per_worker) for _ in range(count)]


def _loopback_only(ray: Any) -> None:
    """Make a ``local`` instance bind to 127.0.0.1 only.

    On Linux Ray binds its servers to the machine's outward address so that
    other nodes can join; a local instance is for this machine alone. Ray
    chooses loopback when clusters are disabled (its macOS and Windows
    default); the switch is a module constant, so it is set here for this
    process (a no-op on Ray versions without it).
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False


class PersamWorker:
    """The Ray actor: builds the work once, then runs one item per call.

    ``cwd`` is the driver's working folder: relative input and output paths
    mean the same there when the folder is on the shared mount (else only
    absolute paths work, as on any other machine).
    """

    def __init__(self, spec: WorkSpec, cwd: str) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)  # this process is the actor's alone
        self._error: str | None = None
        self._work: Work | None = None
        try:
            self._work = spec.build()
        except Exception as exc:  # noqa: BLE001 - reported by ready(), the driver stops with it
            self._error = str(exc) if isinstance(exc, PersamError) else f"{type(exc).__name__}: {exc}"

    def ready(self) -> tuple[str | None, int]:
        """(the start-up error or None, GPUs this worker holds)."""
        import ray

        return self._error, len(ray.get_gpu_ids())

    def run(self, item: Item) -> Outcome:
        if self._work is None:
            raise RuntimeError(f"worker did not start: {self._error}")
        return run_item(self._work, item)


class _Pool:
    """The workers of one run and the driver's scheduling of items onto them."""

    def __init__(self, ray: Any, spec: WorkSpec, options: list[dict[str, Any]]) -> None:
        self.ray = ray
        self.errors = ray.exceptions
        remote = ray.remote(PersamWorker)
        cwd = os.getcwd()
        t0 = time.perf_counter()
        self.actors = [remote.options(max_restarts=MAX_RESTARTS, max_task_retries=0,
                                      scheduling_strategy="SPREAD", **o).remote(spec, cwd) for o in options]
        self.deaths = 0
        self.retried = 0
        self.done = 0
        self.gpus = 0
        self._started = 0.0
        self._t0 = t0
        self._startup = 0.0
        self._wait_ready()

    def _wait_ready(self) -> None:
        try:
            answers = self.ray.get([a.ready.remote() for a in self.actors])
        except self.errors.RayActorError as exc:
            self.stop()
            raise PersamError(None, f"a Ray worker could not start: {_first_line(exc)}") from None
        problems = [err for err, _ in answers if err]
        if problems:
            self.stop()
            raise PersamError(None, f"a Ray worker could not start: {problems[0]}")
        self.gpus = sum(1 for _, g in answers if g)
        self._startup = time.perf_counter() - self._t0

    def run(self, items: list[Item], should_cancel: Callable[[], bool] | None) -> Iterator[Outcome]:
        ray, errors = self.ray, self.errors
        queue = deque(items)
        attempts: dict[int, int] = {}
        load = [0] * len(self.actors)
        state = ["ready"] * len(self.actors)  # ready | restarting | dead
        restarts = [0] * len(self.actors)
        running: dict[Any, tuple[int, Item]] = {}  # result ref -> (worker, item)
        pings: dict[Any, int] = {}  # ready() ref of a restarting worker -> worker
        self._started = time.perf_counter()

        def lost(w: int) -> None:
            # One death may fail several of the worker's items: count it once.
            if state[w] != "ready":
                return
            self.deaths += 1
            restarts[w] += 1
            if restarts[w] > MAX_RESTARTS:
                state[w] = "dead"
            else:
                state[w] = "restarting"
                pings[self.actors[w].ready.remote()] = w  # answers once Ray restarted it

        while queue or running:
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            for w, actor in enumerate(self.actors):
                while state[w] == "ready" and load[w] < IN_FLIGHT and queue:
                    item = queue.popleft()
                    running[actor.run.remote(item)] = (w, item)
                    load[w] += 1
            if not running and not pings:
                raise PersamError(None, "every Ray worker died; run the same command again to resume")
            ready, _ = ray.wait([*running, *pings], num_returns=1, timeout=_POLL)
            for ref in ready:
                if ref in pings:
                    w = pings.pop(ref)
                    try:
                        err, _ = ray.get(ref)
                        state[w] = "dead" if err else "ready"
                    except errors.ActorDiedError:
                        state[w] = "dead"
                    except errors.RayActorError:  # still restarting: ask again
                        pings[self.actors[w].ready.remote()] = w
                    continue
                w, item = running.pop(ref)
                load[w] -= 1
                try:
                    outcome = ray.get(ref)
                except errors.RayActorError:
                    lost(w)
                    attempts[item.index] = attempts.get(item.index, 0) + 1
                    if attempts[item.index] >= MAX_ATTEMPTS:
                        message = str(PersamError(item.source, f"its Ray worker died {MAX_ATTEMPTS} times "
                                                                "on it (out of memory?)"))
                        self.done += 1
                        yield Outcome(item, (), message, 0.0)
                    else:
                        self.retried += 1
                        queue.appendleft(item)  # first in line for the next free worker
                    continue
                self.done += 1
                yield outcome

    def stats(self) -> RunStats:
        seconds = time.perf_counter() - self._started if self._started else 0.0
        return RunStats(len(self.actors), self.gpus, self.done, seconds, self._startup, self.deaths, self.retried)

    def stop(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone: nothing to stop
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
