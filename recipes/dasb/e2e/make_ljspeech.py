#!/usr/bin/env python3
"""An LJSpeech-shaped folder (metadata.csv + wavs/ at 22.05 kHz) from the demo corpus.

Usage::

    python recipes/demo_corpus.py /tmp/dasb_e2e/demo --num 20
    python recipes/dasb/e2e/make_ljspeech.py /tmp/dasb_e2e/demo /tmp/dasb_e2e/LJSpeech

Authors
 * BiCodec plugin authors 2026
"""

import argparse
import json
import os

import soundfile
import soxr

LJSPEECH_RATE = 22050


def main(argv=None):
    """Writes ``wavs/LJ900-NNNN.wav`` and ``metadata.csv`` (``id|text|normalized text``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo_corpus", help="folder written by recipes/demo_corpus.py")
    parser.add_argument("output", help="LJSpeech-shaped folder to write")
    args = parser.parse_args(argv)
    os.makedirs(os.path.join(args.output, "wavs"), exist_ok=True)
    lines = []
    for manifest in ("train.jsonl", "valid.jsonl"):
        with open(os.path.join(args.demo_corpus, manifest), encoding="utf-8") as f:
            for line in f:
                item = json.loads(line)
                wav, rate = soundfile.read(os.path.join(args.demo_corpus, item["wav_path"]))
                uttid = f"LJ900-{int(item['index']):04d}"
                path = os.path.join(args.output, "wavs", f"{uttid}.wav")
                audio = soxr.resample(wav, rate, LJSPEECH_RATE) if rate != LJSPEECH_RATE else wav
                soundfile.write(path, audio, LJSPEECH_RATE, subtype="PCM_16")
                lines.append(f"{uttid}|{item['text']}|{item['text']}")
    with open(os.path.join(args.output, "metadata.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} utterances in {args.output}")


if __name__ == "__main__":
    main()
