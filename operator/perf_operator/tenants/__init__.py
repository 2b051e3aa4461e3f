"""Everything about TenantQuotas: the reconciler's entry points and a tenant's context
(``reconciler``), the registry of the tenants the operator watches (``registry``), each
tenant's limits record in Redis (``records``) and its PostgreSQL mirror (``mirror``, with the
operator's own migrations), the ``TablesReady`` reconciler (``tables``), where a tenant's tables
are and what a move or a deletion removes (``places``, ``cleanup``), its cache usage (``usage``)
and the batched periodic re-check (``recheck``).
"""
