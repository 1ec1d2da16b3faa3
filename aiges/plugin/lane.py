"""The lane: once requests and session frames from our own loader, many per read, none paying a gRPC call.

Why not gRPC: a unary grpc.aio call costs the loader ~0.1 ms of CPU and the plugin an event-loop
round trip plus a thread hand-off per request -- more than an echo wrapper's whole work (see
CHANGELOG "The lane"); a session frame on a gRPC stream cost even more.  The lane is one
unix-socket connection per worker, opened by the loader after ``wrapperInit``, carrying
length-prefixed frames (``aiges.wire.frames``):

    loader -> plugin   ONCE (an ``aiges.Request``), CREATE / WRITE / WRITE_ACK / DESTROY (a session's)
    plugin -> loader   ANSWER (to ONCE, CREATE, DESTROY), RESULT (a session's result), ACKED

Requests and answers are matched by id, so answers come back in any order; a session's results
carry its number (its CREATE's id).  The loader coalesces what it has to send in one write per
event-loop turn (nothing waits for a timer); this side reads whatever arrived in one ``recv`` on
its own thread and answers each request as soon as it is done.

Once requests run in the plugin's shared thread pool (``workerThreads``), the same pool sessions
use.  A wrapper with ``wrapperOnceExecBatch`` gets dynamic batching: one batcher thread forms a
batch when a thread is free -- everything queued, up to ``max_batch_size``, waiting at most
``max_queue_delay_ms`` for more -- so batches grow exactly when the wrapper is the bottleneck.
Session frames go to the :class:`~aiges.plugin.sessions.SessionRunner` (ordering, read polling,
destroy-once); their results come back on the connection the session was created on, sent by the
wrapper thread that produced them.  When that connection is lost (the loader went away), its
sessions are destroyed.

upstream's Go loader never sees any of this: it keeps using the gRPC service + ``communicate``.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiges import errors
from aiges.plugin.hosts import Host
from aiges.plugin.sessions import SessionRunner
from aiges.wire import frames
from aiges.wire.frames import REQUEST_HEAD, response_frame
from aiges.wire.pb import aiges_inner_pb2 as pb

logger = logging.getLogger("aiges.plugin.lane")
RECV_SIZE = 256 * 1024
_STOP = object()


class _Conn:
    """One accepted loader connection; answers go back on the connection the request came from.

    Answers and results are sent by the wrapper threads that produce them; what others produce while
    one thread is in ``sendall`` leaves with that thread's next ``sendall`` (no timer, no extra
    thread): under load many frames share one system call and one wake-up of the loader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False
        self.handles: set[str] = set()  # live sessions created over this connection
        self._out: list[bytes] = []
        self._sending = False

    def send(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            self._out.append(data)
            if self._sending:
                return  # the thread sending now takes it along
            self._sending = True
        while True:
            with self.lock:
                out = self._out
                if not out or self.closed:
                    self._sending = False
                    out.clear()
                    return
                self._out = []
            try:
                self.sock.sendall(out[0] if len(out) == 1 else b"".join(out))
            except OSError:
                with self.lock:
                    self.closed = True  # the loader went away: it has failed these requests already


class _Item:
    __slots__ = ("conn", "rid", "deadline", "payload")

    def __init__(self, conn: _Conn, rid: int, deadline: float | None, payload: bytes) -> None:
        self.conn = conn
        self.rid = rid
        self.deadline = deadline
        self.payload = payload


class Lane:
    def __init__(self, path: str, host: Host, executor: ThreadPoolExecutor, threads: int, sessions: SessionRunner,
                 max_batch_size: int | None = None, max_queue_delay_ms: float | None = None) -> None:
        self.path = path
        self.host = host
        self.sessions = sessions
        self.executor = executor
        self.threads = threads
        self._override_batch = max_batch_size
        self._override_delay = max_queue_delay_ms
        self._pending = 0  # requests received and not yet answered
        self._lock = threading.Lock()
        self._batches: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = threading.Semaphore(threads)
        self._batcher: threading.Thread | None = None
        self._closing = False
        if os.path.exists(path):
            os.unlink(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(8)
        self._conns: list[_Conn] = []
        threading.Thread(target=self._accept, name="lane-accept", daemon=True).start()

    # ---- configuration, read once the wrapper is loaded
    def batch_config(self) -> tuple[int, float]:
        """(max_batch_size, max_queue_delay seconds); size 1 = no batching.  The wrapper declares
        its limits (``Host.batch_limits``); ``[aiges]`` overrides them."""
        if not self.host.has_batch:
            return 1, 0.0
        size, delay = self.host.batch_limits()
        size = self._override_batch or size or 8
        delay = self._override_delay if self._override_delay is not None else delay
        return max(1, size), max(0.0, delay) / 1000.0

    # ---- state for the plugin's drain
    @property
    def pending(self) -> int:
        return self._pending

    @property
    def connected(self) -> bool:
        """A loader connection is open (someone is there to take answers)."""
        return any(not c.closed for c in self._conns)

    def close(self) -> None:
        self._closing = True
        try:
            self._listener.close()
        except OSError:
            pass
        for c in list(self._conns):
            with c.lock:
                c.closed = True
                try:
                    c.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.sock.close()
        self._batches.put(_STOP)
        if os.path.exists(self.path):
            try:
                os.unlink(self.path)
            except OSError:
                pass

    # ---- threads
    def _accept(self) -> None:
        while not self._closing:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = _Conn(sock)
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), name="lane-read", daemon=True).start()

    def _read(self, conn: _Conn) -> None:
        buf = bytearray()
        head = REQUEST_HEAD
        hsize = head.size
        sock = conn.sock
        try:
            while True:
                chunk = sock.recv(RECV_SIZE)
                if not chunk:
                    return
                buf += chunk
                pos = 0
                end = len(buf)
                now = time.monotonic()
                while end - pos >= hsize:
                    length, kind, rid, timeout = head.unpack_from(buf, pos)
                    if end - pos < hsize + length:
                        break
                    payload = bytes(buf[pos + hsize:pos + hsize + length])
                    pos += hsize + length
                    if kind == frames.ONCE:
                        self._received(_Item(conn, rid, now + timeout if timeout > 0 else None, payload))
                    elif kind == frames.WRITE or kind == frames.WRITE_ACK:
                        self._write(conn, rid, kind == frames.WRITE_ACK, payload)
                    elif kind == frames.CREATE:
                        self._create(conn, rid, payload)
                    elif kind == frames.DESTROY:
                        self._destroy(conn, rid, payload)
                    else:
                        logger.error("lane: frame of unknown kind %d from the loader ignored", kind)
                if pos:
                    del buf[:pos]
        except OSError:
            return
        finally:
            with conn.lock:
                conn.closed = True
                handles = list(conn.handles)
            sock.close()
            if conn in self._conns:
                self._conns.remove(conn)
            self.sessions.destroy_many(handles)  # their loader went away: nobody ends them now

    # ---- sessions (ordering, polling and destroy-once are the SessionRunner's)
    def _create(self, conn: _Conn, number: int, payload: bytes) -> None:
        req = pb.CreateRequest.FromString(payload)

        def route(resp: pb.Response) -> None:
            conn.send(response_frame(frames.RESULT, number, 0, resp.SerializeToString()))

        def created(h: pb.Handle) -> None:
            if not h.err_code and h.handle:
                with conn.lock:
                    gone = conn.closed
                    if not gone:
                        conn.handles.add(h.handle)
                if gone:  # its loader went away during the create
                    self.sessions.destroy(h.handle)
                    return
            conn.send(response_frame(frames.ANSWER, number, 0, h.SerializeToString()))
        self.sessions.create(req, route, created)

    def _write(self, conn: _Conn, number: int, ack: bool, payload: bytes) -> None:
        msg = pb.WriteMessage.FromString(payload)
        tag = msg.req.tag

        def written(ret: pb.Ret) -> None:
            if ret.ret:  # in order with the session's results, after those of earlier frames
                self.sessions.push(pb.Response(tag=tag, ret=ret.ret, msg=ret.msg))
            if ack:
                conn.send(response_frame(frames.ACKED, number, 0, b""))
        self.sessions.write(msg, written)

    def _destroy(self, conn: _Conn, rid: int, payload: bytes) -> None:
        handle = pb.Handle.FromString(payload).handle

        def destroyed(ret: pb.Ret) -> None:
            with conn.lock:
                conn.handles.discard(handle)
            conn.send(response_frame(frames.ANSWER, rid, 0, ret.SerializeToString()))
        self.sessions.destroy(handle, destroyed)

    def _received(self, item: _Item) -> None:
        with self._lock:
            self._pending += 1
        size, _delay = self.batch_config()
        if size > 1:
            if self._batcher is None:
                self._batcher = threading.Thread(target=self._form_batches, name="lane-batcher", daemon=True)
                self._batcher.start()
            self._batches.put(item)
        else:
            self.executor.submit(self._one, item)

    def _done(self, n: int) -> None:
        with self._lock:
            self._pending = max(0, self._pending - n)

    def _one(self, item: _Item) -> None:
        try:
            req = pb.Request.FromString(item.payload)
            resp = self.host.once(req, item.deadline)
        except BaseException as e:  # noqa: BLE001 - an answer for every request, whatever happens
            resp = pb.Response(ret=errors.WRAPPER_EXEC, msg=f"plugin failed to run the request: {e}")
        item.conn.send(response_frame(frames.ANSWER, item.rid, 1, resp.SerializeToString()))
        self._done(1)

    def _form_batches(self) -> None:
        """One batch at a time, formed only when a thread is free to run it: while the wrapper is
        busy, requests queue up and the next batch takes them all (up to max_batch_size)."""
        q = self._batches
        while True:
            self._slots.acquire()
            first = q.get()
            if first is _STOP:
                return
            size, delay = self.batch_config()
            batch = [first]
            until = time.monotonic() + delay
            while len(batch) < size:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = q.get(timeout=left)
                    except queue.Empty:
                        break
                if item is _STOP:
                    q.put(_STOP)
                    break
                batch.append(item)
            self.executor.submit(self._run_batch, batch)

    def _run_batch(self, batch: list[_Item]) -> None:
        try:
            try:
                reqs = [pb.Request.FromString(i.payload) for i in batch]
                resps = self.host.once_batch(reqs, [i.deadline for i in batch])
            except BaseException as e:  # noqa: BLE001 - an answer for every request, whatever happens
                resps = [pb.Response(ret=errors.WRAPPER_EXEC, msg=f"plugin failed to run the batch: {e}")] * len(batch)
            by_conn: dict[int, tuple[_Conn, list[bytes]]] = {}
            for n, (item, resp) in enumerate(zip(batch, resps, strict=True)):
                # the batch size rides on the batch's first answer only, so the loader counts batches
                frame = response_frame(frames.ANSWER, item.rid, len(batch) if n == 0 else 0, resp.SerializeToString())
                by_conn.setdefault(id(item.conn), (item.conn, []))[1].append(frame)
            for conn, answers in by_conn.values():
                conn.send(b"".join(answers))
        finally:
            self._slots.release()
            self._done(len(batch))
