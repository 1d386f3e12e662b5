"""Every shipped yaml against the reference's numbers, and the architecture written once.

* each recipe in ``hparams/`` builds (a tiny local wav2vec2 stands in for XLS-R,
  a random 384-wide CTranslate2 Whisper for tiny.en);
* the 16 kHz generator has the release's 156,330,380 parameters and exactly its
  key set; the 16 kHz and 24 kHz discriminators have SparkVox's 42,519,760;
* the tiny recipes build the same classes, with the tiny test release's sizes;
  ``bicodec_tiny.yaml`` (Whisper) and ``bicodec_tiny_wav2vec2.yaml`` differ in
  their front-end only;
* each recipe's training values follow the SparkVox config named in its header
  (the numbers below are read off that config);
* a consistency check in the spirit of SpeechBrain's ``tests/utils/check_yaml.py``:
  every variable of a recipe yaml is used by the yaml, ``recipes/train.py`` or
  ``BiCodecBrain``, and every hparams key they read exists in every recipe.

Authors
 * BiCodec plugin authors 2026
"""

import dataclasses
import os
import re

import pytest
import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml

from bicodec_plugin.arch import arch_defaults, arch_path, read_arch_tree
from bicodec_plugin.testing import TINY_ARCH

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPARAMS_DIR = os.path.join(ROOT, "hparams")
RECIPES = sorted(f for f in os.listdir(HPARAMS_DIR) if f.endswith(".yaml"))
READERS = [
    os.path.join(ROOT, "recipes", "train.py"),
    os.path.join(ROOT, "bicodec_plugin", "training", "brain.py"),
]
RELEASED_PARAMS = 156_330_380
SPARKVOX_DISC_PARAMS = 42_519_760

# The SparkVox configs the recipes follow (egs/codec/bicodec/config/*.yaml @
# a829e0a5), in SparkVox's own units: Lightning steps advance twice per batch.
SPARKVOX = {
    "bicodec.16k.yaml": {
        "sample_rate": 16000,
        "latent_hop_length": 320,
        "mel": (1024, 640, 320),
        "batch_size": 32,
        "additonal_duration_per_side": 1,
        "segment_duration": 2.4,
        "max_val_duration": 12,
        "highpass_cutoff_freq": 40,
        "limit_val_batches": 50,
        "val_check_interval": 200,
        "max_steps": 3_500_000,
        "d_vector_train_start": 1000,
        "codebook_loss_weight": 4.0,
        "loss_lambdas": {"mel": 15, "adv": 1, "fm": 2, "vq": 1, "spk": 1, "feat": 1},
        "mel_loss": ([5, 10, 20, 40, 80, 160, 320], [32, 64, 128, 256, 512, 1024, 2048]),
        "warmup_down_min_max": (1000, 500000, 1e-5, 1e-4),
        "betas": [0.8, 0.9],
        "grad_clip": 1.0,
    },
}
SPARKVOX["bicodec.24k.yaml"] = {
    **SPARKVOX["bicodec.16k.yaml"],
    "sample_rate": 24000,
    "latent_hop_length": 480,
    "batch_size": 24,
}


def recipe_path(name):
    """Path of a shipped recipe yaml."""
    return os.path.join(HPARAMS_DIR, name)


FRONTEND_FILES = ["frontend_wav2vec2", "frontend_whisper"]
TINY_RECIPES = ["bicodec_tiny.yaml", "bicodec_tiny_wav2vec2.yaml"]
WHISPER_RECIPES = {"bicodec_tiny.yaml"}
TINY_EN_WIDTH = 384


@pytest.fixture(scope="module")
def recipes(tiny_wav2vec2_dir, tiny_whisper_dir):
    """Every shipped recipe, loaded (its lobes built) once."""
    built = {}
    for name in RECIPES:
        source = tiny_whisper_dir if name in WHISPER_RECIPES else tiny_wav2vec2_dir
        with open(recipe_path(name), encoding="utf-8") as fin:
            built[name] = load_hyperpyyaml(
                fin, {"ssl_source": source, "train_manifest": "unused.jsonl"}
            )
    return built


