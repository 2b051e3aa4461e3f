"""Everything about TenantQuotas: the registry of the tenants the operator watches
(``registry``), each tenant's limits record in Redis (``records``) and its PostgreSQL mirror
(``mirror``, with the operator's own migrations), the ``TablesReady`` reconciler (``tables``),
where a tenant's tables are and what a move left behind (``places``, ``cleanup``), its cache
usage (``usage``) and the batched periodic re-check (``recheck``).
"""
