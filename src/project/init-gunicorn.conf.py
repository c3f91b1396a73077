# gunicorn settings, written by `relctl init` (gunicorn reads them from the directory it starts
# in; relctl.toml's [service] exec names this file with --config). Add your own settings here.
#
# With --preload the master imports the app once and forks its workers from it, so the workers
# share the master's memory until they write to it. Python's cyclic garbage collector writes to
# every object it tracks whenever it runs, and once more as a worker exits: each write copies a
# page. gc.freeze() right before each fork moves what the master holds where the collector never
# looks, so the workers keep sharing it, and stopping an instance, which every restart and deploy
# does, takes a fraction of the CPU (relctl's docs/benchmarks.md, "What a restart costs").
# Objects created after the fork are collected as usual.
# https://docs.python.org/3/library/gc.html#gc.freeze
import gc


def pre_fork(server, worker):
    gc.freeze()
