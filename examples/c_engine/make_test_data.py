"""Writes test_data/speech.pcm, the clip the tests and wrapper.py use, and states its answer.

3.2 s of 16 kHz mono s16le: quiet noise (|x| <= 40, about -63 dBFS) with three 440 Hz tones of
amplitude 6000 (about -18 dBFS) at 300-1000 ms, 1500-2200 ms and 2600-3150 ms, and a 20 ms click
at 1250 ms (shorter than min_speech_ms = 30, so not a segment).  With the default params the
detector answers exactly EXPECTED; the last segment is still open when the audio ends.
Deterministic (an LCG, no random module): running it again writes the same bytes.
"""
import math
import os
import struct

RATE = 16000
EXPECTED = {"segments": [{"start_ms": 300, "end_ms": 1000}, {"start_ms": 1500, "end_ms": 2200},
                         {"start_ms": 2600, "end_ms": 3150}], "duration_ms": 3200}
TONES = [(300, 1000), (1250, 1270), (1500, 2200), (2600, 3150)]


def samples():
    seed = 12345
    for i in range(RATE * 32 // 10):
        seed = (seed * 1103515245 + 12345) % 2 ** 31
        x = seed % 81 - 40
        ms = i * 1000 // RATE
        if any(a <= ms < b for a, b in TONES):
            x = round(6000 * math.sin(2 * math.pi * 440 * i / RATE))
        yield x


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "test_data", "speech.pcm"), "wb") as f:
        f.write(struct.pack(f"<{RATE * 32 // 10}h", *samples()))
    print("wrote test_data/speech.pcm; expected:", EXPECTED)