def count(module):
    """Parameters, weight norm's g and v counted as the reference does."""
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------- architecture
@pytest.mark.slow
def test_every_recipe_builds(recipes):
    """Each file in hparams/ builds a codec, a discriminator and a front-end."""
    from bicodec_plugin.codec.model import BiCodec
    from bicodec_plugin.training.discriminators import BiCodecDiscriminator

    assert set(RECIPES) == {"bicodec_16k.yaml", "bicodec_24k.yaml", *TINY_RECIPES}
    for name, hparams in recipes.items():
        assert isinstance(hparams["codec"], BiCodec), name
        assert isinstance(hparams["discriminator"], BiCodecDiscriminator), name
        assert hparams["modules"]["generator"] is hparams["codec"], name
        assert hparams["checkpointer"].recoverables["generator"] is hparams["codec"], name
        assert hparams["codec"].ssl is None, name  # training keeps the front-end outside
        if name in TINY_RECIPES:  # the encoder reads what its real front-end gives
            assert hparams["arch"]["ssl_dim"] == hparams["ssl"].output_size, name


@pytest.mark.slow
def test_16k_generator_is_the_release(recipes, reference_dir):
    """156,330,380 parameters and exactly the release's keys and shapes."""
    from bicodec_plugin.formats.weights import release_state_dict

    codec = recipes["bicodec_16k.yaml"]["codec"]
    assert count(codec) == RELEASED_PARAMS
    with open(os.path.join(reference_dir, "bicodec_16k_state_dict.tsv"), encoding="utf-8") as fin:
        rows = [line.rstrip("\n").split("\t") for line in fin][1:]
    expected = {key: (shape, dtype) for key, shape, dtype in rows}
    ours = {
        key: ("x".join(map(str, t.shape)) or "scalar", str(t.dtype).replace("torch.", ""))
        for key, t in release_state_dict(codec).items()
    }
    assert len(expected) == 842 and set(ours) == set(expected)
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bicodec_16k.yaml", "bicodec_24k.yaml"])
def test_discriminator_is_sparkvox(recipes, name):
    """5 period + 3 multi-band STFT discriminators: 42,519,760 parameters."""
    disc = recipes[name]["discriminator"]
    assert count(disc) == SPARKVOX_DISC_PARAMS
    assert len(disc.mpd.discriminators) == 5 and len(disc.mrd.discriminators) == 3
    # five strided/unstrided convs per period discriminator, the fifth 1024 -> 1024
    convs = disc.mpd.discriminators[0].convs
    assert [c.out_channels for c in convs] == [32, 128, 512, 1024, 1024]
    assert [c.stride[0] for c in convs] == [3, 3, 3, 3, 1]


@pytest.mark.slow
def test_24k_differs_from_16k_only_in_the_last_decoder_block(recipes):
    """Same keys and shapes but the wave generator's last upsampling block; hop 480."""
    c16, c24 = recipes["bicodec_16k.yaml"]["codec"], recipes["bicodec_24k.yaml"]["codec"]
    assert (c16.hop_length, c24.hop_length) == (320, 480)
    s16, s24 = c16.state_dict(), c24.state_dict()
    assert set(s16) == set(s24)
    differ = sorted({k.split(".")[2] for k in s16 if s16[k].shape != s24[k].shape})
    assert differ == ["4"], differ  # decoder.model.4: the block of rate 2 -> 3
    # bicodec.24k.yaml keeps the 640/320 speaker mel: 451 frames for 6 s at 24 kHz
    mel = c24.mel_transformer(torch.zeros(1, 6 * 24000))
    assert mel.shape[-1] == 451


@pytest.mark.slow
@pytest.mark.parametrize("tiny_name", TINY_RECIPES)
def test_tiny_builds_the_same_classes(recipes, tiny_name):
    """The tiny recipes wire the same lobe classes as the 16 kHz one, in the same tree
    (the wav2vec2 one its front-end too; the other one a Whisper encoder)."""
    from bicodec_plugin.codec.lobes.whisper import WhisperEncoder

    def classes(module):
        return [(name, type(m).__name__) for name, m in module.named_modules()]

    parts = ["codec", "discriminator"]
    if tiny_name in WHISPER_RECIPES:
        assert isinstance(recipes[tiny_name]["ssl"], WhisperEncoder)
    else:
        parts.append("ssl")
    for part in parts:
        big, tiny = recipes["bicodec_16k.yaml"][part], recipes[tiny_name][part]
        names_big, names_tiny = dict(classes(big)), dict(classes(tiny))
        shared = set(names_big) & set(names_tiny)
        assert {names_big[n] for n in names_big} == {names_tiny[n] for n in names_tiny}, part
        assert all(names_big[n] == names_tiny[n] for n in shared), part


