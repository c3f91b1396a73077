from django.urls import path, re_path

from api_settings import views

urlpatterns = [
    path("health", views.health),
    re_path(r"", views.echo),  # catch-all, including "/"
]
