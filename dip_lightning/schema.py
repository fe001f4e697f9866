"""The schema of every config group: the type and range of each key a user sets, checked at once.

``validate(cfg)`` checks the run's own keys (``configs/restore.yaml``) and, for each group node
(``task``, ``net``, ``optim``, ``input``, ``es``, ``method``), the keys of its ``_target_`` class,
with the pydantic models of ``dip_lightning.group_schemas`` (a config mirrors its constructor). The
first bad value is one line naming the key, the value and what is allowed, e.g.
``task.factor=1: should be greater than or equal to 2 (allowed: the SR factor, an integer >= 2)``.
A key the class does not take is one line too. A class with no schema here (a user's own net) is
left to its constructor.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict, Field, ValidationError

from dip_lightning.group_schemas import SCHEMAS, Keys, NonNegFloat, PosInt, allowed
from dip_lightning.metrics import PROTOCOLS

#: torch.compile's modes
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# ------------------------------------------------------------------ the run's own keys (restore.yaml)
class Run(Keys):
    model_config = ConfigDict(extra="ignore", strict=True)  # the groups are checked on their own

    iters: PosInt = allowed("a positive number of steps, e.g. iters=3000")
    seed: Annotated[int, Field(ge=0)] = allowed("an integer >= 0")
    resize: Optional[Annotated[int, Field(ge=8)]] = allowed("a longer side >= 8 px, or null to keep the size")
    observed: bool = allowed("true or false")
    reference: Optional[str | list[str]] = allowed("an image file, one per packed image (a list), or null")
    holdout: Optional[Annotated[float, Field(gt=0, lt=1)]] = allowed("a fraction in (0, 1), e.g. holdout=0.1, or null")
    fit_size: Literal["pad", "crop"] = allowed("pad or crop")
    reg_noise_std: NonNegFloat = allowed("a jitter std >= 0 (0: off)")
    exp_weight: Optional[Annotated[float, Field(ge=0, lt=1)]] = allowed("an EMA weight in [0, 1), or null for no EMA")
    backtrack_db: Optional[Annotated[float, Field(gt=0)]] = allowed("a PSNR drop in dB > 0, or null to turn it off")
    max_backtracks: Annotated[int, Field(ge=0)] = allowed("an integer >= 0")
    tv_weight: NonNegFloat = allowed("a weight >= 0 (0: off)")
    legacy: bool = allowed("true or false")
    eval_every: PosInt = allowed("a positive number of steps")
    log_every: PosInt = allowed("a positive number of steps")
    snapshot_every: Optional[Annotated[int, Field(ge=0)]] = allowed("a number of steps >= 0 (0: off)")
    ckpt_every: Optional[Annotated[int, Field(ge=0)]] = allowed("a number of steps >= 0 (0: off)")
    warmup_steps: Annotated[int, Field(ge=0)] = allowed("a number of steps >= 0")
    progress_every: PosInt = allowed("a positive number of steps")
    memory_format: Literal["auto", "channels_last", "contiguous"] = allowed("auto, channels_last or contiguous")
    compile: bool = allowed("true or false")
    compile_mode: Literal[COMPILE_MODES] = allowed("one of torch.compile's modes (reduce-overhead: CUDA graphs)")
    threads: Optional[PosInt] = allowed("a positive number of threads, or null")
    cpu_malloc: Literal["reuse", "system"] = allowed("reuse or system")
    pack: PosInt = allowed("a positive number of fits")
    tile: Optional[Annotated[int, Field(ge=16)]] = allowed("a tile side >= 16 px, or null for the whole image at once")
    tile_overlap: Optional[Annotated[int, Field(ge=0)]] = allowed(
        "a number of pixels >= 0, below the tile, or null to choose it from the tile, e.g. tile_overlap=null")
    tile_batch: PosInt = allowed("a positive number of tiles fitted at once")
    eval_protocol: Optional[Literal[tuple(PROTOCOLS)]] = allowed("a paper table's protocol, or null")
    eval_output: Literal["final", "ema", "best"] = allowed("final, ema or best")


GROUPS = ("task", "net", "optim", "input", "es", "method")


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return str(v)


def _line(prefix: str, model: type[Keys], err: ValidationError, given: dict) -> str:
    """The first error as one line: key=value, what is wrong, what is allowed."""
    e = err.errors()[0]
    key = next((p for p in e["loc"] if isinstance(p, str)), "")
    name = f"{prefix}{key}" if key else prefix.rstrip(".")
    if e["type"] == "extra_forbidden":
        known = ", ".join(f for f in model.model_fields)
        return f"{name}: {model.__name__} takes no such key (its keys: {known or 'none'})"
    field = model.model_fields.get(key)
    hint = f" (allowed: {field.description})" if field is not None and field.description else ""
    msg = e["msg"].replace("Input should be", "should be").replace("Input", "the value")
    return f"{name}={_value(given.get(key, e.get('input')))}: {msg}{hint}"


def check(node: dict, model: type[Keys], prefix: str) -> None:
    """One group node (resolved, plain) against its schema; a ValueError of one line."""
    given = {k: v for k, v in node.items() if not str(k).startswith("_")}
    try:
        model.model_validate(given)
    except ValidationError as err:
        raise ValueError(_line(prefix, model, err, given)) from None


def validate(cfg: DictConfig) -> None:
    """Every key of the run and of its groups, against the schemas above (see the module docstring)."""
    keys = {k: cfg.get(k) for k in Run.model_fields if k in cfg}
    check(keys, Run, "")
    for group in GROUPS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or node.get("_target_") is None:
            continue
        target = str(node.get("_target_"))
        model = SCHEMAS.get(target.rsplit(".", 1)[-1]) if target.startswith(("dip_lightning.", "torch.optim.")) else None
        if model is None:  # a user's own class: its constructor checks its arguments
            continue
        check(OmegaConf.to_container(node, resolve=True), model, f"{group}.")
