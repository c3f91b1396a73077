#!/usr/bin/env python3
"""Django's command-line utility. DJANGO_SETTINGS_MODULE must be set
(api_settings.settings.deploy_<build>, rendered by relctl)."""
import sys


def main():
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
