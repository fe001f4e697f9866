"""The keys of every config group's classes (task, net, optim, input, es, method) as pydantic
models whose fields mirror the constructors, and the field types they share; ``SCHEMAS`` maps a
``_target_`` class name to its model. ``dip_lightning.schema`` checks a config against them.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

PosInt = Annotated[int, Field(ge=1)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Act = Literal["LeakyReLU", "ReLU", "ELU", "Tanh", "none"]
Norm = Optional[Literal["batch", "instance", "none"]]
Pad = Literal["reflection", "zero"]
Up = Literal["bilinear", "nearest"]
Down = Literal["stride", "avg", "max", "lanczos2"]


class Keys(BaseModel):
    """A group's keys: types checked strictly (no "3" for 3, no 2.5 for an int), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


def allowed(text: str, **kw: Any) -> Any:
    """A field whose ``text`` says what is allowed (it ends the error line); a key left out is the
    constructor's default."""
    return Field(default=None, description=text, **kw)


# ------------------------------------------------------------------ task
class Denoise(Keys):
    sigma: NonNegFloat = allowed("the noise std in 0-255 units, >= 0, e.g. task.sigma=25")
    clip: bool = allowed("true or false")
    noise: Literal["gaussian", "poisson", "impulse", "speckle"] = allowed("gaussian, poisson, impulse or speckle")
    peak: Annotated[float, Field(gt=0)] = allowed("a photon count > 0")
    amount: Fraction = allowed("a fraction of values replaced, in [0, 1], e.g. task.amount=0.05")
    speckle_sigma: NonNegFloat = allowed("a std >= 0, e.g. task.speckle_sigma=0.4")
    severity: Optional[Annotated[int, Field(ge=1, le=5)]] = allowed("1-5 (ImageNet-C's levels) or null")
    loss: Optional[Literal["l2", "l1", "poisson"]] = allowed("l2, l1, poisson or null (the noise model's own)")


class SuperResolution(Keys):
    factor: Annotated[int, Field(ge=2)] = allowed("the SR factor, an integer >= 2, e.g. task.factor=4")
    observe: Literal["pil", "operator"] = allowed("pil or operator")
    modcrop: bool = allowed("true or false")


class Inpaint(Keys):
    mask: str = allowed("text, random, box, alpha or a mask file")
    text: str = allowed("a string")
    font_size: Optional[PosInt] = allowed("a text height in pixels, or null")
    missing: Annotated[float, Field(gt=0, lt=1)] = allowed("a fraction of missing pixels in (0, 1)")
    box: list[Fraction] = allowed("[top, left, height, width] as fractions in [0, 1]", min_length=4, max_length=4)


class Restore(Inpaint):
    mask: str = allowed("random, text, box or a mask file")


class Deblur(Keys):
    kernel: Literal["gaussian", "uniform", "file"] = allowed("gaussian, uniform or file")
    size: PosInt = allowed("an odd kernel width in pixels")
    sigma: Annotated[float, Field(gt=0)] = allowed("a std in pixels > 0")
    path: Optional[str] = allowed("a kernel image file, or null")
    noise_sigma: NonNegFloat = allowed("a noise std in 0-255 units, >= 0")


class JPEGArtifacts(Keys):
    quality: Annotated[int, Field(ge=1, le=95)] = allowed("a JPEG quality in 1..95")


class FlashNoFlash(Keys):
    flash: Optional[str] = allowed("the flash photo's path")
    resize: Optional[Annotated[int, Field(ge=8)]] = allowed("the run's resize")


class PhysicsTask(Keys):
    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
    physics: Any = allowed("a deepinv physics config node")
    size: Optional[Union[PosInt, Annotated[list[PosInt], Field(min_length=2, max_length=2)]]] = \
        allowed("an int or [H, W], or null")
    channels: Optional[Literal[1, 3]] = allowed("1, 3 or null")
    complex: Optional[bool] = allowed("true, false or null")


# ------------------------------------------------------------------ net
IntOrList = Union[PosInt, list[PosInt]]


class SkipNet(Keys):
    channels_down: list[PosInt] = allowed("a list of positive widths, one per level", min_length=1)
    channels_up: list[PosInt] = allowed("a list of positive widths, one per level", min_length=1)
    channels_skip: list[Annotated[int, Field(ge=0)]] = allowed("a list of widths >= 0, one per level", min_length=1)
    filter_size_down: IntOrList = allowed("a positive int or one per level")
    filter_size_up: IntOrList = allowed("a positive int or one per level")
    filter_size_skip: PosInt = allowed("a positive int")
    need_sigmoid: bool = allowed("true or false")
    need_bias: bool = allowed("true or false")
    pad: Pad = allowed("reflection or zero")
    upsample_mode: Union[Up, list[Up]] = allowed("bilinear or nearest, or one per level")
    downsample_mode: Union[Down, list[Down]] = allowed("stride, avg, max or lanczos2, or one per level")
    act: Act = allowed("LeakyReLU, ReLU, ELU, Tanh or none")
    norm_layer: Norm = allowed("batch, instance or none")
    need1x1_up: bool = allowed("true or false")
    legacy: bool = allowed("true or false")


