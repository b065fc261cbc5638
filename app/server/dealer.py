"""Several workers: the supervisor accepts every connection and deals it to the least busy.

Uvicorn's own workers share one listening socket and each accepts what it can. A keep-alive
client keeps its connection for its whole life, so the split at connect time is the split
of the work for good: 8 clients on two workers often land unevenly, and the busier worker
sets the p99 (`connection_split` in scripts/bench_common.py measures it; figures in
docs/benchmarks.md). Here the supervisor owns the listening
socket, accepts, and sends each new connection (its file descriptor, SCM_RIGHTS over a Unix
socket pair) to the worker with the fewest open connections; the worker serves it as if it
had accepted it itself. Only connecting goes through the supervisor: requests and responses
flow between client and worker directly.

Messages on a worker's socket pair (SOCK_SEQPACKET, so each keeps its bounds):
  supervisor -> worker   one byte and one file descriptor: a connection to serve
  worker -> supervisor   `REPORT`: connections taken so far, open now, and whether the
                         app is ready (`set_readiness`), sent once the worker is serving
                         and then whenever they change (10 times a second at most, on
                         uvicorn's tick), and every `HEARTBEAT_SECONDS` regardless

Ready workers are dealt to first: a worker that was just started (or replaced) serves, but
is still loading its segments; connections dealt to it would get 503s or slow exact scans
while a sibling is ready. Once ready, a worker stays so for dealing: after every write it
is briefly "not ready" while its graph takes the new rows, and keep-alive connections
dealt by such blips would stay skewed.

A worker that sends no report for uvicorn's `timeout_worker_healthcheck` (5 s) is hung: its
event loop, whose tick sends the reports, no longer runs, and every connection dealt to it
would wait forever. It is killed, and replaced as a dead one. A worker that dies is
replaced, unless its death shows that the app cannot start (then the
supervisor stops with uvicorn's start-up failure code; see `Supervisor._cannot_start`),
and a worker whose supervisor is gone sees its socket pair close and shuts down.

SIGHUP restarts the workers one at a time, as uvicorn's own supervisor does: a new worker
starts, and once it is ready (segments loaded, graphs built) one old worker is no longer
dealt to and stops gracefully, finishing what it is answering; then the next. A new worker
that dies or is not ready within `RESTART_READY_SECONDS` is killed and the restart stops,
keeping the old workers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.context import SpawnProcess

import uvicorn
from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE

from app.server.affinity import REPLACES

log = logging.getLogger("uvicorn.error")

REPORT = struct.Struct("!QQ?")  # connections taken, connections open, app ready
DEAL = b"c"
ACCEPTS_PER_WAKE = 64  # connections accepted in a row before reports are read again
CHECK_SECONDS = 0.5  # how often the supervisor looks for dead and hung workers
HEARTBEAT_SECONDS = 1.0  # a serving worker reports at least this often
START_GRACE_SECONDS = 10.0  # at start, how long to wait for every worker before accepting
RESTART_READY_SECONDS = 600.0  # in a rolling restart, how long a new worker may take to be ready


@dataclass(eq=False)
class Worker:
    """The supervisor's view of one worker process."""

    process: SpawnProcess
    channel: socket.socket  # the supervisor's end of the socket pair
    dealt: int = 0
    taken: int = 0
    open: int = 0
    serving: bool = False  # has reported: its app is started, it can take connections
    ready: bool = False  # its app has said it is ready (segments loaded, graphs built)
    served: bool = False  # has ever reported (`serving` ends when it dies)
    heard_at: float = 0.0  # time.monotonic() of its last report

    @property
    def load(self) -> int:
        """Open connections, counting those dealt but not yet taken."""
        return self.open + self.dealt - self.taken


