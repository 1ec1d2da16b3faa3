"""Plugin worker supervision (:mod:`.process`, :mod:`.pool`) and the loader's links to each worker
(:mod:`.links`: gRPC and :mod:`.lane`).  Import from here: ``WorkerPool``, ``Worker``,
``WorkerStartError``, ``SessionLink``."""
from aiges.loader.workers.links import SessionLink
from aiges.loader.workers.pool import WorkerPool
from aiges.loader.workers.process import Worker, WorkerStartError

__all__ = ["SessionLink", "Worker", "WorkerPool", "WorkerStartError"]
