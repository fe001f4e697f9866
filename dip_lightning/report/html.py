"""report.html: one self-contained page (tables, pictures as data URIs, the command line and the
environment) that opens offline and references nothing outside itself; and the summary as a
``wandb.Table`` when the sweep logged to W&B."""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import yaml


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


def _md_table_to_html(md: str) -> str:
    """A markdown pipe table (as the tables module writes it) as an HTML table."""
    rows = [line.strip().strip("|").split(" | ") for line in md.strip().splitlines() if line.startswith("|")]
    rows = [r for r in rows if not all(set(c.strip()) <= set("-") for c in r)]
    if not rows:
        return ""
    head, body = rows[0], rows[1:]
    cell = lambda c: html.escape(c.replace("\\|", "|").replace("**", ""))  # noqa: E731
    out = ["<table>", "<tr>" + "".join(f"<th>{cell(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in body]
    return "\n".join(out + ["</table>"])


def write_html(path: Path, title: str, sections: list[tuple[str, str]], images: list[tuple[str, Path]],
               command: str, env: dict) -> None:
    """``sections``: (heading, markdown table or paragraph); ``images``: (caption, PNG path)."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Command</h2>", f"<pre>{html.escape(command)}</pre>"]
    for heading, md in sections:
        if not md:
            continue
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for block in md.strip().split("\n\n"):  # tables and the lines around them
            parts.append(_md_table_to_html(block) if block.lstrip().startswith("|") else
                         f"<p>{html.escape(block.replace('**', ''))}</p>")
    for caption, png in images:
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' "
                         f"src='data:image/png;base64,{data}'>")
    parts.append("<h2>Environment</h2>")
    parts.append(_md_table_to_html("| key | value |\n|---|---|\n" +
                                   "\n".join(f"| {k} | {v} |" for k, v in env.items())))
    style = ("body{font-family:sans-serif;max-width:1200px;margin:1em auto}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}img{max-width:100%}")
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
