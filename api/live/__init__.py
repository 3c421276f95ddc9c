"""The socket.io live feed: namespace ``/tracking``, seed-compatible rooms and events.

``gateway`` wires socket.io to the enriched-position and visit-event topics; ``rooms`` says who
may join what; ``batching`` builds one ``positions:batch`` frame per room and interval;
``clients`` holds each viewer's bounded queue. docs/live-feed.md describes the protocol.
"""
