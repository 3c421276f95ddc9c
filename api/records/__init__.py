"""The business records the API serves: drivers, routes, visits, customers, geofences, users.

One module per entity holds its SQL (queries take the connection first, filters keyword-only
after ``*``) and its JSON renderer; routers parse, call one of these, and render. Records do
not import routers; a record may use another record (a visit's route, a route's visits).
History reads (positions) belong to ``analytics``; the visit lifecycle to
``ingest.visit_lifecycle``.
"""
