"""MLServer's side of the echo job: a custom runtime that returns its input, nothing else.

Loaded by MLServer (in the benchmark's own venv, never by aiges) from a model folder whose
``model-settings.json`` names ``mlserver_echo.EchoModel``.  Per request MLServer parses the V2
JSON body into its pydantic types; ``predict`` decodes the BYTES input ``text`` with the string
codec, and encodes the same strings as the BYTES output ``result``, as a user's runtime would.
That matches the aiges echo job: envelope parsed, base64 text decoded, handed to the wrapper,
returned as output ``result``.
"""
from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class EchoModel(MLModel):
    async def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        text = StringCodec.decode_input(payload.inputs[0])
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[StringCodec.encode_output("result", text, use_bytes=False)])
