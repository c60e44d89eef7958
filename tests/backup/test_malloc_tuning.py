"""glibc malloc settings for streaming: freed megabyte buffers keep their pages for the next ones.

Measured as the process sees it: minor page faults while a helper thread hands
buffers of one to three megabytes to the main thread, as the archive reader does.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.backup.malloc_tuning import environment
from support.processes import REPO as ROOT


WORKLOAD = """
import queue, resource, sys, threading
if sys.argv[1] == "tuned":
    from app.backup.malloc_tuning import keep_freed_buffers
    assert keep_freed_buffers()
handed = queue.Queue(4)
def produce():
    for i in range(300):
        handed.put(b"x" * ((1 + i % 3) << 20))
    handed.put(None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
threading.Thread(target=produce).start()
buffer = b""
while (chunk := handed.get()) is not None:
    buffer = buffer[len(buffer) // 2:] + chunk
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings, Linux only")


def page_faults(mode: str, extra_environment: dict | None = None) -> int:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.update(extra_environment or {})
    done = subprocess.run([sys.executable, "-c", WORKLOAD, mode], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_a_tuned_process_reuses_the_pages_of_freed_buffers():
    plain = page_faults("plain")
    assert page_faults("tuned") < plain / 2, plain


def test_a_child_started_with_the_environment_reuses_them_too():
    plain = page_faults("plain")
    assert page_faults("plain", environment()) < plain / 2, plain


GIVE_BACK = """
import sys
from app.backup.malloc_tuning import give_back_freed_memory, keep_freed_buffers
assert keep_freed_buffers()
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20
keep = []
freed = [bytearray(1 << 20) for _ in range(60)]  # 60 MB in the heap (under the 4 MB mmap threshold)
keep.append(bytearray(1 << 20))  # in use, above them: the heap's top cannot shrink past it
del freed
before = resident_mb()
if sys.argv[1] == "give-back":
    assert give_back_freed_memory()
print(before - resident_mb())
"""


@pytest.mark.parametrize("mode, released", [("keep", lambda mb: mb < 5), ("give-back", lambda mb: mb >= 50)])
def test_freed_memory_goes_back_to_the_system_only_when_asked(mode, released):
    """A restore that has read its archive gives its freed buffers back before the database's last step."""
    done = subprocess.run([sys.executable, "-c", GIVE_BACK, mode], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    assert released(int(done.stdout)), done.stdout
