"""BiCodecBrain in process: the order of the two updates, skipped steps, schedules, conditioning.

The tiny recipe (``hparams/bicodec_tiny_wav2vec2.yaml``) with a random tiny wav2vec2
(``bicodec_plugin.testing.make_tiny_wav2vec2``) trains on two golden clips
(``spk1_snt1``, ``spk2_snt1``), one batch of 2 per step, cheap steps (0.64 s
targets, 2 s speaker references). Batches are fed to ``fit_batch`` by hand so
that each update can be watched with optimiser hooks:

* the discriminator update comes first; the generator update changes neither
  the discriminator's parameters nor its gradients;
* each optimiser and each schedule steps once per batch;
* a non-finite loss changes no parameter of its optimiser, is counted in
  ``skipped_steps`` and does not step its schedule (as the reference);
* x-vector conditioning up to and including batch ``d_vector_train_start``,
  then the d-vector and the speaker loss;
* each generator loss term (mel, adv, fm, vq, spk, feat) alone gives the
  generator a finite, non-zero gradient (a detached or constant term does not).

Authors
 * BiCodec plugin authors 2026
"""

import math
import os

import pytest
import speechbrain as sb
import torch
from conftest import ROOT, clip_path

HPARAMS = os.path.join(ROOT, "hparams", "bicodec_tiny_wav2vec2.yaml")
D_VECTOR_TRAIN_START = 1  # batches 0 and 1: x-vector; from batch 2: d-vector


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    """A random tiny wav2vec2 folder (16 layers, 64 wide)."""
    from bicodec_plugin.testing import make_tiny_wav2vec2

    return make_tiny_wav2vec2(str(tmp_path_factory.mktemp("w2v")), seed=0)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A manifest of two golden clips (one batch of 2)."""
    import json

    path = tmp_path_factory.mktemp("manifest") / "train.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for clip in ("spk1_snt1", "spk2_snt1"):
            f.write(json.dumps({"index": clip, "wav_path": clip_path(clip)}) + "\n")
    return str(path)


def make_brain(folder, tiny_w2v, manifest):
    """The tiny recipe's brain, set up as ``fit`` does, and its batches."""
    from hyperpyyaml import load_hyperpyyaml
    from train import prepare_datasets  # recipes/train.py (on sys.path: conftest)

    from bicodec_plugin.training.brain import BiCodecBrain

    overrides = {
        "ssl_source": tiny_w2v,
        "train_manifest": manifest,
        "output_folder": str(folder),
        "batch_size": 2,
        "segment_duration": 0.64,
        "ref_segment_duration": 2,
        "log_interval": 1,
        "d_vector_train_start": D_VECTOR_TRAIN_START,
    }
    with open(HPARAMS, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    os.makedirs(folder, exist_ok=True)
    train_set, _ = prepare_datasets(hparams)
    brain = BiCodecBrain(
        modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"}, checkpointer=None
    )
    brain.on_fit_start()
    brain.modules.train()
    loader = brain.make_dataloader(train_set, sb.Stage.TRAIN, **hparams["train_dataloader_opts"])
    return brain, hparams, iter(loader)


def snapshot(tensors):
    """Detached copies (None kept)."""
    return [None if t is None else t.detach().clone() for t in tensors]


def same(a, b):
    """Two snapshots are identical."""
    return all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in zip(a, b)
    )


class Watch:
    """Optimiser hooks: D's parameters and gradients right after each D update,
    G's parameters right before each G update, and the number of updates."""

    def __init__(self, brain):
        self.disc = list(brain.modules.discriminator.parameters())
        self.gen = list(brain.modules.generator.parameters())
        self.steps = {"d": 0, "g": 0}
        brain.optimizer_d.register_step_post_hook(self._after_d)
        brain.optimizer_g.register_step_pre_hook(self._before_g)
        brain.optimizer_g.register_step_post_hook(self._after_g)

    def _after_d(self, optimizer, args, kwargs):
        self.steps["d"] += 1
        self.disc_params = snapshot(self.disc)
        self.disc_grads = snapshot(p.grad for p in self.disc)

    def _before_g(self, optimizer, args, kwargs):
        self.gen_before = snapshot(self.gen)

    def _after_g(self, optimizer, args, kwargs):
        self.steps["g"] += 1


