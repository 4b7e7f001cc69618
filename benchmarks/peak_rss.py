"""Run a command and write its peak resident memory (KiB) to a file: `python peak_rss.py OUT CMD…`.

A child's ru_maxrss starts at its parent's RSS (the kernel carries the high-water mark over
fork and exec), so a 1 GB benchmark process would see every child it starts as ≥ 1 GB. This
small process starts the command instead, so the figure is the command's own.
"""

import os
import sys

out, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawnp(argv[0], argv, dict(os.environ))
_, status, usage = os.wait4(pid, 0)
with open(out, "w", encoding="utf-8") as handle:
    handle.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
