"""Which PostgreSQL parameters a profile may set: performance tunables only.

A profile is edited by a team; ``database.settings`` must give it nothing more than
performance. Parameters that run programs (``archive_command``, ...), load code
(``shared_preload_libraries``, ``dynamic_library_path``, ...), move files (``log_directory``,
``ssl_cert_file``, ...), point at other servers (``primary_conninfo``, ``restore_command``),
change how SQL is read (``search_path``, ``standard_conforming_strings``), or weaken
authentication, replication or durability (``password_encryption``,
``session_replication_role``, ``fsync``, ...) are not on the list, so they are refused.

This module is the one source of the list: the CRD's CEL rule is generated from it
(``api/profile.py``), the reconciler (``postgres/settings.py``) refuses with :func:`refusal`
(status Rejected, never sent), and ``sql/operator-role.sql`` grants ``SET, ALTER SYSTEM ON PARAMETER`` for exactly
these names (a unit test keeps them equal). A PerformanceTarget may narrow the list further
(``targets/resolve.py``).
"""
from __future__ import annotations

from .schema import Rule

#: Performance tunables of PostgreSQL 15, by area (names as pg_settings spells them).
ALLOWED_PARAMETERS: tuple[str, ...] = (
    # memory
    "shared_buffers", "huge_pages", "temp_buffers", "work_mem", "hash_mem_multiplier",
    "maintenance_work_mem", "autovacuum_work_mem", "logical_decoding_work_mem",
    "effective_cache_size", "temp_file_limit", "max_connections",
    "max_locks_per_transaction", "max_pred_locks_per_transaction", "max_files_per_process",
    "temp_tablespaces",
    # timeouts and connection health
    "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
    "idle_session_timeout", "deadlock_timeout", "tcp_keepalives_idle",
    "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout",
    "client_connection_check_interval",
    # background writer and I/O
    "bgwriter_delay", "bgwriter_lru_maxpages", "bgwriter_lru_multiplier",
    "bgwriter_flush_after", "backend_flush_after", "effective_io_concurrency",
    "maintenance_io_concurrency",
    # parallelism
    "max_worker_processes", "max_parallel_workers", "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers", "parallel_leader_participation",
    # WAL sizing and checkpoints
    "wal_buffers", "wal_writer_delay", "wal_writer_flush_after", "wal_compression",
    "wal_init_zero", "wal_recycle", "wal_skip_threshold", "commit_delay", "commit_siblings",
    "checkpoint_timeout", "checkpoint_completion_target", "checkpoint_flush_after",
    "checkpoint_warning", "max_wal_size", "min_wal_size",
    # planner costs and methods
    "seq_page_cost", "random_page_cost", "cpu_tuple_cost", "cpu_index_tuple_cost",
    "cpu_operator_cost", "parallel_setup_cost", "parallel_tuple_cost",
    "min_parallel_table_scan_size", "min_parallel_index_scan_size", "default_statistics_target",
    "constraint_exclusion", "cursor_tuple_fraction", "from_collapse_limit",
    "join_collapse_limit", "plan_cache_mode", "recursive_worktable_factor",
    "jit", "jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost",
    "geqo", "geqo_threshold", "geqo_effort", "geqo_pool_size", "geqo_generations",
    "geqo_selection_bias", "geqo_seed",
    "enable_async_append", "enable_bitmapscan", "enable_gathermerge", "enable_hashagg",
    "enable_hashjoin", "enable_incremental_sort", "enable_indexonlyscan", "enable_indexscan",
    "enable_material", "enable_memoize", "enable_mergejoin", "enable_nestloop",
    "enable_parallel_append", "enable_parallel_hash", "enable_partition_pruning",
    "enable_partitionwise_aggregate", "enable_partitionwise_join", "enable_seqscan",
    "enable_sort", "enable_tidscan", "gin_pending_list_limit",
    # autovacuum and vacuum costs
    "autovacuum", "autovacuum_max_workers", "autovacuum_naptime",
    "autovacuum_vacuum_threshold", "autovacuum_vacuum_insert_threshold",
    "autovacuum_analyze_threshold", "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor", "autovacuum_analyze_scale_factor",
    "autovacuum_freeze_max_age", "autovacuum_multixact_freeze_max_age",
    "autovacuum_vacuum_cost_delay", "autovacuum_vacuum_cost_limit",
    "vacuum_cost_delay", "vacuum_cost_page_hit", "vacuum_cost_page_miss",
    "vacuum_cost_page_dirty", "vacuum_cost_limit", "vacuum_freeze_min_age",
    "vacuum_freeze_table_age", "vacuum_multixact_freeze_min_age",
    "vacuum_multixact_freeze_table_age", "vacuum_failsafe_age",
    "vacuum_multixact_failsafe_age",
    # statistics the tuning reads, and logging of slow work (not of statement texts)
    "track_activities", "track_counts", "track_io_timing", "track_wal_io_timing",
    "track_functions", "track_activity_query_size", "compute_query_id",
    "log_min_duration_statement", "log_checkpoints", "log_connections", "log_disconnections",
    "log_lock_waits", "log_temp_files", "log_autovacuum_min_duration",
    # the statistics extension the advisor reads
    "pg_stat_statements.max", "pg_stat_statements.track", "pg_stat_statements.track_utility",
    "pg_stat_statements.track_planning", "pg_stat_statements.save",
)

#: Parameters whose value is a list (GUC_LIST_INPUT): written as one literal per element.
LIST_PARAMETERS: frozenset[str] = frozenset({"temp_tablespaces"})

_ALLOWED = frozenset(ALLOWED_PARAMETERS)


def refusal(name: str) -> str | None:
    """Why a profile may not set ``name``, or None when it may. (A PerformanceTarget's
    narrower list is applied when the profile is resolved against it, targets.resolve.)"""
    if name not in _ALLOWED:
        return f"{name} is not a performance parameter the operator may set; it was not sent"
    return None


def list_elements(value: str) -> list[str]:
    """The elements of a list-valued parameter's value: ``"a, b"`` and ``'"a","b"'`` are
    both ``['a', 'b']`` (double quotes around an element are PostgreSQL's identifier quoting,
    not part of the name)."""
    elements = []
    for part in value.split(","):
        part = part.strip()
        if len(part) >= 2 and part[0] == part[-1] == '"':
            part = part[1:-1].replace('""', '"')
        if part:
            elements.append(part)
    return elements


def parameters_rule() -> Rule:
    """The CRD's check of ``database.settings.parameters``: every key on the list; the
    message names a key that is not (one: the API server's cost estimate refuses joining
    them, as a map key's length cannot be bounded in the schema)."""
    names = "[" + ", ".join(f"'{name}'" for name in ALLOWED_PARAMETERS) + "]"
    return Rule(f"self.all(k, k in {names})", "only performance parameters may be set",
                message_expression="'not a performance parameter the operator may set: ' + "
                                   f"self.filter(k, !(k in {names}))[0]")
