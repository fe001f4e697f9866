"""Network architectures. Each config file under ``configs/net/`` mirrors one constructor."""
from dip_lightning.nets.blocks import count_parameters
from dip_lightning.nets.skip import SkipNet

__all__ = ["SkipNet", "count_parameters"]
