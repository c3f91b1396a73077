# gunicorn settings for MedCtrl (read from the working directory, API/, by `--config`).
#
# With --preload the master imports Django once and forks its workers from it, so the workers
# share the master's memory pages until they write to them. Python's cyclic garbage collector
# writes to every object it tracks, whenever it runs and once more when a worker exits; each
# write copies the page. gc.freeze() right before each fork moves everything the master holds
# into a generation the collector never scans: the workers keep sharing it, and stopping an
# instance costs about 0.07 s of CPU instead of 0.3 s (scripts/bench-restart, README "Zero-impact
# deploys"). Objects created after the fork are collected as usual.
# https://docs.python.org/3/library/gc.html#gc.freeze
import gc


def pre_fork(server, worker):
    gc.freeze()
