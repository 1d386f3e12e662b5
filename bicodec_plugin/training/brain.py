"""BiCodecBrain: GAN training of BiCodec with SpeechBrain.

One training step (the reference's order): frozen wav2vec2 features of the
batch (no grad), generator forward, discriminator update on detached audio,
then the generator update against the just-updated discriminator. Both use
AdamW, the warm-up-then-linear-decay schedule, gradient clipping and
SpeechBrain's precision handling (autocast, GradScaler for fp16). A step
whose loss is not finite is skipped and counted.

Step counting: one step = one batch (one update of each optimiser); the
reference's Lightning counter advanced twice per batch. ``d_vector_train_start``,
``max_steps``, the log, validation and checkpoint intervals are in batches.
Gradient accumulation is refused, as in the reference (two optimisers
stepped by hand each batch).

Authors
 * BiCodec plugin authors 2026
"""

import math
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from bicodec_plugin.training.checkpoints import recover_newest_intact
from bicodec_plugin.training.losses import weighted_sum

logger = get_logger(__name__)


class WarmupLinearDecay:
    """The reference learning-rate schedule, as a ``LambdaLR`` multiplier.

    Quadratic warm-up from ``min_lr`` to ``max_lr`` over ``warmup_steps``,
    then linear decay to ``min_lr`` over ``decay_steps``, then constant. With
    the optimiser's base lr at 1.0 (as the reference) the value is the
    learning rate itself; with the defaults ``lr = 1e-5 + 9e-11 * s^2`` in
    warm-up.

    Arguments
    ---------
    warmup_steps : int
        Warm-up length.
    decay_steps : int
        Decay length after warm-up.
    max_lr : float
        Peak learning rate.
    min_lr : float
        Start and floor learning rate.

    Example
    -------
    >>> sched = WarmupLinearDecay()
    >>> round(sched(0), 12), round(sched(500), 12), sched(1000), sched(10**7)
    (1e-05, 3.25e-05, 0.0001, 1e-05)
    """

    def __init__(self, warmup_steps=1000, decay_steps=500000, max_lr=1e-4, min_lr=1e-5):
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.max_lr = max_lr
        self.min_lr = min_lr

    def __call__(self, step):
        """Learning rate at scheduler step ``step``."""
        if step < self.warmup_steps:
            return self.min_lr + (self.max_lr - self.min_lr) * (step / self.warmup_steps) ** 2
        progress = (step - self.warmup_steps) / max(self.decay_steps, 1)
        if progress >= 1:
            return self.min_lr
        return self.max_lr - (self.max_lr - self.min_lr) * progress


def checkpoint_meta(stats, stage_loss, step):
    """``CKPT.yaml`` values of a validation checkpoint: ``mel`` (ranked by) and ``step``.

    A non-finite validation loss is stored as ``inf``: a NaN would rank
    unpredictably among ``min_keys`` and could be kept as the best.

    Example
    -------
    >>> checkpoint_meta({"mel": float("nan")}, 1.0, 7)
    {'mel': inf, 'step': 7}
    """
    mel = float(stats.get("mel", stage_loss))
    return {"mel": mel if math.isfinite(mel) else float("inf"), "step": step}


# The loss modules a recipe defines (hparams keys).
LOSS_KEYS = (
    "mel_loss",
    "gen_adv_loss",
    "disc_adv_loss",
    "feat_match_loss",
    "speaker_loss",
    "feat_loss",
)


