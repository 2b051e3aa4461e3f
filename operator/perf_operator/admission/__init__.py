"""The validating admission webhook, served by every replica independently of leadership.

kopf's own admission server starts only when kopf starts, which the leader gate holds until a
replica leads (``leadership.py``): with it, only the leader served the webhook and, for the
takeover time after the leader died, every create failed (``failurePolicy: Fail``). Validation
reads nothing and writes nothing, so any replica may answer: each one runs this server from its
first startup handler, before the election, and keeps the ValidatingWebhookConfiguration it
describes in place (restored when deleted or changed).

- :mod:`.review`: what to check in an AdmissionReview (pure).
- :mod:`.configuration`: the desired ValidatingWebhookConfiguration (pure) and its keeper.
- :mod:`.tls`: the serving certificate in a cluster (kept in a Secret all replicas share).
- :mod:`.server`: the HTTPS server.
"""
