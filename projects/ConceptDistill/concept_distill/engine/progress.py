"""The tools' progress bars (create_data, extract_teacher_features); imports nothing heavy."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(desc: str, unit: str) -> Iterator[Callable[[int, int | None], None]]:
    """A tqdm bar (on stderr, with time left) driven by `progress(done, total)` callbacks.

    The first call may carry work already done (a resumed cache): it becomes the bar's
    starting point, so the rate and the time left measure only what this run does. A call
    with a new total, or a count that goes back, starts the next phase on the same bar; a total
    of None is a plain counter (no time left).
    """
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit) as bar:
        def progress(done: int, total: int | None) -> None:
            if bar.total != total or done < bar.n:  # a resumed start, or the next phase
                bar.reset(total=total)
                bar.initial = bar.n = bar.last_print_n = done
            bar.update(done - bar.n)

        yield progress
