"""07's summary figure: one panel per measure, every system beside the prompted base and
the person's own held-out text, with 95% CIs drawn as error bars where a measure has them
(authorship, identity). A measure whose right value is the person's own (distinct-2, the
repeated 3-gram rate: MEASURES' "closer") is drawn as the distance to that value."""
from __future__ import annotations

import matplotlib.pyplot as plt

from lib.eval_report import measures_present
from lib.eval_systems import BASELINE

GRAY = ("tab:gray", "own_text", "person")


def interval_panel(ax, rows: dict[str, dict], value_key: str, title: str) -> None:
    """Bars of rows[name][value_key] with [ci_low, ci_high] error bars (None values skipped)."""
    shown = [n for n, r in rows.items() if r.get(value_key) is not None]
    values = [rows[n][value_key] for n in shown]
    errors = [[v - rows[n]["ci_low"] for n, v in zip(shown, values)], [rows[n]["ci_high"] - v for n, v in zip(shown, values)]]
    ax.bar(range(len(shown)), values, yerr=errors, capsize=3,
           color=["tab:gray" if n in (BASELINE, "own_text") else "tab:blue" for n in shown])
    ax.set_xticks(range(len(shown)), shown, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)


def summary_figure(scores: dict, names: list[str], authorship: dict | None = None,
                   identity: dict | None = None, person_name: str = ""):
    """The figure (matplotlib Figure): authorship P(person) and identity rates with CI error
    bars first, then every measure present in scores (lib.eval_report.MEASURES)."""
    panels = []
    if authorship:
        panels.append(("authorship", authorship, "p_person", "P(the person wrote it)\n(higher is better, 95% CI)"))
    for kind, rows in (identity or {}).items():
        panels.append(("identity", {n: {"rate": r["rate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
                                    for n, r in rows.items()}, "rate",
                       f"identity rate, {kind} probes\n(higher is better, 95% CI)"))
    measures = [m for m in measures_present(scores) if not (identity and m[0] == "identity_rate")]
    count = len(panels) + len(measures)
    if not count:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "nothing measured", ha="center", va="center")
        return fig
    rows = -(-count // 4)
    fig, axes = plt.subplots(rows, 4, figsize=(13, 3.4 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (_, data, key, title) in zip(flat, panels):
        interval_panel(ax, data, key, title)
    for ax, (key, label, better) in zip(flat[len(panels):], measures):
        shown = [n for n in names + ["own_text"] if scores[key].get(n) is not None]
        values = [scores[key][n] for n in shown]
        if better == "closer" and scores[key].get("own_text") is not None:
            target = scores[key]["own_text"]
            shown = [n for n in shown if n != "own_text"]
            values = [abs(scores[key][n] - target) for n in shown]
            title = f"{label}: distance to the person's {target:.3f}\n(lower is better)"
        else:
            title = f"{label}\n({better} is better)"
        ax.bar(range(len(shown)), values,
               color=["tab:gray" if n in (BASELINE, "own_text") else "tab:blue" for n in shown])
        ax.set_xticks(range(len(shown)), shown, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    for ax in flat[count:]:
        ax.axis("off")
    fig.suptitle(f"{person_name}: every system against the prompted base model and the person's own text (gray)")
    fig.tight_layout()
    return fig
