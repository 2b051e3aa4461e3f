"""The local stack used by the tests and the demo: a real control plane and real services.

Everything runs as child processes in temporary directories on free loopback ports; nothing here
touches the machine's system services.
"""
