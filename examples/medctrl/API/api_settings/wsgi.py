"""WSGI entry point: gunicorn api_settings.wsgi:application.
DJANGO_SETTINGS_MODULE comes from the environment (set by the systemd unit)."""
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
