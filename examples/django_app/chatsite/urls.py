from __future__ import annotations

from django.urls import path

from chat import views

urlpatterns = [
    path("me/conversations/<str:address_id>/messages", views.my_messages, name="my-messages"),
    path("conversations/<str:address_id>/messages", views.messages, name="messages"),
]
