"""{{name}}: the fields of the C engine in libwrapper.so (created by `aiges create --lang c` on {{date}}).

No logic here: aiges serves the library (wrapper.c, built with `make`); this file only declares
what a request holds and what the engine answers.  aiges builds from it the request validation,
/openapi.json, Swagger's "Try it out" and the test values of `aiges check`.  Keep it in step with
wrapper.c: every key the engine returns must be declared below.
"""
import os

from aiges.sdk import StringBodyField, StringParamField, WrapperBase

HERE = os.path.dirname(os.path.abspath(__file__))


class UserRequest(object):
    text = StringBodyField(key="text", value=open(os.path.join(HERE, "test_data", "hello.txt"), "rb").read())
    mode = StringParamField(key="mode", enums=["upper", "lower"], value="upper",
                            description="upper- or lower-case the text")


class UserResponse(object):
    accept1 = StringBodyField(key="result")  # JSON text: {"text", "chars", "words"}


class Wrapper(WrapperBase):
    serviceId = "{{name}}"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()
    library = "libwrapper.so"  # this file declares a C engine: the library serves the requests
