"""report.html: one self-contained page (tables, pictures as data URIs, the command line and the
environment) that opens offline and references nothing outside itself; and the summary as a
``wandb.Table`` when the sweep logged to W&B."""
from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

import yaml

from dip_lightning.report.tables import md_text


def command_line(sweep: Path) -> str:
    """The sweep's command: the script's (``command.txt``, written by reproduce.py and compare.py)
    and the multirun it launched (``multirun.yaml``'s overrides at the sweep root, any launcher),
    else the first job's recorded argv."""
    typed = (sweep / "command.txt").read_text().strip() if (sweep / "command.txt").is_file() else ""
    multirun = sweep / "multirun.yaml"
    if multirun.is_file():
        cfg = yaml.safe_load(multirun.read_text()) or {}
        task = ((cfg.get("hydra") or {}).get("overrides") or {}).get("task") or []
        inner = "dip-restore -m " + " ".join(str(t) for t in task)
        return f"{typed}\n\nwhich launched:\n{inner}" if typed else inner
    if typed:
        return typed
    for env in sorted(sweep.rglob("environment.json")):
        return " ".join(json.loads(env.read_text()).get("argv") or [])
    return ""


def environment(sweep: Path) -> dict:
    """Package versions, device, threads and git revision of the first job that recorded them."""
    for env in sorted(sweep.rglob("environment.json")):
        e = json.loads(env.read_text())
        return {"device": e.get("device"), "cuda": e.get("cuda"), "torch_threads": e.get("torch_threads"),
                "python": e.get("python"), "platform": e.get("platform"), "git": e.get("git"),
                **{f"package {k}": v for k, v in (e.get("packages") or {}).items()}}
    return {}


#: a cell that reads as a number: a value, a mean ± spread, a share, a Δ, or a dash for none
_NUMBER = re.compile(r"^\s*(\*\*)?[-+−]?(\d[\d.,]*(e[-+]?\d+)?|nan|—|-)(\s*±\s*[\d.]+)?\s*(%|dB|s|x|×)?(\*\*)?\s*$",
                     re.IGNORECASE)


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (``\\|`` is a pipe inside a cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def align_numbers(text: str) -> str:
    """Markdown whose tables right-align every column whose body cells all read as numbers (the
    separator row gets ``---:``)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        is_table = (lines[i].lstrip().startswith("|") and i + 1 < len(lines)
                    and re.fullmatch(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*", lines[i + 1]))
        if not is_table:
            out.append(lines[i])
            i += 1
            continue
        j = i + 2
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            j += 1
        body = [_cells(row) for row in lines[i + 2:j]]
        seps = _cells(lines[i + 1])
        for c, sep in enumerate(seps):
            column = [row[c] for row in body if c < len(row) and row[c]]
            if column and all(_NUMBER.match(v) for v in column) and not sep.endswith(":"):
                seps[c] = sep.rstrip("-") + "---:"
        out += [lines[i], "|" + "|".join(seps) + "|", *lines[i + 2:j]]
        i = j
    return "\n".join(out)


def to_html(text: str) -> str:
    """Markdown (pipe tables, code, emphasis, headings) as HTML, by Python-Markdown; numeric table
    columns right-aligned; the "NOT comparable" line of a quick suite as a warning banner.

    The page's markup is the markdown's only: raw HTML in it (a ``<tag>`` inline or as a block)
    shows as text, never as an element, and ``\\<`` is an escaped ``<`` (``tables.md_text``)."""
    import markdown

    md = markdown.Markdown(extensions=["tables", "fenced_code"], output_format="html")
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.ESCAPED_CHARS.append("<")
    page = md.convert(align_numbers(text))
    return re.sub(r"<p><strong>([^<]*NOT comparable)", r"<p class='banner'><strong>\1", page)


def write_html(path: Path, title: str, sections: list[tuple[str, str]], images: list[tuple[str, Path]],
               command: str, env: dict) -> None:
    """``sections``: (heading, markdown); ``images``: (caption, PNG path). One self-contained page."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Command</h2>", f"<pre><code>{html.escape(command)}</code></pre>"]
    for heading, md in sections:
        if md:
            parts += [f"<h2>{html.escape(heading)}</h2>", to_html(re.sub(r"\A# .*\n?", "", md))]  # the page has its h1
    for caption, png in images:
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' "
                         f"src='data:image/png;base64,{data}'>")
    rows = "\n".join(f"| {md_text(k)} | {md_text(v)} |" for k, v in env.items())
    parts += ["<h2>Environment</h2>", to_html(f"| key | value |\n|---|---|\n{rows}")]
    style = ("body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}"
             "th{background:#f0f0f0}td{font-variant-numeric:tabular-nums}img{max-width:100%}"
             "pre{background:#f6f6f6;padding:.5em;overflow-x:auto}code{background:#f6f6f6}"
             ".banner{background:#fff3cd;border:2px solid #d39e00;padding:.6em;font-size:1.1em}")
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def uses_wandb(sweep: Path) -> bool:
    """Did the sweep's jobs log to W&B (their composed config's logger)?"""
    for cfg in sorted(sweep.rglob(".hydra/config.yaml")):
        logger = (yaml.safe_load(cfg.read_text()) or {}).get("logger") or {}
        return str(logger.get("_target_", "")).endswith("WandbLogger")
    return False


def log_wandb_tables(sweep: Path, tables: dict[str, tuple[list[str], list[list]]]) -> None:
    """The report's tables ({key: (columns, rows)}) as ``wandb.Table``s in a run of its own (offline
    unless WANDB_MODE says otherwise), grouped with the sweep's jobs; always finished."""
    import wandb

    run = wandb.init(project="dip_lightning", group=sweep.name, name=f"report-{sweep.name}", dir=str(sweep),
                     mode=os.environ.get("WANDB_MODE", "offline"), job_type="report")
    try:
        run.log({key: wandb.Table(columns=cols, data=[list(r) for r in data], allow_mixed_types=True)
                 for key, (cols, data) in tables.items()})
    finally:
        wandb.finish()
