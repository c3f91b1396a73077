# The user-shaped app of scripts/bench-restart and scripts/profile-restart: a Django project as a
# user has it. Sourced; needs `inside` (a command run in the sandbox), DJANGO and GUNICORN.
# make_user_app DIR: `django-admin startproject mysite` (Django from PyPI, in a venv in the sandbox),
# a JSON view at /items/, the project's own gunicorn.conf.py (workers, no gc.freeze), a manifest
# with [deps] venv, gunicorn --preload, the admin's login page as [health], the build production at /.
make_user_app() {   # make_user_app DIR
    local d=$1
    inside sh -ec "python3 -m venv /root/dj
        /root/dj/bin/pip install --disable-pip-version-check -q Django==$DJANGO
        mkdir -p '$d' && /root/dj/bin/django-admin startproject mysite '$d'"
    printf 'Django==%s\ngunicorn==%s\n' "$DJANGO" "$GUNICORN" > "$d/requirements.txt"
    cat > "$d/gunicorn.conf.py" <<'PY'
# The project's own gunicorn settings (read from the directory gunicorn starts in).
workers = 2
timeout = 30
PY
    cat > "$d/mysite/views.py" <<'PY'
from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse


def items(request):
    rows = [{"id": i, "name": f"item {i}", "square": i * i} for i in range(50)]
    return JsonResponse(
        {
            "release": getattr(settings, "RELCTL_RELEASE", ""),
            "self": reverse("items"),
            "count": len(rows),
            "items": rows,
        }
    )
PY
    cat >> "$d/mysite/urls.py" <<'PY'

from . import views  # noqa: E402

urlpatterns += [path("items/", views.items, name="items")]
PY
    cat > "$d/relctl.toml" <<'TOML'
# `django-admin startproject mysite` with a view, deployed by relctl.
app = "mysite"
component = "web"
exclude = ["__pycache__/", "*.pyc", ".venv/", "static/", "db.sqlite3"]

[settings]
template = "builtin:django"
path = "mysite/deploy_{{ build }}.py"

[service]
exec = ".venv/bin/python -m gunicorn --preload mysite.wsgi:application"
environment = { DJANGO_SETTINGS_MODULE = "mysite.deploy_{{ build }}" }

[deps.venv]
path = ".venv"
key = ["requirements.txt"]
build = [
  "/usr/bin/python3 -m venv \"$RELCTL_DEP_DIR\"",
  "\"$RELCTL_DEP_DIR/bin/python\" -m pip install --disable-pip-version-check -q -r requirements.txt",
]

[hooks]
build = [".venv/bin/python manage.py collectstatic --noinput -v 0"]
release = [".venv/bin/python manage.py migrate --noinput -v 0"]

[static]
dir = "static"

[health]
path = "/admin/login/"

[vars]
settings_module = "mysite.settings"

[builds.production]
route = "/"
TOML
}
