-- The PostgreSQL login of perf-operator: no superuser. Run once per server as a superuser,
-- then sql/operator-database.sql in every database the operator manages:
--
--   psql -d postgres -v operator=perf_operator -v password="$PASSWORD" -v owner=app_owner \
--        -f sql/operator-role.sql
--   psql -d idp -v operator=perf_operator -f sql/operator-database.sql
--
-- (psql variables: operator = the login to create, password = its password, owner = the role
-- that owns the application's tables.) What each grant is for:
--   member of the tables' owner  CREATE/DROP INDEX CONCURRENTLY and COMMENT ON INDEX (an index
--                                 belongs to its table's owner), ALTER DATABASE ... SET
--                                 (Database-scoped settings, when that role owns the database),
--                                 SET ROLE to it for the index advisor and the adoption probe
--   SET, ALTER SYSTEM ON PARAMETER only the parameters a profile may set (the operator's
--                                 allow-list, api/parameters.py; nothing else can be written)
--   pg_read_all_stats             pg_stat_statements and pg_stat_activity of other roles (the
--                                 index advisor, builds left running by a previous process)
--   pg_signal_backend             connection pruning (pg_terminate_backend of the application's
--                                 idle sessions)
--
-- If the application connects as a role other than the tables' owner and the index advisor is
-- used, also GRANT that role TO the operator (the advisor plans its queries under SET ROLE).

CREATE ROLE :"operator" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'password';
GRANT :"owner" TO :"operator";
GRANT SET, ALTER SYSTEM ON PARAMETER
    shared_buffers, huge_pages, temp_buffers, work_mem, hash_mem_multiplier,
    maintenance_work_mem, autovacuum_work_mem, logical_decoding_work_mem, effective_cache_size,
    temp_file_limit, max_connections, max_locks_per_transaction, max_pred_locks_per_transaction,
    max_files_per_process, temp_tablespaces, statement_timeout, lock_timeout,
    idle_in_transaction_session_timeout, idle_session_timeout, deadlock_timeout,
    tcp_keepalives_idle, tcp_keepalives_interval, tcp_keepalives_count, tcp_user_timeout,
    client_connection_check_interval, bgwriter_delay, bgwriter_lru_maxpages,
    bgwriter_lru_multiplier, bgwriter_flush_after, backend_flush_after,
    effective_io_concurrency, maintenance_io_concurrency, max_worker_processes,
    max_parallel_workers, max_parallel_workers_per_gather, max_parallel_maintenance_workers,
    parallel_leader_participation, wal_buffers, wal_writer_delay, wal_writer_flush_after,
    wal_compression, wal_init_zero, wal_recycle, wal_skip_threshold, commit_delay,
    commit_siblings, checkpoint_timeout, checkpoint_completion_target, checkpoint_flush_after,
    checkpoint_warning, max_wal_size, min_wal_size, seq_page_cost, random_page_cost,
    cpu_tuple_cost, cpu_index_tuple_cost, cpu_operator_cost, parallel_setup_cost,
    parallel_tuple_cost, min_parallel_table_scan_size, min_parallel_index_scan_size,
    default_statistics_target, constraint_exclusion, cursor_tuple_fraction, from_collapse_limit,
    join_collapse_limit, plan_cache_mode, recursive_worktable_factor, jit, jit_above_cost,
    jit_inline_above_cost, jit_optimize_above_cost, geqo, geqo_threshold, geqo_effort,
    geqo_pool_size, geqo_generations, geqo_selection_bias, geqo_seed, enable_async_append,
    enable_bitmapscan, enable_gathermerge, enable_hashagg, enable_hashjoin,
    enable_incremental_sort, enable_indexonlyscan, enable_indexscan, enable_material,
    enable_memoize, enable_mergejoin, enable_nestloop, enable_parallel_append,
    enable_parallel_hash, enable_partition_pruning, enable_partitionwise_aggregate,
    enable_partitionwise_join, enable_seqscan, enable_sort, enable_tidscan,
    gin_pending_list_limit, autovacuum, autovacuum_max_workers, autovacuum_naptime,
    autovacuum_vacuum_threshold, autovacuum_vacuum_insert_threshold,
    autovacuum_analyze_threshold, autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor,
    autovacuum_freeze_max_age, autovacuum_multixact_freeze_max_age,
    autovacuum_vacuum_cost_delay, autovacuum_vacuum_cost_limit, vacuum_cost_delay,
    vacuum_cost_page_hit, vacuum_cost_page_miss, vacuum_cost_page_dirty, vacuum_cost_limit,
    vacuum_freeze_min_age, vacuum_freeze_table_age, vacuum_multixact_freeze_min_age,
    vacuum_multixact_freeze_table_age, vacuum_failsafe_age, vacuum_multixact_failsafe_age,
    track_activities, track_counts, track_io_timing, track_wal_io_timing, track_functions,
    track_activity_query_size, compute_query_id, log_min_duration_statement, log_checkpoints,
    log_connections, log_disconnections, log_lock_waits, log_temp_files,
    log_autovacuum_min_duration, pg_stat_statements.max, pg_stat_statements.track,
    pg_stat_statements.track_utility, pg_stat_statements.track_planning, pg_stat_statements.save
    TO :"operator";
GRANT pg_read_all_stats, pg_signal_backend TO :"operator";
