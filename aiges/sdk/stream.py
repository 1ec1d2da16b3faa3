"""Upstream-compatible helpers for streaming wrappers (``from aiges.sdk.stream import ...``).

A session manager hands out pre-started worker threads ("handles"); each worker runs the
wrapper's ``StreamHandleThread`` subclass, which reads input frames from ``in_q`` and pushes
results with ``aiges.callback.callback``.  Same names, constructor arguments and attributes as
upstream; fixed: no undefined ``log``, thread-safe handle acquisition, ``ProcessThreadPool`` (never
usable upstream) falls back to threads with a warning.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import aiges.sdk.types as ai_types

logger = logging.getLogger("aiges.stream")
lock = threading.Lock()


class StreamHandleThread(threading.Thread):
    """Base of the user's per-session processing thread; override ``init_model`` and ``run``."""

    def __init__(self, session_thread: WorkerThread, in_q: queue.Queue[Any], out_q: queue.Queue[Any]) -> None:
        super().__init__(daemon=True)
        self.is_stopping = False
        self.session_thread = session_thread
        self.in_q = in_q
        self.out_q = out_q

    def init_model(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("override StreamHandleThread.init_model")

    def stop(self) -> None:
        self.is_stopping = True

    def run(self) -> None:
        self.init_model(self.session_thread.handle)
        while not self.is_stopping:
            time.sleep(0.1)


class WorkerThread(threading.Thread):
    """Holds one session's context (sid, params, queues, callback) and runs its handle thread."""

    def __init__(self, handle: str) -> None:
        super().__init__(daemon=True)
        self.handle = handle
        self.sid = ""
        self.is_stopping = False
        self.in_q: queue.Queue[Any] = queue.Queue()
        self.out_q: queue.Queue[Any] = queue.Queue()
        self.is_idle = True
        self.params: dict[str, Any] = {}
        self.StreamHandleThreadClass: type[StreamHandleThread] = StreamHandleThread
        self.callback_fn: Any = None

    def init_model(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("override WorkerThread.init_model")

    @property
    def idle(self) -> bool:
        return self.is_idle

    def setup_sid(self, sid: str) -> None:
        self.sid = sid

    def setup_params(self, params: dict[str, Any]) -> None:
        self.params = params
        self.is_idle = False

    def setup_callback_fn(self, callback: Any) -> None:
        self.callback_fn = callback

    def reset(self) -> None:
        self.sid = ""
        self.params = {}
        with self.in_q.mutex:
            self.in_q.queue.clear()
        with self.out_q.mutex:
            self.out_q.queue.clear()
        self.is_idle = True

    def setStreamHandleThreadClass(self, cls: type[StreamHandleThread]) -> None:
        self.StreamHandleThreadClass = cls

    def stop(self) -> None:
        self.is_stopping = True

    def run(self) -> None:
        worker = self.StreamHandleThreadClass(self, self.in_q, self.out_q)
        worker.start()
        worker.join()


class Pool:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerThread] = {}

    def get_thread(self, handle: str) -> WorkerThread | None:
        return self.workers.get(handle)

    def get_idle_thread_handle(self) -> tuple[str | None, WorkerThread | None]:
        for h, s in self.workers.items():
            if s.idle:
                s.is_idle = False
                return h, s
        return None, None

    def reset_thread(self, handle: str) -> None:
        t = self.workers.get(handle)
        if t is not None:
            t.reset()

    def set_idle(self, handle: str) -> None:
        t = self.workers.get(handle)
        if t is not None:
            t.is_idle = True


class ThreadPool(Pool):
    """``nums`` worker threads named ``Process-<n>-Thread-<i>``, each bound to one handle."""

    def __init__(self, reqDataThreadCls: type[StreamHandleThread], processs_no: int = 0, nums: int = 10) -> None:
        super().__init__()
        for i in range(nums):
            handle = f"Process-{processs_no}-Thread-{i}"
            t = WorkerThread(handle)
            t.setStreamHandleThreadClass(reqDataThreadCls)
            t.start()
            self.workers[handle] = t


class ProcessThreadPool(ThreadPool):
    """Upstream's process mode never worked; kept as a name, it runs threads."""

    def __init__(self, reqWorkerHandleCls: type[StreamHandleThread], procs: int = 2, threads_per_cpu: int = 5) -> None:
        logger.warning("PROCESS_MODE is not supported; using %d threads", procs * threads_per_cpu)
        super().__init__(reqWorkerHandleCls, 0, procs * threads_per_cpu)


class SessionManager:
    """Hands out idle worker handles for sessions and takes them back."""

    def __init__(self, config: dict[str, Any] | None = None, mode: str = ai_types.THREAD_MODE, nums: int = 0) -> None:
        self.initialized = False
        self.code = 0
        self.handle_pool: Pool = Pool()
        self.lock = threading.Lock()
        self.wrapperConfig: dict[str, Any] = dict(config or {})

    def init_wrapper_config(self, config: dict[str, Any] | None = None) -> None:
        self.wrapperConfig = dict(config or {})

    def init_handle_pool(self, mode: str, nums: int, ReqThreadCls: type[StreamHandleThread]) -> None:
        if mode == ai_types.PROCESS_MODE:
            self.handle_pool = self.init_processes(ReqThreadCls, 2, max(1, nums // 2))
        else:
            self.handle_pool = self.init_threads(ReqThreadCls, nums)
        self.initialized = True

    def init_threads(self, ReqThreadCls: type[StreamHandleThread], nums: int = 10) -> Pool:
        return ThreadPool(ReqThreadCls, 0, nums)

    def init_processes(self, ReqThreadCls: type[StreamHandleThread], procs: int = 2, threads_per_cpu: int = 5) -> Pool:
        return ProcessThreadPool(ReqThreadCls, procs, threads_per_cpu)

    def get_session(self, handle: str) -> WorkerThread | None:
        return self.handle_pool.get_thread(handle)

    def set_idle_session(self, handle: str) -> None:
        self.handle_pool.set_idle(handle)

    def get_idle_handle(self) -> str | None:
        with self.lock:
            handle, _ = self.handle_pool.get_idle_thread_handle()
            return handle

    def reset_session(self, handle: str) -> None:
        self.handle_pool.reset_thread(handle)

    def push_back(self, handle: str) -> None:
        self.reset_session(handle)
        self.set_idle_session(handle)
