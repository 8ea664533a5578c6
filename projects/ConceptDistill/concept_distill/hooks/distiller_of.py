"""The ConceptDistiller a runner trains, through model wrappers (shared by the hooks)."""
from __future__ import annotations

from mmengine.model import is_model_wrapper


def distiller_of(runner):
    """The runner's model unwrapped; a TypeError unless it has a teacher and a backbone."""
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if not hasattr(model, 'teacher') or not hasattr(model, 'backbone'):
        raise TypeError(f'this hook needs a ConceptDistiller model, got {type(model).__name__}')
    return model
