"""A tile's observation box is the task's own ``observation_box``, and a tiled run's status comes
from its groups' (which are never pruned)."""
import inspect

import pytest

from dip_lightning import regions, tiled_outputs
from dip_lightning.instantiate import instantiate
from dip_lightning.regions import observe, plan_tiles as plan, tile_fit
from conftest import QUIET, TINY_NET

SMALL = [*QUIET, *TINY_NET, "input.depth=4", "iters=2"]


@pytest.mark.parametrize("task", [["task=denoise"], ["task=sr", "task.factor=2"], ["task=inpaint", "task.mask=box"]],
                         ids=["denoise", "sr", "inpaint"])
def test_tiles_take_their_observation_box_from_the_task(compose_cfg, image_file, task):
    cfg = compose_cfg(f"image={image_file(40, 36, 3)}", "tile=24", "tile_overlap=12", *task, *SMALL)
    whole = observe(cfg)
    asked = []
    own = whole.task.observation_box

    def spy(box):
        asked.append(tuple(box))
        return own(box)

    whole.task.observation_box = spy
    tiles = plan(cfg, whole)
    n = len(tiles.boxes)
    assert n > 1
    fit = tile_fit(cfg, whole, n - 1, n, tiles.boxes[-1], instantiate(cfg.input), None)
    assert asked[-1] == tiles.boxes[-1]
    s = int(whole.task.scale)
    assert tuple(fit.prob.y.shape[-2:]) == tuple(v // s for v in tiles.boxes[-1][2:])
    if hasattr(whole.task, "known_fraction"):  # plan asks for every tile's box too
        assert asked[:n] == tiles.boxes
    assert not hasattr(regions, "_obs_box")


def test_a_tiled_runs_status_is_the_worst_of_its_groups():
    def group(status, reason=None):
        return {"status": status, "reason": reason}

    assert tiled_outputs._status([group("completed"), group("completed")]) == ("completed", None)
    assert tiled_outputs._status([group("early_stopped"), group("completed")]) == ("early_stopped", None)
    assert tiled_outputs._status([group("early_stopped"), group("diverged", "NaN")]) == ("diverged",
                                                                                          "tile group 1: NaN")
    assert "pruned" not in inspect.getsource(tiled_outputs._status).split('"""')[-1]  # no such group status