class Supervisor:
    """Runs `config.workers` worker processes and deals them the listener's connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.config = config
        self.listener = config.bind_socket()
        self.listener.listen(config.backlog)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.workers: list[Worker] = []
        self.listening = False
        self.turn = 0  # ties go round the workers, so equal loads still alternate
        self.exit_code: int | None = None
        self.served = False  # some worker has served since the start
        self.all_started = False  # every first worker has served, or the grace is over
        self.grace_ends = time.monotonic() + START_GRACE_SECONDS
        self.restart_requested = False  # SIGHUP
        self.to_restart: list[Worker] = []  # old workers a rolling restart has yet to replace
        self.incoming: Worker | None = None  # the new worker it waits for
        self.incoming_deadline = 0.0
        self.leaving: list[Worker] = []  # old workers stopping

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM (or a worker that cannot start); the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        _start_resource_tracker_deaf_to_hangups()
        signal.signal(signal.SIGHUP, self._on_hangup)
        log.info("Started parent process, dealing connections to %d workers", self.config.workers)
        try:
            self.workers = [self._spawn() for _ in range(self.config.workers)]
            while self.exit_code is None:
                for key, _ in self.selector.select(CHECK_SECONDS):
                    if key.data is None:
                        self._deal()
                    else:
                        self._read_report(key.data)
                self._kill_hung()
                self._advance_restart()
                self._replace_dead()
                self._listen_while_serving()
        finally:
            self._stop()
        return self.exit_code

    def _on_signal(self, signum: int, frame: object) -> None:
        self.exit_code = 0

    def _on_hangup(self, signum: int, frame: object) -> None:
        self.restart_requested = True

    def _spawn(self, replacing: Worker | None = None) -> Worker:
        """Start a worker; `replacing`: the old worker it will take over from (its CPU,
        when workers are pinned: `app.server.affinity`)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        target = functools.partial(run_worker, self.config)
        process = get_subprocess(self.config, target, [theirs])
        if replacing is not None:
            os.environ[REPLACES] = str(replacing.process.pid)  # the child's copy of the env
        try:
            process.start()
        finally:
            os.environ.pop(REPLACES, None)
        theirs.close()  # the child has its own copy now
        worker = Worker(process, ours)
        self.selector.register(ours, selectors.EVENT_READ, worker)
        return worker

    def _read_report(self, worker: Worker) -> None:
        try:
            message = worker.channel.recv(REPORT.size)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if len(message) != REPORT.size:  # closed: the worker is gone or going
            self._retire(worker)
            return
        worker.taken, worker.open, ready = REPORT.unpack(message)
        worker.heard_at = time.monotonic()
        worker.ready = worker.ready or ready  # started up: later dips (indexing writes) pass
        worker.serving = worker.served = self.served = True
        self._listen_while_serving()

    def _deal(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                connection, _ = self.listener.accept()
            except BlockingIOError:
                return
            with connection:
                self._hand_over(connection)

    def _hand_over(self, connection: socket.socket) -> None:
        """Send the connection to the least loaded ready worker, else to the least loaded
        serving one (closed if none takes it).

        The sockets to the workers do not block: a worker too busy to read what it was
        sent is passed over rather than holding up every connection behind it.
        """
        by_readiness_and_load = sorted(self._serving(), key=lambda w: (not w.ready, w.load))
        for worker in by_readiness_and_load:  # ties stay in turn order
            try:
                socket.send_fds(worker.channel, [DEAL], [connection.fileno()])
            except BlockingIOError:
                continue
            except OSError:  # its end is closed: it died since its last report
                self._retire(worker)
                continue
            worker.dealt += 1
            self.turn = self.workers.index(worker) + 1
            return

    def _serving(self) -> list[Worker]:
        """Serving workers, in turn order from the one after the last dealt to."""
        turn = self.turn % max(len(self.workers), 1)
        ordered = self.workers[turn:] + self.workers[:turn]
        return [w for w in ordered if w.serving]

    def _listen_while_serving(self) -> None:
        """Accept only while some worker serves: until then the kernel queues connects.

        At start, wait for every worker (or for the grace to end): the first worker up
        would otherwise keep every connection made before the others, for good.
        """
        if not self.all_started:
            everyone = all(w.served for w in self.workers)
            self.all_started = everyone or time.monotonic() > self.grace_ends
        serving = self.all_started and any(w.serving for w in self.workers)
        if serving and not self.listening:
            self.selector.register(self.listener, selectors.EVENT_READ, None)
        elif self.listening and not serving:
            self.selector.unregister(self.listener)
        self.listening = serving

    def _retire(self, worker: Worker) -> None:
        """Stop dealing to a worker (it is replaced once its process has ended)."""
        if worker.channel.fileno() != -1:
            self.selector.unregister(worker.channel)
            worker.channel.close()
        worker.serving = False
        self._listen_while_serving()

    def _kill_hung(self) -> None:
        """Kill serving workers that stopped reporting; `_replace_dead` replaces them."""
        now = time.monotonic()
        for worker in self.workers:
            silent = now - worker.heard_at
            if worker.serving and silent > self.config.timeout_worker_healthcheck:
                log.error(
                    "Worker [%s] sent no report for %.1f s: killing it", worker.process.pid, silent
                )
                self._retire(worker)
                worker.process.kill()

    def _advance_restart(self) -> None:
        """One step of a rolling restart: start a new worker, and once it is ready stop an
        old one; so the server never has fewer ready workers than before."""
        if self.restart_requested and not self.to_restart:  # SIGHUP during one: ignored
            self.to_restart = list(self.workers)
            log.info("Restarting %d workers, one at a time", len(self.to_restart))
        self.restart_requested = False
        self.leaving = [w for w in self.leaving if w.process.is_alive()]  # reaps the others
        self.to_restart = [w for w in self.to_restart if w in self.workers]  # died meanwhile
        incoming = self.incoming
        if incoming is None:
            if self.to_restart and self.exit_code is None:
                self.incoming = self._spawn(replacing=self.to_restart[0])
                self.workers.append(self.incoming)
                self.incoming_deadline = time.monotonic() + RESTART_READY_SECONDS
            return
        if incoming.ready:
            self.incoming = None
            if self.to_restart:
                self._let_go(self.to_restart.pop(0))
            elif len(self.workers) > self.config.workers:  # its old one died and was replaced
                self._let_go(incoming)
        elif not incoming.process.is_alive() or time.monotonic() > self.incoming_deadline:
            self._stop_restart(incoming)

    def _stop_restart(self, incoming: Worker) -> None:
        """Give up on a new worker that died or is not ready in time; keep the old ones."""
        log.error(
            "New worker [%s] died or was not ready in time: restart stopped", incoming.process.pid
        )
        incoming.process.kill()
        incoming.process.join()
        self._retire(incoming)
        self.workers.remove(incoming)
        self.incoming, self.to_restart = None, []

    def _let_go(self, worker: Worker) -> None:
        """Deal no more to an old worker and stop it; it finishes what it is answering."""
        self._retire(worker)
        self.workers.remove(worker)
        worker.process.terminate()
        self.leaving.append(worker)

    def _replace_dead(self) -> None:
        for index, worker in enumerate(self.workers):
            if worker.process.is_alive() or worker is self.incoming or self.exit_code is not None:
                continue
            worker.process.join()
            self._retire(worker)
            pid, code = worker.process.pid, worker.process.exitcode
            if self._cannot_start(worker):
                log.error("Worker [%s] failed to start (exit code %s): stopping", pid, code)
                self.exit_code = STARTUP_FAILURE
                return
            log.info("Worker [%s] died (exit code %s): replacing it", pid, code)
            self.workers[index] = self._spawn()

    def _cannot_start(self, dead: Worker) -> bool:
        """Whether a dead worker shows the app cannot start, so a new one would die too.

        It does if it died of uvicorn's start-up failure, or before serving while no
        worker ever has: an app that does not import, or a C extension that crashes on this
        CPU, kills every worker so, with whatever exit code. A worker killed while starting
        next to one that serves is only replaced.
        """
        if dead.served:
            return False
        return dead.process.exitcode == STARTUP_FAILURE or not self.served

    def _stop(self) -> None:
        """Stop accepting, then stop the workers: each finishes what it is answering."""
        for worker in self.workers:
            worker.serving = False
        self._listen_while_serving()
        self.listener.close()
        everyone = self.workers + self.leaving
        for worker in everyone:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in everyone:
            worker.process.join()
            self._retire(worker)
        self.selector.close()
        log.info("Stopped parent process")


def _always_ready() -> bool:
    return True


_readiness: Callable[[], bool] = _always_ready


def set_readiness(check: Callable[[], bool]) -> None:
    """How this worker's app tells whether it is ready; the supervisor deals to ready
    workers first. Harmless where no supervisor deals (one worker: nothing reads it)."""
    global _readiness
    _readiness = check


def _start_resource_tracker_deaf_to_hangups() -> None:
    """Start multiprocessing's resource tracker now, with SIGHUP ignored (an ignored signal
    stays ignored across exec), rather than at the first worker start.

    A hang-up sent to the process group (a closed terminal) restarts the workers; the
    tracker, which ignores only SIGINT and SIGTERM itself, would die of it instead.
    """
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)


