"""torchaudio >= 2.9 has no ``torchaudio.info``; DASB's extractor asks it for the file's rate.

Put this folder on PYTHONPATH only where ``torchaudio.info`` is missing: it answers from
soundfile (``sample_rate``, ``num_frames``, ``num_channels``). Nothing else changes.
"""

import types

import soundfile
import torchaudio

if not hasattr(torchaudio, "info"):

    def _info(path, *args, **kwargs):
        meta = soundfile.info(str(path))
        return types.SimpleNamespace(
            sample_rate=meta.samplerate, num_frames=meta.frames, num_channels=meta.channels
        )

    torchaudio.info = _info
