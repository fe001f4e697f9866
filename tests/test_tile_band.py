"""A tile's data term leaves out the band along its inner borders where the observation was made
from pixels beyond the tile (deblurring: the kernel's half-width; SR: the downsampler's reach)."""
from __future__ import annotations

import pytest
import torch

from conftest import QUIET, TINY_NET
from dip_lightning import regions, stages
from dip_lightning.results import collect
from dip_lightning.instantiate import instantiate


def test_the_band_is_cut_only_along_borders_shared_with_a_neighbour(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(40, 45, 3)}", "task=deblur", "tile=24", "tile_overlap=12", *QUIET)
    whole = regions.observe(cfg)
    tiles = regions.plan_tiles(cfg, whole)
    band = whole.task.tile_margin  # 4: the 9-tap kernel's half-width
    for box in tiles.boxes:
        y = whole.y[..., box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
        w = regions.inner_band_weight(y, box, whole, band)
        top, left, h, wd = box
        assert w.shape[-2:] == y.shape[-2:]
        assert bool((w[..., :band, :] == 0).all()) == (top > 0)
        assert bool((w[..., -band:, :] == 0).all()) == (top + h < 40)
        assert bool((w[..., :, :band] == 0).all()) == (left > 0)
        assert bool((w[..., :, -band:] == 0).all()) == (left + wd < 45)
        assert w[..., band:-band, band:-band].eq(1).all()
    one = (0, 0, 40, 45)
    assert regions.inner_band_weight(whole.y, one, whole, band) is None  # the whole image: nothing cut
    denoise = regions.observe(compose_cfg(f"image={image_file(40, 45, 3)}", "tile=24", *QUIET))
    assert regions.inner_band_weight(denoise.y[..., :24, :24], (0, 0, 24, 24), denoise, 0) is None


@pytest.mark.parametrize("weighted", [True, False])
def test_a_tile_fit_does_not_see_the_observation_in_its_band(compose_cfg, image_file, tmp_path, monkeypatch,
                                                              weighted):
    """The same tile fitted to two observations that differ only inside its inner band ends the
    same (and, without the band's weights, differently)."""
    if not weighted:
        monkeypatch.setattr(regions, "inner_band_weight", lambda *a: None)
    cfg = compose_cfg(f"image={image_file(40, 45, 3)}", "task=deblur", "tile=24", "tile_overlap=12", "iters=4",
                      "backtrack_db=null", "input.depth=4", "es=none", *QUIET, *TINY_NET)
    whole = regions.observe(cfg)
    tiles = regions.plan_tiles(cfg, whole)
    box = tiles.boxes[0]  # the top-left tile: neighbours below and to the right
    finals = []
    for i, changed in enumerate((False, True)):
        if changed:
            whole.y[..., box[2] - 2, :box[3]] = 1.0 - whole.y[..., box[2] - 2, :box[3]]  # inside its bottom band
        fit = regions.tile_fit(cfg, whole, 0, len(tiles.boxes), box, instantiate(cfg.input), None)
        built = stages.assemble(cfg, [fit], None, tmp_path / f"g{i}")
        status, reason = stages.fit(cfg, built)
        finals.append(collect(built.module, [fit], built.callbacks, status, reason)["fits"][0]["final"])
    assert torch.equal(finals[0], finals[1]) == weighted
