from django.urls import path

from campaigns import views

urlpatterns = [
    path("campaigns/", views.campaign_list, name="campaign-list"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="campaign-detail"),
    path("campaigns/<int:pk>/live/", views.campaign_live, name="campaign-live"),
    path("campaigns/<int:pk>/timeline.csv", views.campaign_timeline_csv, name="campaign-csv"),
    path("campaigns/<int:pk>/launch/", views.campaign_launch_view, name="campaign-launch"),
    path("campaigns/<int:pk>/media/<str:message>/", views.campaign_media, name="campaign-media"),
    path("campaigns/<int:pk>/test-send/", views.campaign_test_send_view, name="campaign-test-send"),
    path("campaigns/<int:pk>/clone/", views.campaign_clone_view, name="campaign-clone"),
    path("campaigns/<int:pk>/<str:move>/", views.campaign_move, name="campaign-move"),
    path("contacts/", views.contact_list, name="contact-list"),
    path("contacts/<int:pk>/", views.contact_detail, name="contact-detail"),
]
