"""The keyword form of `fit` and `fit_cohort`: an Optax optimiser and loose keywords, turned
into the trainer, stopping, evaluation, checkpointing and placement objects in one place."""

import optax

from ._choices import SAMPLERS
from ._minibatch import MinibatchTrainer
from ._placement import Sharded, SharedSolve, Vmapped
from ._settings import Checkpointing, Evaluation, Stopping, check_count

_TRAINER = (
    "epochs",
    "steps",
    "batch_size",
    "loss",
    "regularisers",
    "hyperparameters",
    "clip_norm",
    "ridge",
)
_STOPPING = ("patience", "divergence_factor", "max_failed_batches")
_EVALUATION = {
    "eval_every": "every",
    "count_evaluations": "count_evaluations",
    "count_every": "count_every",
}
_CHECKPOINTING = ("checkpoint_dir", "checkpoint_dirs", "resume")
_PLACEMENT = ("devices", "shard_map", "shared_solve")
_COHORT_ONLY = ("hyperparameters", "checkpoint_dirs", *_PLACEMENT)


def sampler(name: str):
    """The sampler of a `sampling` name.

    **Raises:** `ValueError` naming the valid names."""
    if name not in SAMPLERS:
        raise ValueError(f"`sampling` must be one of {tuple(SAMPLERS)}, got {name!r}.")
    return SAMPLERS[name]()


def _placement(keywords: dict):
    devices = keywords.get("devices")
    one_loop = keywords.get("shard_map")
    if keywords.get("shared_solve", False):
        return SharedSolve(devices, one_loop)
    if devices is not None:
        return Sharded(devices, one_loop)
    return Vmapped()


def from_keywords(optimiser, keywords: dict, settings: dict, *, cohort: bool):
    """`(trainer, settings)` from the keyword form (see `fit`).

    **Raises:** `TypeError` for an unknown keyword, a keyword of a cohort given for one
    model, or a `settings` object given beside the keywords it would hold."""
    if not isinstance(optimiser, optax.GradientTransformation):
        raise TypeError(
            "the third argument of `fit` must be a trainer (MinibatchTrainer, GNvproTrainer) "
            f"or an Optax optimiser, got {type(optimiser).__name__}."
        )
    known = {*_TRAINER, "sampling", *_STOPPING, *_EVALUATION, *_CHECKPOINTING, *_PLACEMENT}
    unknown = sorted(set(keywords) - known)
    if unknown:
        raise TypeError(f"fit() got unexpected keyword arguments {unknown}.")
    misplaced = sorted(set(keywords) & set(_COHORT_ONLY)) if not cohort else []
    misplaced += ["checkpoint_dir"] if cohort and "checkpoint_dir" in keywords else []
    if misplaced:
        raise TypeError(
            f"keyword arguments {misplaced} do not apply to "
            + ("a cohort (use checkpoint_dirs)." if cohort else "one model; use fit_cohort.")
        )
    check_count("eval_every", keywords.get("eval_every"))
    trainer = MinibatchTrainer(
        optimiser,
        sampler=sampler(keywords.get("sampling", "epochs")),
        # None is each keyword's documented default (the loss: MSELoss()).
        **{name: keywords[name] for name in _TRAINER if keywords.get(name) is not None},
    )
    directory = keywords.get("checkpoint_dirs" if cohort else "checkpoint_dir")
    built = dict(
        stopping=Stopping(**{name: keywords[name] for name in _STOPPING if name in keywords}),
        evaluation=Evaluation(
            **{field: keywords[name] for name, field in _EVALUATION.items() if name in keywords}
        ),
        checkpointing=Checkpointing(directory, resume=keywords.get("resume", False)),
        placement=_placement(keywords) if cohort else None,
    )
    given = [name for name, value in settings.items() if value is not None]
    if given:
        raise TypeError(
            f"pass {', '.join(given)} as objects with a trainer, or as keywords with an "
            "optimiser, not both."
        )
    return trainer, built