@pytest.mark.slow
@pytest.mark.parametrize("tiny_name", TINY_RECIPES)
def test_tiny_sizes_are_the_tiny_release(recipes, reference_dir, tiny_name):
    """The tiny recipes, testing.TINY_ARCH and the tiny release agree (but the
    Whisper recipe's ssl_dim, tiny.en's 384)."""
    from bicodec_plugin.formats.release import read_release_config, release_to_arch

    arch = recipes[tiny_name]["arch"]
    expected = {**arch_defaults("codec"), **TINY_ARCH}
    if tiny_name in WHISPER_RECIPES:
        expected["ssl_dim"] = TINY_EN_WIDTH
    assert {k: arch[k] for k in expected} == expected
    release = release_to_arch(read_release_config(os.path.join(reference_dir, "tiny_release")))
    if tiny_name in WHISPER_RECIPES:
        assert release.pop("ssl_dim") == TINY_ARCH["ssl_dim"]
    assert {k: expected[k] for k in release} == release


def test_tiny_recipes_differ_in_the_front_end_only(recipes):
    """bicodec_tiny.yaml (Whisper) and bicodec_tiny_wav2vec2.yaml: same values but the
    front-end include, its source, its width, its context rule and the run's name."""
    whisper, wav2vec2 = (recipes[name] for name in TINY_RECIPES)
    front_end_keys = {"frontend", "ssl", "ssl_source", "ssl_context"}
    run_name_keys = {"experiment_name", "output_folder", "save_folder", "samples_folder"}
    run_name_keys |= {"tensorboard_folder", "train_log", "export_folder"}
    objects = {"codec", "discriminator", "modules", "checkpointer", "epoch_counter"}
    objects |= {"train_logger", "mel_loss", "gen_adv_loss", "disc_adv_loss"}
    objects |= {"feat_match_loss", "speaker_loss", "feat_loss", "lr_schedule"}
    objects |= {"opt_class_generator", "opt_class_discriminator", "arch", "disc"}
    assert set(whisper) == set(wav2vec2)
    for key in set(whisper) - front_end_keys - run_name_keys - objects:
        assert whisper[key] == wav2vec2[key], key
    for key in run_name_keys:
        assert whisper[key] == wav2vec2[key].replace("bicodec_tiny_wav2vec2", "bicodec_tiny")
    arch_w, arch_v = whisper["arch"], wav2vec2["arch"]
    plain = set(arch_defaults("codec")) - {"ssl"}
    assert {k for k in plain if arch_w[k] != arch_v[k]} == {"ssl_dim"}
    assert {k: whisper["disc"][k] for k in arch_defaults("discriminator")} == {
        k: wav2vec2["disc"][k] for k in arch_defaults("discriminator")
    }
    assert (whisper["ssl_context"], wav2vec2["ssl_context"]) == (None, 1.0)
    assert not whisper["ssl"].shift_invariant and wav2vec2["ssl"].shift_invariant


def test_release_config_round_trips_through_the_arch_keys():
    """arch_to_release and release_to_arch are inverse; the default is the release."""
    from bicodec_plugin.formats.release import arch_to_release, release_to_arch

    assert release_to_arch(arch_to_release({})) == {
        k: v for k, v in arch_defaults("codec").items() if k != "ssl"
    }
    assert release_to_arch(arch_to_release(TINY_ARCH))["latent_dim"] == 32


