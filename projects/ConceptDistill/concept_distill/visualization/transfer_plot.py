"""The transfer benchmark's figure: accuracy vs label fraction, pre-trained vs scratch (and the
teacher reference), mean over seeds with the seeds' spread as error bars."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from concept_distill.visualization.pyplot import pyplot

# Colours per backbone; line style per protocol.
_COLOURS = {'pretrained': 'tab:red', 'scratch': 'tab:blue', 'teacher': 'tab:green'}
_STYLES = {'linear_probe': '-o', 'finetune': '--s'}


def transfer_curves(rows: Sequence[Mapping]) -> dict[tuple[str, str], list[tuple]]:
    """{(backbone, protocol): [(label_fraction, mean, std, n_seeds), ...] sorted by fraction}
    from the rows of a transfer result (``run_transfer``'s ``rows``)."""
    curves: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        key = (str(row['backbone']), str(row['protocol']))
        curves.setdefault(key, []).append((float(row['label_fraction']), float(row['mean']),
                                           float(row.get('std') or 0.0),
                                           len(row.get('seeds') or ())))
    return {k: sorted(v) for k, v in curves.items()}


def plot_transfer(rows: Sequence[Mapping], path: str | Path, title: str = '') -> dict:
    """Draw the curves to ``path`` (PNG); return what was drawn (for the report's note)."""
    curves = transfer_curves(rows)
    if not curves:
        raise ValueError('no transfer rows to plot')
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (backbone, protocol), pts in sorted(curves.items()):
        x = [100 * p[0] for p in pts]
        ax.errorbar(x, [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts],
                    fmt=_STYLES.get(protocol, '-^'), color=_COLOURS.get(backbone),
                    capsize=4, label=f'{backbone}, {protocol.replace("_", " ")}')
    ax.set_xscale('log')
    fractions = sorted({100 * p[0] for pts in curves.values() for p in pts})
    ax.set_xticks(fractions)
    ax.set_xticklabels([f'{f:g}%' for f in fractions])
    seeds = max(p[3] for pts in curves.values() for p in pts)
    ax.set(xlabel='labelled training objects', ylabel='test overall accuracy (%)',
           ylim=(0, 100), title=title or f'Held-out objects: mean ± std over {seeds} seeds')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)
    return dict(curves=len(curves), points=sum(len(v) for v in curves.values()), seeds=seeds)
