"""Spectrogram pictures for validation samples.

Authors
 * BiCodec plugin authors 2026
"""

import torch


def save_spectrogram_comparison(reference, reconstruction, sample_rate, path):
    """Writes a PNG with the log-magnitude spectrograms of two signals, stacked.

    Arguments
    ---------
    reference : torch.Tensor
        (N,) real audio.
    reconstruction : torch.Tensor
        (N',) resynthesised audio.
    sample_rate : int
        Rate of both.
    path : str
        Output PNG path.

    Example
    -------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "s.png")
    >>> save_spectrogram_comparison(torch.randn(8000), torch.randn(8000), 16000, out)
    >>> os.path.getsize(out) > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, signal, title in zip(axes, (reference, reconstruction), ("reference", "BiCodec")):
        spec = torch.stft(
            signal.float(), 1024, 256, window=torch.hann_window(1024), return_complex=True
        ).abs()
        db = 20 * torch.log10(spec.clamp(min=1e-5))
        seconds = signal.shape[-1] / sample_rate
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            vmin=float(db.max()) - 80,
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        ax.set_title(title)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