def conditions_of(brain):
    """Records the ``condition`` argument of every generator forward."""
    seen = []
    brain.modules.generator.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    return seen


def read_log(path):
    """``[{name: value}]`` of the per-step train lines (log_interval 1)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("step: "):
                items = line.strip().split(" - ", 1)[1].split(", ")
                rows.append(
                    {k[len("train ") :]: float(v) for k, v in (i.split(": ") for i in items)}
                )
    return rows


@pytest.mark.slow
def test_update_order_schedules_and_conditioning(tmp_path, tiny_w2v, manifest):
    """Three batches: D first, then G leaving D untouched; one update and one schedule
    step per optimiser per batch; x-vector up to and including batch 1, then d-vector."""
    brain, hparams, batches = make_brain(tmp_path / "run", tiny_w2v, manifest)
    watch = Watch(brain)
    conditions = conditions_of(brain)
    schedule = hparams["lr_schedule"]
    disc, gen = watch.disc, watch.gen
    for n in range(1, 4):
        disc_before, gen_start = snapshot(disc), snapshot(gen)
        brain.fit_batch(next(batches))
        assert watch.steps == {"d": n, "g": n}
        # The D update changed D; the G update changed G and neither D's
        # parameters nor the gradients D's update left.
        assert not same(disc_before, watch.disc_params)
        assert same(snapshot(disc), watch.disc_params), "the generator step changed D"
        assert same(snapshot(p.grad for p in disc), watch.disc_grads), "G's loss reached D"
        assert same(gen_start, watch.gen_before), "G changed before its own update"
        assert not same(watch.gen_before, snapshot(gen))
        # AdamW counts per parameter: every D parameter has a gradient in every
        # batch; some of G's only in one phase (the x-vector head, the d-vector path).
        d_steps = {int(s["step"]) for s in brain.optimizer_d.state.values()}
        g_steps = {int(s["step"]) for s in brain.optimizer_g.state.values()}
        assert d_steps == {n} and max(g_steps) == n, (d_steps, g_steps)
        for optimizer in (brain.optimizer_g, brain.optimizer_d):
            assert optimizer.param_groups[0]["lr"] == pytest.approx(schedule(n), rel=1e-12)
        assert brain.scheduler_g.last_epoch == brain.scheduler_d.last_epoch == n
        assert brain.optimizer_step == n
    assert brain.skipped_steps == {"generator": 0, "discriminator": 0}
    assert conditions == ["x_vector", "x_vector", "d_vector"]
    rows = read_log(hparams["train_log"])
    assert [row["x_vector_condition"] for row in rows] == [1.0, 1.0, 0.0]
    assert ["spk" in row for row in rows] == [False, False, True]
    for row in rows:  # every other term in every step
        assert {"mel", "adv", "fm", "vq", "feat", "disc"} <= set(row), row


@pytest.mark.slow
def test_non_finite_loss_changes_nothing_and_is_counted(tmp_path, tiny_w2v, manifest):
    """NaN in the target: both losses are NaN, no parameter moves, both are counted and
    neither schedule steps. An infinite generator term alone: D still updates, G does
    not. The next finite batch updates both, each schedule then one step further."""
    brain, _, batches = make_brain(tmp_path / "run", tiny_w2v, manifest)
    watch = Watch(brain)
    disc, gen = watch.disc, watch.gen

    batch = next(batches)
    batch.wav.data[0, 100] = float("nan")
    disc_before, gen_before = snapshot(disc), snapshot(gen)
    brain.fit_batch(batch)
    assert brain.skipped_steps == {"generator": 1, "discriminator": 1}
    assert watch.steps == {"d": 0, "g": 0}
    assert same(disc_before, snapshot(disc)) and same(gen_before, snapshot(gen))
    assert all(p.grad is None for p in disc + gen)
    assert brain.scheduler_g.last_epoch == brain.scheduler_d.last_epoch == 0
    assert not brain.optimizer_g.state and not brain.optimizer_d.state

    feat_loss = brain.hparams.feat_loss
    brain.hparams.feat_loss = lambda pred, target: torch.tensor(float("inf"))
    try:
        disc_before, gen_before = snapshot(disc), snapshot(gen)
        brain.fit_batch(next(batches))
    finally:
        brain.hparams.feat_loss = feat_loss
    assert brain.skipped_steps == {"generator": 2, "discriminator": 1}
    assert watch.steps == {"d": 1, "g": 0}
    assert not same(disc_before, snapshot(disc)) and same(gen_before, snapshot(gen))
    assert (brain.scheduler_d.last_epoch, brain.scheduler_g.last_epoch) == (1, 0)

    brain.fit_batch(next(batches))
    assert brain.skipped_steps == {"generator": 2, "discriminator": 1}
    assert watch.steps == {"d": 2, "g": 1}
    assert (brain.scheduler_d.last_epoch, brain.scheduler_g.last_epoch) == (2, 1)
    assert all(torch.isfinite(p).all() for p in disc + gen)


GENERATOR_TERMS = ("mel", "adv", "fm", "vq", "spk", "feat")


@pytest.mark.slow
def test_each_generator_term_reaches_the_generator(tmp_path, tiny_w2v, manifest):
    """``generator_loss`` with one term weighted 1 and the others 0, term by term: each
    gives the generator a finite, non-zero gradient (d-vector phase, all six terms)."""
    brain, _, batches = make_brain(tmp_path / "run", tiny_w2v, manifest)
    brain.optimizer_step = D_VECTOR_TRAIN_START + 1  # d-vector phase: the speaker loss too
    gen = brain.modules.generator
    weights = dict(brain.hparams.loss_weights)
    brain.modules.discriminator.requires_grad_(False)  # as fit_batch does for G's pass
    try:
        out, target, feats, condition = brain.compute_forward(next(batches), sb.Stage.TRAIN)
        assert condition == "d_vector"
        for term in GENERATOR_TERMS:
            brain.hparams.loss_weights = {k: float(k == term) for k in weights}
            total, log = brain.generator_loss(out, target, feats, condition, sb.Stage.TRAIN)
            assert term in log and math.isfinite(log[term]), (term, log)
            assert total.requires_grad, f"the {term} term does not depend on the generator"
            gen.zero_grad(set_to_none=True)
            total.backward(retain_graph=True)
            grads = [p.grad for p in gen.parameters() if p.grad is not None]
            norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
            assert all(torch.isfinite(g).all() for g in grads), term
            assert norm > 0, f"the {term} term gives the generator no gradient"
    finally:
        brain.hparams.loss_weights = weights
        brain.modules.discriminator.requires_grad_(True)


def test_losses_follow_the_brain_to_its_device(tmp_path, tiny_w2v, manifest, monkeypatch):
    """Every module a recipe defines outside ``modules`` reaches the brain's device (the
    mel loss holds STFT windows: left on the CPU, a GPU run fails at its first step)."""
    from bicodec_plugin.training.brain import LOSS_KEYS

    moved = []
    original = torch.nn.Module.to

    def spy(module, *args, **kwargs):
        moved.append((module, str(args[0]) if args else str(kwargs.get("device"))))
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    brain, hparams, _ = make_brain(tmp_path / "run", tiny_w2v, manifest)
    for name in LOSS_KEYS:
        assert any(m is hparams[name] and d == str(brain.device) for m, d in moved), name
    trained = set(map(id, hparams["modules"].values()))
    outside = {
        key
        for key, value in hparams.items()
        if isinstance(value, torch.nn.Module) and id(value) not in trained and key != "ssl"
    }
    assert outside <= set(LOSS_KEYS) | {"codec", "discriminator"}, outside
