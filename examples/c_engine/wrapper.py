"""The fields of the VAD engine (vad.c, built into libwrapper.so): no logic, declarations only.

aiges serves the C library; from this file it builds request validation, /openapi.json,
Swagger's example and the test values of `aiges check`.
"""
import os

from aiges.sdk import AudioBodyField, IntegerParamField, StringBodyField, WrapperBase

HERE = os.path.dirname(os.path.abspath(__file__))


class UserRequest(object):
    audio = AudioBodyField(key="audio", path=os.path.join(HERE, "test_data", "speech.pcm"), encoding="raw")
    threshold_db = IntegerParamField(key="threshold_db", minimum=-90, maximum=0, value=-40,
                                     description="a 10 ms frame at least this loud (dBFS) is speech")
    hangover_ms = IntegerParamField(key="hangover_ms", minimum=10, maximum=2000, value=200,
                                    description="quiet time that ends a segment")
    min_speech_ms = IntegerParamField(key="min_speech_ms", minimum=10, maximum=1000, value=30,
                                      description="loud time that starts a segment")


class UserResponse(object):
    accept1 = StringBodyField(key="segments")  # JSON text


class Wrapper(WrapperBase):
    serviceId = "vad"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()
    library = "libwrapper.so"  # a C engine: this file only declares its fields
