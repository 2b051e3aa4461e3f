"""kopf handler registration, one module per resource kind; the work happens elsewhere."""