class UNet(Keys):
    feature_scale: PosInt = allowed("a positive divisor of the widths")
    more_layers: Annotated[int, Field(ge=0)] = allowed("an integer >= 0")
    concat_x: bool = allowed("true or false")
    upsample_mode: Literal["deconv", "bilinear", "nearest"] = allowed("deconv, bilinear or nearest")
    pad: Pad = allowed("zero or reflection")
    norm_layer: Norm = allowed("instance, batch or none")
    need_sigmoid: bool = allowed("true or false")
    need_bias: bool = allowed("true or false")
    legacy: bool = allowed("true or false")


class ResNet(Keys):
    num_blocks: PosInt = allowed("a positive number of blocks")
    num_channels: PosInt = allowed("a positive width")
    need_residual: bool = allowed("true or false")
    act: Act = allowed("LeakyReLU, ReLU, ELU, Tanh or none")
    need_sigmoid: bool = allowed("true or false")
    norm_layer: Norm = allowed("batch, instance or none")
    pad: Pad = allowed("reflection or zero")
    legacy: bool = allowed("true or false")


class TextureNet(Keys):
    ratios: list[PosInt] = allowed("pooling factors, coarse to fine, halving to 1", min_length=1)
    fill_noise: bool = allowed("true or false")
    conv_num: PosInt = allowed("a positive width")
    pad: Pad = allowed("zero or reflection")
    act: Act = allowed("LeakyReLU, ReLU, ELU, Tanh or none")
    norm_layer: Norm = allowed("batch, instance or none")
    upsample_mode: Up = allowed("nearest or bilinear")
    need_sigmoid: bool = allowed("true or false")
    legacy: bool = allowed("true or false")


class DeepDecoder(Keys):
    channels: list[PosInt] = allowed("a list of positive widths", min_length=1)
    upsample_mode: Up = allowed("bilinear or nearest")
    need_sigmoid: bool = allowed("true or false")
    bias: bool = allowed("true or false")
    legacy: bool = allowed("true or false")


class ConvDecoder(DeepDecoder):
    kernel_size: PosInt = allowed("an odd kernel width")
    pad: Pad = allowed("reflection or zero")


# ------------------------------------------------------------------ optim, input, es, method
class Adam(Keys):
    model_config = ConfigDict(extra="allow", strict=True)  # torch's other keywords pass to torch
    lr: Annotated[float, Field(gt=0)] = allowed("a learning rate > 0, e.g. optim.lr=0.01")
    weight_decay: NonNegFloat = allowed("a weight >= 0")
    eps: Annotated[float, Field(gt=0)] = allowed("an epsilon > 0")


class LBFGS(Adam):
    max_iter: PosInt = allowed("a positive number of iterations per step")
    history_size: PosInt = allowed("a positive history length")


class NoiseInput(Keys):
    depth: PosInt = allowed("a positive number of channels")
    kind: Literal["uniform", "normal"] = allowed("uniform or normal")
    scale: Annotated[float, Field(gt=0)] = allowed("a scale > 0")


class MeshgridInput(Keys):
    pass


class EarlyStopping(Keys):
    method: Literal["wmv", "emv"] = allowed("wmv or emv")
    window: Annotated[int, Field(ge=2)] = allowed("a window of >= 2 steps")
    patience: PosInt = allowed("a positive number of steps")
    alpha: Annotated[float, Field(gt=0, le=1)] = allowed("an EMA weight in (0, 1]")
    mode: Literal["mark", "stop"] = allowed("mark or stop")
    check_every: PosInt = allowed("a positive number of steps")


class HoldoutStopping(Keys):
    patience: PosInt = allowed("a positive number of steps")
    mode: Literal["mark", "stop"] = allowed("mark or stop")
    check_every: PosInt = allowed("a positive number of steps")


class Method(Keys):
    pass


class SGLD(Keys):
    param_noise: NonNegFloat = allowed("σ_p >= 0")
    burn_in: NonNegFloat = allowed("a fraction of iters below 1, or a number of steps")
    sample_every: Annotated[float, Field(gt=0)] = allowed("a fraction of iters below 1, or a number of steps >= 1")


class DRP(Keys):
    lr: Annotated[float, Field(gt=0)] = allowed("a learning rate > 0")
    tv_weight: NonNegFloat = allowed("a weight >= 0")


class SelfGuided(Keys):
    alpha: NonNegFloat = allowed("a weight >= 0")
    noise: NonNegFloat = allowed("a fraction of max z >= 0")
    samples: PosInt = allowed("a positive number of samples")
    z_lr: Annotated[float, Field(gt=0)] = allowed("a learning rate > 0")


#: the schema of each ``_target_`` class, by its name
SCHEMAS: dict[str, type[Keys]] = {m.__name__: m for m in (
    Denoise, SuperResolution, Inpaint, Restore, Deblur, JPEGArtifacts, FlashNoFlash, PhysicsTask,
    SkipNet, UNet, ResNet, TextureNet, DeepDecoder, ConvDecoder, Adam, LBFGS, NoiseInput, MeshgridInput,
    EarlyStopping, HoldoutStopping, Method, SGLD, DRP, SelfGuided)}
