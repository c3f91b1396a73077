"""Settings shared by every build. Per-build values (RELCTL_BUILD, RELCTL_RELEASE,
DEBUG, BASE_URL, DATABASES) live in deploy_<build>.py, rendered by relctl from
deploy/settings.py.tera, which star-imports this module."""
import os

SECRET_KEY = os.environ.get("SECRET_KEY", "example-insecure-key")

DEBUG = False
# Example only: accept any Host header, so requests through nginx, curl on the
# unix socket, or the health check are never rejected. Restrict this in real use.
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
]
# No CommonMiddleware: no APPEND_SLASH redirects, the catch-all sees every path.
MIDDLEWARE = []
APPEND_SLASH = False

ROOT_URLCONF = "api_settings.urls"
WSGI_APPLICATION = "api_settings.wsgi.application"

DATABASES = {}  # set per build (SQLite in the state dir)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Static files: collectstatic (a build hook in relctl.toml) copies these into the release's
# STATIC_ROOT; nginx serves them there ([static] in relctl.toml). STATIC_ROOT and STATIC_URL
# are set per build, in deploy_<build>.py.
STATICFILES_DIRS = [os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "assets")]
STATIC_URL = "static/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

RELCTL_BUILD = None
RELCTL_RELEASE = None
BASE_URL = ""
