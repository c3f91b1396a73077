from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.templatetags.static import static

ECHOED_HEADERS = ("host", "x-real-ip", "x-forwarded-for", "x-forwarded-proto")


def health(request):
    return HttpResponse("ok", content_type="text/plain")


def echo(request):
    return JsonResponse(
        {
            "build": settings.RELCTL_BUILD,
            "release": settings.RELCTL_RELEASE,
            # path_info: the path as this app received it (after any prefix the
            # proxy stripped), without SCRIPT_NAME.
            "path": request.path_info,
            # The route the proxy says the app is mounted at ("" when reached directly).
            "script_name": request.META.get("SCRIPT_NAME", ""),
            # A URL the app generates for its own static file: under the route.
            "static": static("medctrl/hello.css"),
            "query": request.META.get("QUERY_STRING", ""),
            "headers": {
                h: request.META.get("HTTP_" + h.upper().replace("-", "_"))
                for h in ECHOED_HEADERS
            },
        }
    )
