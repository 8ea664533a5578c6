"""`retain_freed_memory()`: freed tensors are reused instead of being unmapped and faulted in
again on the next step (the cause of CPU training steps spending more time in the kernel than
in computation); CONCEPT_DISTILL_RETAIN_MEMORY=0 keeps glibc's default."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from concept_distill.engine import cpu_allocator

# Allocate, touch and free a 256 MiB block (glibc's malloc, as torch's CPU allocator calls it)
# a few times; report the page faults of the repeats.
PROBE = r'''
import ctypes, importlib.util, json, resource, sys
# The module alone (the package's import registers all of mmdet3d: seconds per process).
spec = importlib.util.spec_from_file_location('cpu_allocator', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
applied = module.retain_freed_memory()
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def step():
    block = libc.malloc(256 * 2**20)
    ctypes.memset(block, 1, 256 * 2**20)
    libc.free(block)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(json.dumps(dict(applied=applied,
                      faults=resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)))
'''
PAGES = 4 * 256 * 2**20 // 4096  # what four fresh mappings of the block fault in (4 KiB)


def _probe(switch: str) -> dict:
    env = dict(os.environ, CONCEPT_DISTILL_RETAIN_MEMORY=switch)
    out = subprocess.run([sys.executable, '-c', PROBE, cpu_allocator.__file__], env=env,
                         check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc policy')
def test_freed_memory_is_reused_and_the_switch_turns_it_off():
    on, off = _probe('1'), _probe('0')
    assert on['applied'] is True and off['applied'] is False
    # glibc default: unmapped on free, faulted in again (4 KiB pages; 512x fewer faults where
    # the kernel backs every mapping with huge pages, hence the relative check below).
    assert off['faults'] >= PAGES // 512
    assert off['faults'] > 20 * max(on['faults'], 1)  # retained: the same pages are reused


# The same block loop in a forked child (a dataloader worker), faults reported through a pipe.
FORK_PROBE = r'''
import ctypes, importlib.util, json, os, resource, sys
spec = importlib.util.spec_from_file_location('cpu_allocator', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
applied = module.retain_freed_memory(in_children=sys.argv[2] == '1')
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def step():
    block = libc.malloc(256 * 2**20)
    ctypes.memset(block, 1, 256 * 2**20)
    libc.free(block)
def faults():
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, str(faults()).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps(dict(applied=applied, main=faults(), worker=int(os.read(read, 64)))))
'''


def _fork_probe(in_children: bool) -> dict:
    env = dict(os.environ, CONCEPT_DISTILL_RETAIN_MEMORY='1')
    out = subprocess.run([sys.executable, '-c', FORK_PROBE, cpu_allocator.__file__,
                          '1' if in_children else '0'], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc policy')
def test_forked_workers_go_back_to_the_default_policy():
    """Issue 17: dataloader workers do not inherit a heap that never shrinks."""
    now, before = _fork_probe(in_children=False), _fork_probe(in_children=True)
    assert now['applied'] and before['applied']
    assert now['main'] * 20 < max(now['worker'], 1)  # the worker unmaps again (default)
    assert before['worker'] * 20 < max(now['worker'], 1)  # formerly: retained there too
    assert now['worker'] >= PAGES // 512


GPU_PROBE = r'''
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('cpu_allocator', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module._cuda_visible = lambda: True  # as on a GPU machine
print(json.dumps(module.retain_freed_memory()))
'''


@pytest.mark.parametrize('switch, applied', [(None, False), ('1', True), ('0', False)])
def test_gpu_runs_keep_glibc_default_unless_asked(switch, applied):
    env = {k: v for k, v in os.environ.items() if k != cpu_allocator.ENV_SWITCH}
    if switch is not None:
        env[cpu_allocator.ENV_SWITCH] = switch
    out = subprocess.run([sys.executable, '-c', GPU_PROBE, cpu_allocator.__file__], env=env,
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) is applied
