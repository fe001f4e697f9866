"""What a fitted group leaves, taken off the module once its loop has ended (``collect``).

Per fit: its pictures (final, EMA, best, early-stopped, a method's own), its metric rows, and the
scores only the live module knows: the tracked best PSNR and its step, the fit of A(x̂) to the
observation on the canvas, the held-out pixels' PSNR. Per group: its status and timing. A
whole-image run writes its one group at once (``outputs.write_fits``); a tiled run keeps each in
``tiles/groupNNN/result.pt`` and assembles them into the whole image's (``tiled_outputs``).
"""
from __future__ import annotations

from dip_lightning.io import crop
from dip_lightning.metrics import psnr, score
from dip_lightning.nets.blocks import count_parameters

#: the group's file in a tiled run's ``tiles/groupNNN/``
RESULT = "result.pt"


def collect(module, fits: list, cbs: dict, status: str, reason: str | None) -> dict:
    """``{"status", "reason", "timing", "fits"}`` of a fitted (packed) module: ``fits`` holds one
    dict per fit (pictures (1, C, H, W) on the CPU, ``history``, the scores); ``timing`` the
    steps done, the steady rate, the fitting time (resumed runs: with the parts before), the
    method and the net."""
    m, es_cb, throughput = module.cpu(), cbs.get("es"), cbs["throughput"]
    final, ema_all = m.final_image(), m.ema_image()  # the packed pictures, sliced per fit below
    held = m.holdout_psnr(m.task(m.last_out)) if m.holdout_mask is not None else None
    own_images = m.method.images(m)
    per = []
    for i, fit in enumerate(fits):
        def sl(x, i=i):
            return None if x is None else m.fit_slice(x, i)

        gt = fit.prob.x_true
        es = es_cb.result(i) if es_cb is not None else {"es_step": None, "es_detected": False, "es_method": None}
        ema = sl(ema_all)
        y_obs = sl(crop(m.y, m.obs_box))
        own = {name: fit.task.view(sl(crop(img, m.box)))[0] for name, img in own_images.items()}
        per.append({
            "final": sl(final), "ema": ema, "best": sl(m.best_image) if gt is not None else None,
            "es": sl(es_cb.image.cpu()) if (es_cb is not None and es["es_step"] is not None) else None,
            "es_step": es["es_step"], "es_result": es, "images": own, "history": m.history_dict(i),
            "best_step": int(m.best_step[i]) if gt is not None else None,
            "psnr_best": score(m.best_psnr[i]) if gt is not None else None,
            "psnr_obs_final": score(psnr(crop(fit.task(sl(m.last_out)), m.obs_box), y_obs)),
            "psnr_ema_obs_final": score(psnr(crop(fit.task(sl(m.ema)), m.obs_box), y_obs)) if ema is not None else None,
            "psnr_holdout": score(held[i]) if held is not None else None,
            "backtracks": int(m.backtracks[i]),
        })
    timing = {"steps": int(m.global_step), "it_per_s": throughput.it_per_s, "fit_s": throughput.wall_s,
              "before_s": throughput.before_s, "resumed_at": throughput.resumed_at,
              "method": getattr(m.method, "name", None), "net": type(fits[0].net).__name__,
              "params": count_parameters(fits[0].net)}
    return {"status": status, "reason": reason, "timing": timing, "fits": per}
