# gunicorn settings for MedCtrl (relctl.toml's [service] exec names this file with --config; it is
# read from the directory gunicorn starts in, API/).
#
# With --preload the master imports Django once and forks its workers from it, so the workers
# share the master's memory until they write to it. Python's cyclic garbage collector writes to
# every object it tracks whenever it runs, and once more as a worker exits: each write copies a
# page. gc.freeze() right before each fork moves what the master holds where the collector never
# looks, so the workers keep sharing it, and stopping an instance, which every restart and deploy
# does, costs about 0.07 s of CPU instead of 0.3 s (scripts/profile-restart; relctl's
# docs/benchmarks.md, "What a restart costs"). Objects created after the fork are collected as usual.
# https://docs.python.org/3/library/gc.html#gc.freeze
import gc


def pre_fork(server, worker):
    gc.freeze()
