from django.conf import settings
from django.http import HttpResponse, JsonResponse

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
            "query": request.META.get("QUERY_STRING", ""),
            "headers": {
                h: request.META.get("HTTP_" + h.upper().replace("-", "_"))
                for h in ECHOED_HEADERS
            },
        }
    )
