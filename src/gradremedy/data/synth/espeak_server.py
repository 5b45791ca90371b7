"""A small process that runs espeak-ng's library like a fresh ``espeak-ng --stdout`` per request.

Started by :mod:`gradremedy.data.synth.native` as a script (``python -S espeak_server.py``, standard
library only, so it starts fast and stays small). It initialises the library once, exactly as the
``espeak-ng`` program does, and reads its voice list, then forks once per request: the child sets the
voice, rate and pitch, synthesises and writes the samples back, and exits. Every utterance is therefore
made from the same freshly initialised state, like one program call, without the program's start-up (about
7 ms of CPU per call, most of it reading the voice files). The library alone cannot be used for this: it
carries synthesis state from one utterance to the next.

Protocol, on stdin/stdout, little-endian:
  request  = int32 n, then n bytes of UTF-8 "voice\\0speed\\0pitch\\0text"
  response = int32 status (0 ok, 1 voice or synthesis refused, 2 child died), int32 sample rate,
             int32 byte count, then that many bytes of int16 samples
"""

import ctypes
import os
import struct
import sys

ENOUTPUT_MODE_SYNCHRONOUS = 0x0001
POS_CHARACTER = 1
ESPEAK_RATE, ESPEAK_PITCH = 1, 3
# The program's default flags: espeakCHARS_AUTO | espeakPHONEMES | espeakENDPAUSE.
SYNTH_FLAGS = 0x0 | 0x100 | 0x1000
OK, REFUSED, DIED = 0, 1, 2


class _VoiceSelector(ctypes.Structure):
    """espeak_VOICE, for the program's fallback from a voice name to a language."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _synthesise(lib: ctypes.CDLL, voice: str, speed: int, pitch: int, text: str) -> int:
    """The program's calls after its initialisation, in its order (the samples go to the callback);
    returns the status."""
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        selector = _VoiceSelector(languages=voice.encode())
        if lib.espeak_SetVoiceByProperties(ctypes.byref(selector)) != 0:
            return REFUSED
    lib.espeak_SetParameter(ESPEAK_RATE, speed, 0)
    lib.espeak_SetParameter(ESPEAK_PITCH, pitch, 0)
    encoded = text.encode()
    if lib.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, SYNTH_FLAGS, None, None) != 0:
        return REFUSED
    return OK if lib.espeak_Synchronize() == 0 else REFUSED


def main() -> None:
    lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libespeak-ng.so.1")
    lib.espeak_ng_InitializePath(None)
    context = ctypes.c_void_p()
    if lib.espeak_ng_Initialize(ctypes.byref(context)) != 0:
        sys.exit("espeak-ng: initialisation failed")
    if lib.espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, 0, None) != 0:
        sys.exit("espeak-ng: output initialisation failed")
    rate = lib.espeak_ng_GetSampleRate()
    chunks: list[bytes] = []

    def collect(wav, count, events):  # noqa: ANN001, ANN202 - a C callback
        if wav and count > 0:
            chunks.append(ctypes.string_at(wav, 2 * count))
        return 0

    callback = _CALLBACK(collect)
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_ListVoices(None)  # read once here, not in every child (the list does not change)

    requests, responses = sys.stdin.buffer, sys.stdout.fileno()
    while True:
        head = requests.read(4)
        if len(head) < 4:
            return
        (size,) = struct.unpack("<i", head)
        voice, speed, pitch, text = requests.read(size).decode("utf-8").split("\0", 3)
        child = os.fork()
        if child == 0:
            try:
                status = _synthesise(lib, voice, int(speed), int(pitch), text)
                data = b"".join(chunks) if status == OK else b""
                _write_all(responses, struct.pack("<iii", status, rate, len(data)) + data)
            finally:
                os._exit(0)
        _, exit_status = os.waitpid(child, 0)
        if exit_status != 0:
            _write_all(responses, struct.pack("<iii", DIED, 0, 0))


if __name__ == "__main__":
    main()
