"""Network architectures. Each config file under ``configs/net/`` mirrors one constructor."""
from dip_lightning.nets.blocks import count_parameters
from dip_lightning.nets.decoder import ConvDecoder, DeepDecoder
from dip_lightning.nets.resnet import ResNet
from dip_lightning.nets.skip import SkipNet
from dip_lightning.nets.texture import TextureNet
from dip_lightning.nets.unet import UNet

__all__ = ["ConvDecoder", "DeepDecoder", "ResNet", "SkipNet", "TextureNet", "UNet", "count_parameters"]