def test_release_config_disagreement_is_refused():
    """Two release entries that are one key here must agree, and unknown entries are refused."""
    from bicodec_plugin.formats.release import (
        ReleaseLoadError,
        arch_to_release,
        release_to_arch,
    )

    config = arch_to_release({})
    config["prenet"]["out_channels"] = 512
    with pytest.raises(ReleaseLoadError, match="prenet.out_channels = 512 disagrees"):
        release_to_arch(config)
    config = arch_to_release({})
    config["decoder"]["d_out"] = 2
    with pytest.raises(ReleaseLoadError, match="unsupported entry decoder.d_out"):
        release_to_arch(config)
    config = arch_to_release({})
    config["latent_hop_length"] = 480
    with pytest.raises(ReleaseLoadError, match="latent_hop_length 480"):
        release_to_arch(config)


# ---------------------------------------------------------- training values
def header_config(name):
    """The SparkVox config file and commit a recipe's header names."""
    with open(recipe_path(name), encoding="utf-8") as fin:
        header = "".join(line for line in fin if line.startswith("#"))
    match = re.search(r"config/(bicodec\.\w+\.yaml)\s*#?\s*(?:at commit )?(\w{8})", header)
    assert match, f"{name}: the header names no SparkVox config and commit"
    return match.group(1), match.group(2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bicodec_16k.yaml", "bicodec_24k.yaml"])
def test_training_values_follow_the_named_sparkvox_config(recipes, name):
    """Every training value of a full-size recipe is its SparkVox config's (in batches)."""
    config, commit = header_config(name)
    assert commit == "a829e0a5"
    ref = SPARKVOX[config]
    h = recipes[name]
    arch = h["arch"]
    assert h["sample_rate"] == ref["sample_rate"] == arch["sample_rate"]
    assert h["codec"].hop_length == ref["latent_hop_length"]
    assert (arch["mel_n_fft"], arch["mel_win_length"], arch["mel_hop_length"]) == ref["mel"]
    assert h["batch_size"] == ref["batch_size"]
    assert h["ssl_context"] == ref["additonal_duration_per_side"]
    assert h["segment_duration"] == ref["segment_duration"]
    assert h["max_valid_duration"] == ref["max_val_duration"]
    assert h["highpass_cutoff"] == ref["highpass_cutoff_freq"]
    assert h["max_valid_utterances"] == ref["limit_val_batches"]
    assert h["steps_per_epoch"] == ref["val_check_interval"]  # Lightning counts batches here
    assert 2 * h["max_steps"] == ref["max_steps"]
    assert h["optimizer_step_limit"] == h["max_steps"]
    assert 2 * h["d_vector_train_start"] == ref["d_vector_train_start"]
    assert arch["codebook_loss_weight"] == ref["codebook_loss_weight"]
    assert h["codec"].quantizer.codebook_loss_weight == ref["codebook_loss_weight"]
    assert h["loss_weights"] == ref["loss_lambdas"]
    bins, windows = ref["mel_loss"]
    assert (h["mel_loss_bins"], h["mel_loss_windows"]) == (bins, windows)
    assert {m.sample_rate for m in h["mel_loss"].mels} == {ref["sample_rate"]}
    sched = h["lr_schedule"]
    assert (sched.warmup_steps, sched.decay_steps, sched.min_lr, sched.max_lr) == ref[
        "warmup_down_min_max"
    ]
    for opt in ("opt_class_generator", "opt_class_discriminator"):
        optimizer = h[opt]([torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(optimizer, torch.optim.AdamW)
        assert list(optimizer.defaults["betas"]) == ref["betas"]
        assert optimizer.defaults["lr"] == 1.0
        assert optimizer.defaults["weight_decay"] == 0.01
    assert h["max_grad_norm"] == ref["grad_clip"]
    assert h["precision"] == "fp32" and h["find_unused_parameters"] is True
    assert h["volume_normalize"] is True
    assert h["disc"]["disc_swap_hop_and_window"] is True  # SparkVox's effective STFTs


@pytest.mark.slow
@pytest.mark.parametrize("tiny_name", TINY_RECIPES)
def test_tiny_follows_the_16k_training_logic(recipes, tiny_name):
    """The tiny recipes change sizes and step counts only, never the loss recipe (and
    the Whisper one reads whole utterances: its features depend on position)."""
    tiny, full = recipes[tiny_name], dict(recipes["bicodec_16k.yaml"])
    if tiny_name in WHISPER_RECIPES:
        assert tiny["ssl_context"] is None and not tiny["ssl"].shift_invariant
        full["ssl_context"] = None
    for key in (
        "loss_weights",
        "mel_loss_bins",
        "mel_loss_windows",
        "ssl_context",
        "max_grad_norm",
        "volume_normalize",
        "valid_reference",
        "precision",
    ):
        assert tiny[key] == full[key], key
    assert tiny["arch"]["codebook_loss_weight"] == full["arch"]["codebook_loss_weight"]
    assert tiny["disc"]["disc_swap_hop_and_window"] == full["disc"]["disc_swap_hop_and_window"]


# -------------------------------------------------------------- consistency
def top_level_keys(path):
    """Top-level keys of a yaml file, tags kept out of the way."""
    with open(path, encoding="utf-8") as fin:
        return list(ruamel.yaml.YAML().load(fin))


def reads_in(paths):
    """hparams keys read by the recipe and its Brain: required and optional reads."""
    required, optional = set(), set()
    for path in paths:
        with open(path, encoding="utf-8") as fin:
            text = fin.read()
        required |= set(re.findall(r"hparams\[\"(\w+)\"\]", text))
        required |= set(re.findall(r"hparams\.(\w+)", text))
        optional |= set(re.findall(r"getattr\(self\.hparams, \"(\w+)\"", text))
        # keys the recipe adds itself are not reads
        written = set(re.findall(r"hparams\[\"(\w+)\"\] =", text))
        required -= written
        optional |= written
    return required - {"get"}, optional


def speechbrain_run_options():
    """Keys Brain takes from hparams when not given on the command line."""
    from speechbrain.utils.run_opts import RunOptions

    return {field.name for field in dataclasses.fields(RunOptions)}


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_variable_is_used(name):
    """check_yaml: each variable is referenced in the yaml, read by the recipe or Brain, or a run option."""
    path = recipe_path(name)
    with open(path, encoding="utf-8") as fin:
        text = fin.read()
    required, optional = reads_in(READERS)
    run_options = speechbrain_run_options()
    unused = []
    for key in top_level_keys(path):
        if key.startswith("__"):
            continue  # executed for its effect (the seed)
        referenced = re.search(rf"<{key}(\[|>)", text) is not None
        if not (referenced or key in required or key in optional or key in run_options):
            unused.append(key)
    assert not unused, f"{name}: variables used nowhere: {unused}"


@pytest.mark.parametrize("name", RECIPES)
def test_every_read_exists_in_the_recipe(name):
    """check_yaml, the other way: every hparams key train.py and the Brain require is defined."""
    required, _ = reads_in(READERS)
    missing = sorted(required - set(top_level_keys(recipe_path(name))))
    assert not missing, f"{name} lacks {missing}, which the recipe or BiCodecBrain reads"


@pytest.mark.parametrize("name", ["codec", "discriminator", *FRONTEND_FILES])
def test_every_arch_variable_is_used(name):
    """Each value of an architecture file feeds one of its lobes (or a named consumer)."""
    consumers = {"volume_normalize": "BiCodecTokenizer and the training data"}
    with open(arch_path(name), encoding="utf-8") as fin:
        text = fin.read()
    unused = [
        key
        for key in arch_defaults(name)
        if not re.search(rf"<{key}>", text) and key not in consumers
    ]
    assert not unused, f"{name}.yaml: values used by no lobe: {unused}"


def test_arch_files_define_lobes_once():
    """No recipe re-wires a lobe: their only !new: tags are training objects."""
    lobe_classes = set()
    for name in ("codec", "discriminator", *FRONTEND_FILES):
        for node in read_arch_tree(name).values():
            tag = getattr(getattr(node, "tag", None), "value", None)
            if tag and tag.startswith("!new:"):
                lobe_classes.add(tag[len("!new:") :])
    for recipe in RECIPES:
        with open(recipe_path(recipe), encoding="utf-8") as fin:
            tags = set(re.findall(r"!new:([\w.]+)", fin.read()))
        assert not (tags & lobe_classes), f"{recipe} wires {tags & lobe_classes} again"
