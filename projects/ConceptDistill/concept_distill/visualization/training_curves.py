"""Loss and alignment curves of a pre-training run and of two fine-tuning runs."""
from __future__ import annotations

from pathlib import Path

from concept_distill.evaluation.scalar_logs import series
from concept_distill.visualization.pyplot import pyplot


def plot_training_curves(pretrain: list[dict], scratch: list[dict], pretrained: list[dict],
                         path: str | Path) -> Path:
    """Pre-training losses and student-teacher alignment; fine-tuning loss from scratch vs
    from the pre-trained backbone (records as ``read_scalars`` returns them)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    ax = axes[0]
    for key, style in (('loss', '-'), ('loss_global', '--'), ('loss_contrastive', ':'),
                       ('loss_set', '-.')):
        x, y = series(pretrain, key)
        if x:
            ax.plot(x, y, style, label=key)
    ax.set(title='Pre-training losses', xlabel='iteration')
    ax.legend()
    ax = axes[1]
    for key in ('align_cos', 'align_top1'):
        x, y = series(pretrain, key)
        if x:
            ax.plot(x, y, label=f'train batch {key}')
    ax.set(title='Student vs teacher alignment (train batches)', xlabel='iteration',
           ylim=(-0.05, 1.05))
    ax.legend()
    ax = axes[2]
    for name, records in (('from scratch', scratch), ('pre-trained backbone', pretrained)):
        x, y = series(records, 'loss')
        if x:
            ax.plot(x, y, label=name)
    ax.set(title='VoteNet fine-tuning loss', xlabel='iteration', yscale='log')
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
