"""A folder of observation / reference pairs, the layout ``scripts/reproduce.py --suite pairs`` reads.

    DIR/observed/NAME.EXT     the observations, as given (any format of ``dip_lightning.io``)
    DIR/reference/NAME.EXT    each one's clean image, same NAME (the extension may differ)

``check_pairs(DIR)`` returns the observations in name order, or one line saying what is wrong.
``${dip_pair_reference:${image},${pack_images}}`` (a config resolver) is the reference of the job's
observation (packed: the list of its observations' references), so a sweep over ``image`` or
``pack_images`` gives every fit its own reference.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from dip_lightning.io import IMAGE_EXT

LAYOUT = "DIR/observed/NAME.EXT and DIR/reference/NAME.EXT (one reference per observation, same NAME)"


def _images(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXT:
            found.setdefault(p.stem, []).append(p)
    return found


def check_pairs(root: Path) -> list[Path]:
    """The observations of the pairs folder ``root``, resolved and in name order (see the module docstring)."""
    obs_dir, ref_dir = root / "observed", root / "reference"
    missing = [d.name for d in (obs_dir, ref_dir) if not d.is_dir()]
    if missing:
        raise ValueError(f"{root} has no {' or '.join(m + '/' for m in missing)}; expected {LAYOUT}")
    obs, ref = _images(obs_dir), _images(ref_dir)
    if not obs:
        raise ValueError(f"{obs_dir} holds no image; expected {LAYOUT}")
    twice = sorted(n for n, ps in {**obs, **ref}.items() if len(obs.get(n, [])) > 1 or len(ref.get(n, [])) > 1)
    if twice:
        raise ValueError(f"{', '.join(twice)}: more than one file of one name in observed/ or reference/; expected {LAYOUT}")
    alone = sorted(set(obs) ^ set(ref))
    if alone:
        where = ", ".join(f"{n} ({'observed' if n in obs else 'reference'} only)" for n in alone[:5])
        raise ValueError(f"unpaired images: {where}{' …' if len(alone) > 5 else ''}; expected {LAYOUT}")
    return [obs[n][0].resolve() for n in sorted(obs)]


def reference_of(observed: str) -> str:
    """The reference file of an observation ``DIR/observed/NAME.EXT``: ``DIR/reference/NAME.*``."""
    path = Path(str(observed))
    ref_dir = path.parent.parent / "reference"
    found = [p for p in sorted(ref_dir.glob(path.stem + ".*")) if p.suffix.lower() in IMAGE_EXT] \
        if ref_dir.is_dir() else []
    if path.parent.name != "observed" or len(found) != 1:
        raise ValueError(f"no reference for image={observed}; expected {LAYOUT}")
    return str(found[0])


def references_of(image: str, pack_images=None) -> str | list[str]:
    """``${dip_pair_reference:${image},${pack_images}}``: the reference of ``image``, or with packed
    observations the list of theirs, in order."""
    if pack_images:
        return [reference_of(str(p)) for p in pack_images]
    return reference_of(image)


OmegaConf.register_new_resolver("dip_pair_reference", references_of, replace=True)
