"""The statistics of a sweep: per group mean ± standard deviation over its fits (n), per image and
group over seeds, an average row, and the paper's column with Δ when the sweep is a suite.

Only fits whose status is ``completed`` or ``early_stopped`` and that have the metric count; the
others are listed apart (``not_counted``), never averaged in.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from dip_lightning.report.jobs import FitRow, natural_key, number, seed_key


def md_text(value) -> str:
    """Text from a job (a failure reason, an override, a path, an image name) as markdown that reads
    as that literal text, on one line: the characters markdown or HTML would take as markup are
    backslash-escaped (``\\`` `` ` `` ``*`` ``|`` ``<``; ``_`` unless inside a word, where it never
    emphasises; ``[`` when a ``](``, ``][`` or ``]:`` could make a link; ``#`` and ``>`` leading), and
    an ``&`` that would read as an entity becomes ``&amp;``. summary.md stays readable: ``exp_weight``,
    ``pack_images=[a,b]`` and ``-0.5`` are left as they are."""
    text = " ".join(str(value).splitlines())
    text = re.sub(r"[\\`*|<]", lambda m: "\\" + m.group(), text)
    text = re.sub(r"_+", lambda m: m.group() if re.match(r"[^\W_]", text[m.start() - 1:m.start()])
                  and re.match(r"[^\W_]", text[m.end():m.end() + 1]) else m.group().replace("_", "\\_"), text)
    if re.search(r"\][(\[:]", text):
        text = text.replace("[", "\\[")
    text = re.sub(r"&(?=#?\w+;)", "&amp;", text)
    return re.sub(r"^\s*[#>]", lambda m: m.group()[:-1] + "\\" + m.group()[-1], text)


