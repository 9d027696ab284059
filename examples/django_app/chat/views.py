"""GET lists a conversation's latest messages; POST sends one."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from signalwire_conversation import NotFoundError, SignalWireError, ValidationError

from .signalwire import get_client


@csrf_exempt  # an API endpoint for the example; protect yours as your project does
def messages(request: HttpRequest, address_id: str) -> HttpResponse:
    api = get_client().conversation
    try:
        if request.method == "POST":
            sent = api.send_message(address_id, request.POST.get("text", ""))
            return JsonResponse(sent.to_dict(), status=201)
        limit = int(request.GET.get("limit", "20"))
        page = api.get_conversation_messages(address_id, limit=limit)
        return JsonResponse({"messages": [m.to_dict() for m in page]})
    except (ValidationError, ValueError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except NotFoundError as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    except SignalWireError as exc:
        return JsonResponse({"error": str(exc)}, status=502)
