"""GET lists a conversation's latest messages; POST sends one: as the signed-in user
(``my_messages``), or as the project's service subscriber (``messages``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from signalwire_conversation import NotFoundError, SignalWireError, ValidationError

from .signalwire import client_for, get_client


@csrf_exempt  # an API endpoint for the example; protect yours as your project does
def my_messages(request: HttpRequest, address_id: str) -> HttpResponse:
    client = client_for(request)  # this user's client: made on their first request, then reused
    if client is None:
        return JsonResponse({"error": "sign in first"}, status=401)
    api = client.conversation
    try:
        if request.method == "POST":
            sent = api.send_message(address_id, request.POST.get("text", ""))
            return JsonResponse(sent.to_dict(), status=201)
        page = api.get_conversation_messages(address_id, limit=int(request.GET.get("limit", "20")))
        # user_name: the sender's name from the address directory (cached by the client)
        return JsonResponse({"messages": [{"from": m.user_name, "text": m.text, "ts": m.ts} for m in page]})
    except (ValidationError, ValueError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except NotFoundError as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    except SignalWireError as exc:
        return JsonResponse({"error": str(exc)}, status=502)


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
