"""The loss plot of a run directory (`loss.png`)."""

import io
import pathlib

from .._files import atomic_write_bytes


def loss_figure(rows: list, best_step: int, loss_name: str):
    """The figure of loss.png: the training loss and the validation error on panels of their
    own, the returned (best) step marked; `None` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    validated = bool(rows) and "val_global" in rows[0]
    fig, axes = plt.subplots(
        2 if validated else 1, 1, figsize=(6, 6 if validated else 3.5), sharex=True, squeeze=False
    )
    steps = [r["step"] for r in rows]
    top = axes[0, 0]
    top.semilogy(steps, [r["train_loss"] for r in rows], color="C0", label="training loss")
    top.set_ylabel(f"training loss ({loss_name},\nnormalised units)")
    panels = [top]
    if validated:
        bottom = axes[1, 0]
        bottom.semilogy(
            steps, [r["val_global"] for r in rows], color="C1", label="validation error"
        )
        bottom.set_ylabel("validation relative error\n(global, normalised units)")
        panels.append(bottom)
    for ax in panels:
        ax.axvline(
            best_step, color="k", linestyle=":", label=f"returned parameters (step {best_step})"
        )
        ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
    panels[-1].set_xlabel("optimisation step")
    # Fixed margins: tight_layout measured every tick label and took half of a sweep
    # cell's plotting time.
    fig.subplots_adjust(
        left=0.22, right=0.97, top=0.97, bottom=0.09 if validated else 0.15, hspace=0.08
    )
    return fig


def write_loss_plot(rows: list, best_step: int, loss_name: str, path: pathlib.Path) -> bool:
    """Writes loss.png atomically; `False` without matplotlib."""
    fig = loss_figure(rows, best_step, loss_name)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True
