"""Constants of the wrapper SDK, identical to upstream ``aiges.core.types``.

``from aiges.sdk.types import *`` is how upstream wrappers import them.  ``DataOther`` / ``OTHER``
(=4, the proto's OTHER type) is an addition: upstream had no constant for it.
"""

STRING = 0
AUDIO = 1
IMAGE = 2
VIDEO = 3
OTHER = 4

DataText = 0
DataAudio = 1
DataImage = 2
DataVideo = 3
DataOther = 4

Types = {0: "text", 1: "audio", 2: "image", 3: "video"}

DataBegin = 0
DataContinue = 1
DataEnd = 2
DataOnce = 3
Once = DataOnce

Status = {0: "begin", 1: "continue", 2: "end", 3: "once"}

THREAD_MODE = "thread"
PROCESS_MODE = "process"  # accepted for compatibility; upstream marks it "not usable"