def md_code(value) -> str:
    """Text from a job as a markdown code span, whatever backticks it holds (a longer fence, padded)."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@dataclass
class Stat:
    mean: float | None
    std: float | None  # sample standard deviation (n − 1); None for n < 2
    n: int

    def cell(self) -> str:
        if self.mean is None:
            return "—"
        spread = "" if self.std is None else f" ± {self.std:.2f}"
        return f"{self.mean:.2f}{spread}"


def stat(values: list[float]) -> Stat:
    if not values:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def counted(rows: list[FitRow], metric: str) -> list[FitRow]:
    return [r for r in rows if r.ok and number(r.metrics.get(metric)) is not None]


def not_counted(rows: list[FitRow], metric: str) -> list[FitRow]:
    ok = set(map(id, counted(rows, metric)))
    return [r for r in rows if id(r) not in ok]


def groups_of(rows: list[FitRow]) -> dict[str, list[FitRow]]:
    out: dict[str, list[FitRow]] = {}
    for r in rows:
        out.setdefault(r.label(), []).append(r)
    return out


#: the other metrics a group row shows (means)
EXTRA = ("psnr_observed", "psnr_best", "psnr_final", "psnr_ema_final", "best_step", "es_psnr", "es_gap", "es_step",
         "it_per_s", "wall_s", "final_minus_best", "steps_to_95", "s_to_95")


def group_table(rows: list[FitRow], metric: str, pooled: bool = False) -> list[dict]:
    """One row per group: the metric's mean ± std over all its counted fits (images × seeds), n,
    the seeds and images it holds, and the means of ``EXTRA``; ``pooled``: one row for all ``rows``."""
    out = []
    parts = {"all": counted(rows, metric)} if pooled else groups_of(counted(rows, metric))
    for label, members in parts.items():
        if not members:
            continue
        s = stat([number(r.metrics[metric]) for r in members])
        extra = {}
        for key in EXTRA:
            vals = [number(r.metrics.get(key)) for r in members]
            vals = [v for v in vals if v is not None]
            extra[key] = statistics.fmean(vals) if vals else None
        out.append({"group": label, "n": s.n, "mean": s.mean, "std": s.std,
                    "seeds": len({r.seed for r in members}), "images": len({r.image for r in members}), **extra})
    return out


def image_table(rows: list[FitRow], metric: str, paper: dict | None = None,
                paper_average: float | None = None, images: list[str] | None = None) -> list[dict]:
    """Per image and group: mean ± std over seeds (n), the paper's value and Δ = mean − paper; then
    per group an ``average`` row: the mean of the per-image means, Δ against the paper's average,
    and the seeds' spread (std over seeds of each seed's average over the images, n = the seeds
    that have every image). The paper's average is the reference only when the group has every
    image of ``images`` (the suite's); else the mean of the paper's values of the images it has,
    and none where the paper gives no per-image value."""
    paper = paper or {}
    out = []
    for label, members in groups_of(counted(rows, metric)).items():
        by_image: dict[str, list[FitRow]] = {}
        for r in members:
            by_image.setdefault(r.image, []).append(r)
        means = []
        for image in sorted(by_image, key=natural_key):
            s = stat([number(r.metrics[metric]) for r in by_image[image]])
            p = number(paper.get(image))
            out.append({"group": label, "image": image, "n": s.n, "mean": s.mean, "std": s.std, "paper": p,
                        "delta": None if p is None else s.mean - p})
            means.append(s.mean)
        per_seed: dict[int | None, dict[str, float]] = {}
        for r in members:
            per_seed.setdefault(r.seed, {})[r.image] = number(r.metrics[metric])
        full = [statistics.fmean(v.values()) for v in per_seed.values() if len(v) == len(by_image)]
        spread = stat(full)
        avg = statistics.fmean(means)
        pa = number(paper_average)
        subset = images is not None and not set(images) <= set(by_image)  # --limit, failed or missing images
        if subset:
            have = [number(paper.get(i)) for i in by_image]
            pa = statistics.fmean(have) if have and None not in have else None
        out.append({"group": label, "image": "average", "n": spread.n, "mean": avg, "std": spread.std,
                    "paper": pa, "delta": None if pa is None else avg - pa,
                    "covers": (len(set(by_image) & set(images)), len(set(images))) if subset else None})
    return out


def missing_rows(rows: list[FitRow], images: list[str] | None) -> list[FitRow]:
    """The fits a suite expects but no job folder holds: per group, each of the suite's ``images``
    × each seed the group ran (a job never launched: a cut SLURM array, ``--limit``, a folder
    without the image), as rows of status ``missing`` for the "not counted" list."""
    if not images:
        return []
    out = []
    for members in groups_of(rows).values():
        have = {(r.image, r.seed) for r in members}
        seeds = sorted({r.seed for r in members}, key=seed_key)
        for image in sorted(set(images), key=natural_key):
            out += [FitRow("—", members[0].dir, "missing", members[0].group, image, seed,
                           {"reason": "no job of the sweep ran this image and seed"})
                    for seed in seeds if (image, seed) not in have]
    return out


def _f(v, nd: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def group_markdown(table: list[dict], metric: str) -> str:
    head = ["group", "n", f"{metric} (mean ± std)", "seeds", "images", *EXTRA]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [r["group"], str(r["n"]), Stat(r["mean"], r["std"], r["n"]).cell(), str(r["seeds"]), str(r["images"]),
                 *(_f(r[k], 0 if k in ("best_step", "es_step", "steps_to_95") else 2) for k in EXTRA)]
        lines.append("| " + " | ".join(md_text(c) for c in cells) + " |")
    return "\n".join(lines)


def image_markdown(table: list[dict], metric: str, with_paper: bool) -> str:
    head = ["group", "image", f"{metric} (mean ± std over seeds)", "n"] + (["paper", "Δ"] if with_paper else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        name = "**average**" if r["image"] == "average" else md_text(r["image"])
        cells = [md_text(r["group"]), name, Stat(r["mean"], r["std"], r["n"]).cell(), str(r["n"])]
        if with_paper:
            cells += [_f(r["paper"]), "—" if r["delta"] is None else f"{r['delta']:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for r in table:
        if r["image"] == "average" and r.get("covers"):
            have, total = r["covers"]
            lines += ["", f"{md_text(r['group'])}: the average covers {have} of the suite's {total} images"
                      + ("; its paper value is the paper's mean over those." if with_paper and r["paper"] is not None
                         else ".")]
    return "\n".join(lines)


def failed_markdown(rows: list[FitRow], metric: str) -> str:
    bad = not_counted(rows, metric)
    if not bad:
        return ""
    lines = [f"Not counted ({len(bad)}: failed, missing, or without {metric}):", "",
             "| job | image | seed | status | reason |", "|---|---|---|---|---|"]
    for r in bad:
        cells = [r.job, r.image, _f(r.seed), r.status, r.metrics.get("reason") or ""]
        lines.append("| " + " | ".join(md_text(c) for c in cells) + " |")
    return "\n".join(lines)