class BiCodecBrain(sb.Brain):
    """Trains BiCodec (``modules.generator``) against ``modules.discriminator``.

    Expected hparams: ``ssl`` (a frozen semantic front-end, kept out of
    ``modules``), ``mel_loss``, ``gen_adv_loss``, ``disc_adv_loss``,
    ``feat_match_loss``, ``speaker_loss``, ``feat_loss``, ``loss_weights``
    (dict), ``opt_class_generator``, ``opt_class_discriminator``,
    ``lr_schedule``, ``d_vector_train_start``, ``log_interval``,
    ``sample_interval``, ``samples_folder``, ``train_logger`` and optionally
    ``tensorboard_train_logger`` (SpeechBrain's ``TensorboardLogger``). Batches
    come from :func:`bicodec_plugin.training.data.build_datasets`.
    """

    # ---------------------------------------------------------------- set-up
    def on_fit_start(self):
        """Moves the frozen front-end to the device, wraps, builds optimisers, resumes.

        Resumes from the newest *intact* checkpoint: SpeechBrain writes
        ``CKPT.yaml`` before the parameter files, so a kill during a save can
        leave a newest checkpoint that lacks files, and a disk can truncate
        one. Damaged checkpoints are renamed ``DAMAGED-CKPT+...`` with a
        warning (see :mod:`bicodec_plugin.training.checkpoints`), so they
        neither load nor count towards ``num_checkpoints_to_keep``.
        """
        if self.grad_accumulation_factor != 1:
            raise ValueError(
                f"grad_accumulation_factor {self.grad_accumulation_factor}: BiCodec's GAN step "
                "updates two optimisers on every batch and does not accumulate gradients "
                "(nor does the reference); raise batch_size or the number of processes instead"
            )
        self.hparams.ssl.to(self.device).eval()
        # Losses live outside ``modules`` (nothing to train or checkpoint), but
        # the mel loss holds STFT windows and filter banks: they go along.
        for name in LOSS_KEYS:
            getattr(self.hparams, name).to(self.device)
        self.skipped_steps = {"generator": 0, "discriminator": 0}
        self._log_buffer = {}
        self._compile()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:
            recover_newest_intact(self.checkpointer)

    def _wrap_distributed(self):
        """DDP as SpeechBrain does it, except on CPU (gloo) where SyncBatchNorm
        does not exist: plain DDP there (each rank keeps its own BN statistics)."""
        if not (self.distributed_launch and self.device_type == "cpu"):
            return super()._wrap_distributed()
        from torch.nn.parallel import DistributedDataParallel

        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    def init_optimizers(self):
        """Two AdamW optimisers and their schedules, all checkpointed."""
        self.optimizer_g = self.hparams.opt_class_generator(self.modules.generator.parameters())
        self.optimizer_d = self.hparams.opt_class_discriminator(
            self.modules.discriminator.parameters()
        )
        self.scheduler_g = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer_g, self.hparams.lr_schedule
        )
        self.scheduler_d = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer_d, self.hparams.lr_schedule
        )
        self.optimizers_dict = {"optimizer_g": self.optimizer_g, "optimizer_d": self.optimizer_d}
        if self.checkpointer is not None:
            for name in ("optimizer_g", "optimizer_d", "scheduler_g", "scheduler_d"):
                self.checkpointer.add_recoverable(name, getattr(self, name))

    # ------------------------------------------------------------- features
    @torch.no_grad()
    def ssl_features(self, batch):
        """Semantic front-end features of the batch's 16 kHz input, aligned to the target.

        Drops each item's ``ssl_drop_frames`` (the context, or with whole
        utterances the frames before the target) and keeps ``num_frames``
        (zero-padded if the input is short), so frame t covers hop t of
        ``batch.wav``.

        Returns
        -------
        torch.Tensor
            (B, T, C).
        """
        ssl_wav, ssl_lens = batch.ssl_wav
        lengths = torch.round(ssl_lens * ssl_wav.shape[1]).long()
        padded = bool((lengths < ssl_wav.shape[1]).any())
        feats = self.hparams.ssl(ssl_wav, lengths if padded else None)
        drops = [int(d) for d in batch.ssl_drop_frames]
        frames = int(batch.num_frames.max())
        short = max(drops) + frames - feats.shape[1]
        if short > 0:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, short))
        if len(set(drops)) == 1:
            return feats[:, drops[0] : drops[0] + frames]
        # Whole utterances (ssl_context None): each target starts elsewhere.
        return torch.stack([f[d : d + frames] for f, d in zip(feats, drops)])

    def condition(self, stage):
        """x-vector up to and including batch ``d_vector_train_start`` (training only), then d-vector.

        SparkVox conditions on the x-vector while its step counter (two per
        batch) is at most ``d_vector_train_start``; here the counter is the
        batch, so the recipes halve the value and keep "at most".
        """
        if stage == sb.Stage.TRAIN and self.optimizer_step <= self.hparams.d_vector_train_start:
            return "x_vector"
        return "d_vector"

    def compute_forward(self, batch, stage):
        """Generator forward on a batch.

        Returns
        -------
        out : BiCodecOutput
        target : torch.Tensor
            (B, 1, N) real audio, cropped to the reconstruction length.
        feats : torch.Tensor
            (B, T, C) wav2vec2 features.
        condition : str
            Which speaker vector conditioned the decoder.
        """
        batch = batch.to(self.device)
        feats = self.ssl_features(batch)
        ref_wav, _ = batch.ref_wav
        condition = self.condition(stage)
        out = self.modules.generator(feats, ref_wav, condition)
        wav, _ = batch.wav
        target = wav[:, : out.recons.shape[-1]].unsqueeze(1)
        return out, target, feats, condition

    # ---------------------------------------------------------------- losses
    def discriminator_loss(self, fake, real):
        """LSGAN discriminator loss on (detached) fake and real audio, one D pass."""
        outputs = self.modules.discriminator(torch.cat([real, fake.detach()]))
        batch = real.shape[0]
        real_out = [[m[:batch] for m in maps] for maps in outputs]
        fake_out = [[m[batch:] for m in maps] for maps in outputs]
        total, real_part, fake_part = self.hparams.disc_adv_loss(fake_out, real_out)
        log = {"disc": total, "disc_real": real_part, "disc_fake": fake_part}
        return total, {k: float(v.detach()) for k, v in log.items()}

    def generator_loss(self, out, target, feats, condition, stage):
        """Weighted generator loss and its named terms.

        Returns
        -------
        total : torch.Tensor
        log : dict of str to float
        """
        terms = {"mel": self.hparams.mel_loss(out.recons, target), "vq": out.vq_loss}
        if stage == sb.Stage.TRAIN:
            # The raw module: D's parameters are frozen for this pass, so its
            # DDP wrapper must not expect a gradient reduction.
            discriminator = getattr(
                self.modules.discriminator, "module", self.modules.discriminator
            )
            outputs = discriminator(torch.cat([target, out.recons]))
            batch = target.shape[0]
            real_out = [[m[:batch].detach() for m in maps] for maps in outputs]
            fake_out = [[m[batch:] for m in maps] for maps in outputs]
            terms["adv"] = self.hparams.gen_adv_loss(fake_out)
            terms["fm"] = self.hparams.feat_match_loss(fake_out, real_out)
            if condition == "d_vector":
                terms["spk"] = self.hparams.speaker_loss(out.x_vector, out.d_vector)
            if out.pred_feat is not None:
                terms["feat"] = self.hparams.feat_loss(out.pred_feat, feats.transpose(1, 2))
        total, log = weighted_sum(terms, self.hparams.loss_weights)
        log.update(perplexity=float(out.perplexity), active_codes=float(out.active_num))
        return total, log

    # ----------------------------------------------------------------- steps
    def _optimizer_update(self, loss, optimizer, scheduler, params, name):
        """Backward, unscale, clip, step and schedule. Returns the grad norm.

        A non-finite loss skips the update and the schedule step (as the
        reference does for NaN) and is counted in ``skipped_steps``.
        """
        if not torch.isfinite(loss):
            self.skipped_steps[name] += 1
            logger.warning(
                "non-finite %s loss at step %d: update skipped", name, self.optimizer_step
            )
            optimizer.zero_grad(set_to_none=True)
            return float("nan")
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.scaler.step(optimizer)
        scheduler.step()
        return float(norm)

    def fit_batch(self, batch):
        """Discriminator step, then generator step (the reference's order)."""
        generator, discriminator = self.modules.generator, self.modules.discriminator
        with self.training_ctx:
            out, target, feats, condition = self.compute_forward(batch, sb.Stage.TRAIN)
            loss_d, log_d = self.discriminator_loss(out.recons, target)
        norm_d = self._optimizer_update(
            loss_d, self.optimizer_d, self.scheduler_d, discriminator.parameters(), "discriminator"
        )
        discriminator.requires_grad_(False)
        try:
            with self.training_ctx:
                loss_g, log_g = self.generator_loss(out, target, feats, condition, sb.Stage.TRAIN)
            norm_g = self._optimizer_update(
                loss_g, self.optimizer_g, self.scheduler_g, generator.parameters(), "generator"
            )
        finally:
            discriminator.requires_grad_(True)
        self.scaler.update()
        self.optimizer_step += 1
        self._log_train_step(
            {**log_g, **log_d},
            grad_norm_g=norm_g,
            grad_norm_d=norm_d,
            condition=condition,
        )
        return loss_g.detach().cpu()

    def evaluate_batch(self, batch, stage):
        """Mel loss and VQ usage on whole utterances; writes samples when due."""
        with self.evaluation_ctx:
            out, target, feats, condition = self.compute_forward(batch, stage)
            loss, log = self.generator_loss(out, target, feats, condition, stage)
        self.valid_stats.append(log)
        if self._write_samples_now and self._samples_written < self.hparams.num_samples:
            self._write_sample(target[0, 0], out.recons[0, 0], batch.id[0])
            self._samples_written += 1
        return torch.tensor(log["mel"])

    # --------------------------------------------------------------- logging
    def _log_train_step(self, log, grad_norm_g, grad_norm_d, condition):
        for key, value in log.items():
            self._log_buffer.setdefault(key, []).append(value)
        if self.optimizer_step % self.hparams.log_interval:
            return
        stats = {k: sum(v) / len(v) for k, v in self._log_buffer.items()}
        stats.update(
            lr_g=self.optimizer_g.param_groups[0]["lr"],
            lr_d=self.optimizer_d.param_groups[0]["lr"],
            grad_norm_g=grad_norm_g,
            grad_norm_d=grad_norm_d,
            skipped_g=self.skipped_steps["generator"],
            skipped_d=self.skipped_steps["discriminator"],
            x_vector_condition=float(condition == "x_vector"),
        )
        self._log_buffer = {}
        self.hparams.train_logger.log_stats(
            stats_meta={"step": self.optimizer_step}, train_stats=stats
        )
        self._tensorboard("train", stats)

    def _tensorboard(self, stage, stats):
        """Finite scalars to SpeechBrain's TensorboardLogger, when the recipe made one."""
        tb_logger = getattr(self.hparams, "tensorboard_train_logger", None)
        if tb_logger is None:
            return
        stats = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        tb_logger.log_stats({"step": self.optimizer_step}, **{f"{stage}_stats": stats})

    def _write_sample(self, reference, reconstruction, utt_id):
        """Writes reference/resynthesis wavs and a spectrogram PNG (main process)."""
        if not if_main_process():
            return
        from bicodec_plugin.training.plots import save_spectrogram_comparison

        folder = os.path.join(self.hparams.samples_folder, f"step_{self.optimizer_step:07d}")
        os.makedirs(folder, exist_ok=True)
        rate = self.hparams.sample_rate
        ref, rec = reference.float().cpu(), reconstruction.float().cpu()
        sb.dataio.dataio.write_audio(os.path.join(folder, f"{utt_id}_ref.wav"), ref, rate)
        sb.dataio.dataio.write_audio(os.path.join(folder, f"{utt_id}_rec.wav"), rec, rate)
        save_spectrogram_comparison(ref, rec, rate, os.path.join(folder, f"{utt_id}.png"))
        tb_logger = getattr(self.hparams, "tensorboard_train_logger", None)
        if tb_logger is not None:
            tb_logger.log_audio(f"valid/{utt_id}", rec.unsqueeze(0), rate)

    # ---------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Resets validation statistics; decides whether samples are written."""
        if stage != sb.Stage.TRAIN:
            self.valid_stats = []
            self._samples_written = 0
            last = getattr(self, "_last_sample_step", -1)
            interval = self.hparams.sample_interval
            self._write_samples_now = last < 0 or self.optimizer_step // interval > last // interval
            if self._write_samples_now:
                self._last_sample_step = self.optimizer_step

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs validation, saves a checkpoint (on every rank, as DDP needs)."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {}
        for log in self.valid_stats:
            for key, value in log.items():
                stats.setdefault(key, []).append(value)
        stats = {k: sum(v) / len(v) for k, v in stats.items()}
        self._tensorboard("valid", stats)
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "step": self.optimizer_step},
                train_stats={"loss": self.train_loss},
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta=checkpoint_meta(stats, stage_loss, self.optimizer_step),
                min_keys=["mel"],
                num_to_keep=self.hparams.num_checkpoints_to_keep,
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"step": self.optimizer_step}, test_stats=stats
            )
