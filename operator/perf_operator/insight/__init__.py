"""What ``kubectl perf`` shows: the status tree (``tree``), the plan of what the operator would
do, from the same pure planners, writing nothing (``plan``), a tenant's effective limits and
record (``tenant``), the performance report with its HTML charts (``report``, index health from
``postgres.health``), and the command line around them (``cli``).

The plugin runs as the user, with the user's kubeconfig and RBAC: it reads the Secrets a
profile references only when the user may read them, like ``kubectl get secret``.
"""