def run_worker(config: uvicorn.Config, sockets: list[socket.socket]) -> None:
    """A worker process's target: a uvicorn server fed by the supervisor's socket pair.

    SIGHUP is the supervisor's (a rolling restart): a hang-up sent to the whole process
    group, as when a terminal closes, must not kill the workers it is restarting.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    DealtServer(config, sockets[0]).run()


class DealtServer(uvicorn.Server):
    """A uvicorn server with no listener: it serves the connections its supervisor sends."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.taken = 0
        self.reported: tuple[int, int, bool] | None = None
        self.reported_at = 0.0
        # Once ready, ready for dealing (see the module's docstring): the app is not asked
        # again on every tick, a check that walks every segment of every collection.
        self.ready = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listening socket
        self.protocol = functools.partial(  # as uvicorn builds it for its own listener
            self.config.http_protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._receive, loop)
        self._report()  # ready: the supervisor starts dealing

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.channel, len(DEAL), 1)
        except BlockingIOError:
            return
        except OSError:
            message, fds = b"", []
        if not message:  # the supervisor is gone: stop as on SIGTERM
            loop.remove_reader(self.channel.fileno())
            self.should_exit = True
        for fd in fds:
            loop.create_task(self._take(loop, socket.socket(fileno=fd)))

    async def _take(self, loop: asyncio.AbstractEventLoop, connection: socket.socket) -> None:
        """Serve a dealt connection as uvicorn serves one its own listener accepted."""
        try:
            await loop.connect_accepted_socket(self.protocol, connection)
        except OSError:  # the client left before we took it
            connection.close()
        self.taken += 1

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())  # take no more
        await super().shutdown(sockets)

    async def on_tick(self, counter: int) -> bool:
        self._report()
        return await super().on_tick(counter)

    def _report(self) -> None:
        """Tell the supervisor how many connections this worker holds, when that changed,
        and that this worker is alive, every `HEARTBEAT_SECONDS`."""
        self.ready = self.ready or _readiness()
        state = (self.taken, len(self.server_state.connections), self.ready)
        due = time.monotonic() - self.reported_at >= HEARTBEAT_SECONDS
        if (state == self.reported and not due) or self.should_exit:
            return
        try:
            self.channel.send(REPORT.pack(*state))
        except BlockingIOError:
            return  # its buffer is full: the next tick reports again
        except OSError:
            self.should_exit = True
            return
        self.reported, self.reported_at = state, time.monotonic()
