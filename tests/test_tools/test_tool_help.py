"""Every script under tools/ starts and prints its usage, run as a script (as `python
tools/x.py --help` runs it) without tools/ on sys.path: the tools import only the package."""
from __future__ import annotations

import json
import subprocess
import sys

# One process for all scripts: the package's import (mmdet3d, torch) is paid once.
_CHECK = r'''
import contextlib, io, json, runpy, sys
from pathlib import Path
results = {}
for tool in sorted(str(p) for p in Path('tools').rglob('*.py')):
    sys.argv, out = [tool, '--help'], io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(tool, run_name='__main__')
        results[tool] = 'did not exit'
    except SystemExit as exit:
        results[tool] = 'ok' if exit.code in (0, None) and 'usage:' in out.getvalue() \
            else f'exit {exit.code}: {out.getvalue()[-300:]}'
    except Exception as err:
        results[tool] = f'{type(err).__name__}: {err}'
print(json.dumps(results))
'''


def test_every_tool_prints_its_help(repo_root) -> None:
    run = subprocess.run([sys.executable, '-c', _CHECK], cwd=repo_root, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {str(p.relative_to(repo_root)) for p in (repo_root / 'tools').rglob('*.py')}
    assert set(results) == expected and 'tools/train.py' in results
    assert {k: v for k, v in results.items() if v != 'ok'} == {}
