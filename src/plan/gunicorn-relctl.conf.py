# Written by relctl build: gunicorn's configuration for uvicorn's worker under a route.
# uvicorn's gunicorn worker (uvicorn_worker.UvicornWorker, uvicorn.workers.UvicornWorker) ignores
# the SCRIPT_NAME header nginx sends and takes no --root-path under gunicorn: this hook gives the
# app the build's route as its ASGI root_path, with the full path nginx sends as the path, as
# gunicorn's own `-k asgi --root-path "$RELCTL_SCRIPT_NAME"` does. The service loads it through
# GUNICORN_CMD_ARGS="--config ...", which replaces ./gunicorn.conf.py: that file, if the project
# has one, is loaded here first, and its own post_worker_init still runs.
import os

_project_conf = os.path.join(os.getcwd(), "gunicorn.conf.py")
if os.path.exists(_project_conf):
    _relctl_file = __file__
    __file__ = _project_conf
    with open(_project_conf) as _f:
        exec(compile(_f.read(), _project_conf, "exec"))
    __file__ = _relctl_file
_project_post_worker_init = globals().get("post_worker_init")
_relctl_prefix = os.environ.get("RELCTL_SCRIPT_NAME", "")


def post_worker_init(worker):
    if _project_post_worker_init is not None:
        _project_post_worker_init(worker)
    # At "/", or not uvicorn's worker (gunicorn's own workers have no CONFIG_KWARGS): nothing to do.
    if not _relctl_prefix or getattr(type(worker), "CONFIG_KWARGS", None) is None:
        return
    app = worker.wsgi  # what the worker hands uvicorn once this hook returned

    async def relctl_root_path(scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope, root_path=_relctl_prefix)
        await app(scope, receive, send)

    worker.wsgi = relctl_root_path
