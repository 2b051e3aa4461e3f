"""The index planner, without a database: declared indexes + catalog + running jobs -> phases
and jobs. Every crash point of a build is a catalog state here, and each must plan its way back
to one valid owned index."""
from __future__ import annotations

from dataclasses import replace

from perf_operator.api.profile import Index
from perf_operator.postgres import building_summary
from perf_operator.postgres.connect import APPLICATION_NAME
from perf_operator.postgres.indexes import (BuildFailure, BuildIndex, BuildProgress, CancelBackend, Catalog,
                                            DropIndex, DropReason, IndexDefinition, Marker,
                                            MarkIndex, ObservedIndex, Phase, RefusedIndex,
                                            RenameIndex, definition_from_spec, plan_indexes,
                                            temporary_name)

OWNER = "team-a/platform"


def index(**fields) -> IndexDefinition:
    spec = {"name": "idx_users_tenant_email", "table": "users",
            "columns": [{"column": "tenant_id"}, {"column": "email"}], **fields}
    definition = definition_from_spec(Index.model_validate(spec))
    assert isinstance(definition, IndexDefinition), definition
    return definition


def observed(name: str, *, valid: bool = True, marker: Marker | None = None,
             comment: str | None = None, builder: int | None = None,
             application: str | None = None, table: str = "users") -> ObservedIndex:
    return ObservedIndex(schema="public", name=name, table=table, valid=valid,
                         comment=marker.render() if marker else comment, size_bytes=8192,
                         scans=3, builder_pid=builder, builder_application=application)


def ours(definition: IndexDefinition, name: str | None = None, **kw) -> ObservedIndex:
    return observed(name or definition.name,
                    marker=Marker(OWNER, definition.name, definition.definition_hash), **kw)


def plan(declared, *indexes: ObservedIndex, busy=None, failures=None, prune=False, adoption=None,
         now=100.0, withdrawn=()):
    catalog = Catalog(indexes={i.key: i for i in indexes}, adoption=adoption or {})
    return plan_indexes(OWNER, declared, catalog, busy=busy or {}, failures=failures or {},
                        prune=prune, now=now, withdrawn=withdrawn)


def steps_of(result):
    return [step for job in result.jobs for step in job.steps]


def temp(definition: IndexDefinition) -> str:
    return temporary_name(OWNER, definition.name)


def test_new_index_is_built_under_a_temporary_name_marked_then_renamed():
    d = index()
    result = plan([d])
    assert [r.phase for r in result.reports] == [Phase.PENDING]
    assert steps_of(result) == [
        BuildIndex(d, temp(d)),
        MarkIndex("public", temp(d), Marker(OWNER, d.name, d.definition_hash)),
        RenameIndex("public", temp(d), d.name),
    ]


def test_converged_index_is_ready_and_plans_nothing():
    d = index()
    result = plan([d], ours(d))
    assert result.jobs == ()
    report = result.reports[0]
    assert (report.phase, report.size_bytes, report.scans, report.definition_hash) == (
        Phase.READY, 8192, 3, d.definition_hash)


def test_changed_definition_builds_the_new_one_before_dropping_the_old():
    old, new = index(), index(where="deleted_at IS NULL")
    assert old.definition_hash != new.definition_hash
    result = plan([new], ours(old))
    assert steps_of(result) == [
        BuildIndex(new, temp(new)),
        MarkIndex("public", temp(new), Marker(OWNER, new.name, new.definition_hash)),
        DropIndex("public", new.name, DropReason.REPLACED),
        RenameIndex("public", temp(new), new.name),
    ]


def test_reformatting_an_expression_does_not_change_the_definition():
    assert index(where="deleted_at is null").definition_hash == \
        index(where="  deleted_at   IS NULL -- active rows").definition_hash


def test_invalid_owned_index_is_dropped_and_rebuilt():
    d = index()
    result = plan([d], ours(d, valid=False))
    assert result.reports[0].phase is Phase.INVALID
    assert steps_of(result)[0] == DropIndex("public", d.name, DropReason.LEFTOVER)
    assert isinstance(steps_of(result)[1], BuildIndex)


def test_crash_during_build_unmarked_invalid_temporary_is_dropped_and_rebuilt():
    d = index()
    result = plan([d], observed(temp(d), valid=False))
    assert steps_of(result)[0] == DropIndex("public", temp(d), DropReason.LEFTOVER)
    assert isinstance(steps_of(result)[1], BuildIndex)


def test_crash_after_build_before_marker_temporary_is_rebuilt():
    d = index()
    result = plan([d], observed(temp(d), valid=True))
    assert [type(s).__name__ for s in steps_of(result)] == [
        "DropIndex", "BuildIndex", "MarkIndex", "RenameIndex"]


def test_crash_after_marker_reuses_the_built_temporary_and_only_swaps():
    old, new = index(), index(unique=True)
    result = plan([new], ours(old), ours(new, temp(new)))
    assert steps_of(result) == [DropIndex("public", new.name, DropReason.REPLACED),
                                RenameIndex("public", temp(new), new.name)]


def test_crash_during_drop_of_the_old_index_finishes_the_swap():
    old, new = index(), index(unique=True)
    result = plan([new], ours(old, valid=False), ours(new, temp(new)))
    assert steps_of(result) == [DropIndex("public", new.name, DropReason.LEFTOVER),
                                RenameIndex("public", temp(new), new.name)]


def test_temporary_of_a_stale_definition_is_dropped_first():
    old, new = index(), index(unique=True)
    result = plan([new], ours(old, temp(new)))
    assert steps_of(result)[0] == DropIndex("public", temp(new), DropReason.LEFTOVER)
    assert isinstance(steps_of(result)[1], BuildIndex)


def test_ready_index_with_a_leftover_temporary_drops_only_the_leftover():
    d = index()
    result = plan([d], ours(d), observed(temp(d), valid=False))
    assert result.reports[0].phase is Phase.READY
    assert steps_of(result) == [DropIndex("public", temp(d), DropReason.LEFTOVER)]


def test_build_left_running_by_a_dead_operator_process_is_cancelled():
    d = index()
    result = plan([d], observed(temp(d), valid=False, builder=4242,
                                application=APPLICATION_NAME))
    assert result.reports[0].phase is Phase.BUILDING
    assert steps_of(result) == [CancelBackend(4242, "public", temp(d))]


def test_build_by_someone_else_is_waited_for_not_cancelled():
    d = index()
    result = plan([d], observed(d.name, valid=False, builder=4242, application="psql"))
    assert result.reports[0].phase is Phase.PENDING
    assert result.jobs == ()


def test_running_job_reports_its_phase_and_plans_nothing():
    d = index()
    result = plan([d], observed(temp(d), valid=False, builder=99, application=APPLICATION_NAME),
                  busy={("public", d.name): Phase.BUILDING})
    assert result.reports[0].phase is Phase.BUILDING
    assert result.jobs == ()


def test_unowned_index_of_the_same_name_is_a_conflict_and_untouched():
    d = index()
    result = plan([d], observed(d.name, comment="created by the DBA"))
    assert result.reports[0].phase is Phase.CONFLICT
    assert "adopt" in result.reports[0].message
    assert result.jobs == ()


def test_index_of_another_profile_is_a_conflict_even_with_adopt():
    d = index(adopt=True)
    other = Marker("team-b/other", d.name, d.definition_hash)
    result = plan([d], observed(d.name, marker=other))
    assert result.reports[0].phase is Phase.CONFLICT
    assert "team-b/other" in result.reports[0].message
    assert result.jobs == ()


def test_adoption_waits_for_the_definition_check():
    d = index(adopt=True)
    result = plan([d], observed(d.name))
    assert result.reports[0].phase is Phase.PENDING
    assert result.jobs == ()


def test_adoption_with_equal_definition_writes_the_marker_only():
    d = index(adopt=True)
    result = plan([d], observed(d.name), adoption={("public", d.name): None})
    assert steps_of(result) == [MarkIndex("public", d.name,
                                          Marker(OWNER, d.name, d.definition_hash))]


def test_adoption_with_a_different_definition_is_a_conflict():
    d = index(adopt=True)
    result = plan([d], observed(d.name), adoption={("public", d.name): "its definition is X"})
    assert result.reports[0].phase is Phase.CONFLICT
    assert "its definition is X" in result.reports[0].message
    assert result.jobs == ()


def test_adoption_of_an_invalid_index_is_refused():
    d = index(adopt=True)
    result = plan([d], observed(d.name, valid=False), adoption={})
    assert result.reports[0].phase is Phase.CONFLICT
    assert result.jobs == ()


def test_removed_index_is_dropped_with_prune_policy_delete():
    d = index()
    result = plan([], ours(d), prune=True)
    assert steps_of(result) == [DropIndex("public", d.name, DropReason.PRUNED)]


def test_removed_index_is_released_with_prune_policy_retain():
    d = index()
    result = plan([], ours(d), prune=False)
    assert steps_of(result) == [MarkIndex("public", d.name, None)]
    assert result.released == ("public." + d.name,)


def test_leftovers_of_a_removed_index_are_dropped_whatever_the_policy():
    d = index()
    result = plan([], ours(d, temp(d)), ours(d, "idx_other", valid=False), prune=False)
    assert sorted(steps_of(result), key=str) == sorted([
        DropIndex("public", temp(d), DropReason.LEFTOVER),
        DropIndex("public", "idx_other", DropReason.LEFTOVER)], key=str)


def test_other_profiles_and_unmarked_indexes_are_never_touched():
    d = index()
    result = plan([], observed("idx_dba"), observed("idx_b", marker=Marker("x/y", "idx_b", "h")),
                  observed(temp(d), valid=False), prune=True)
    assert result.jobs == ()


def test_failed_build_backs_off_but_still_cleans_up():
    d = index()
    failure = BuildFailure(d.definition_hash, "could not create unique index", 1, retry_at=160)
    result = plan([d], observed(temp(d), valid=False),
                  failures={("public", d.name): failure}, now=100)
    report = result.reports[0]
    assert (report.phase, report.last_error) == (Phase.FAILED, "could not create unique index")
    assert steps_of(result) == [DropIndex("public", temp(d), DropReason.LEFTOVER)]
    retried = plan([d], failures={("public", d.name): failure}, now=200)
    assert isinstance(steps_of(retried)[0], BuildIndex)


def test_a_failure_of_an_older_definition_does_not_hold_back_a_new_one():
    d = index(unique=True)
    failure = BuildFailure(index().definition_hash, "boom", 3, retry_at=1e9)
    result = plan([d], failures={("public", d.name): failure})
    assert result.reports[0].phase is Phase.PENDING
    assert result.reports[0].last_error is None
    assert isinstance(steps_of(result)[0], BuildIndex)


def test_refused_spec_is_failed_and_executes_nothing():
    refused = definition_from_spec(Index.model_validate(
        {"name": "idx_x", "table": "users", "columns": [{"column": "id"}],
         "where": "1=1); DROP TABLE users; --"}))
    assert isinstance(refused, RefusedIndex)
    result = plan([refused])
    assert result.reports[0].phase is Phase.FAILED
    assert "where" in result.reports[0].last_error
    assert result.jobs == ()


def test_injection_in_expressions_is_refused_by_the_definition():
    for column in ({"expression": "lower(email)); DROP TABLE users; --"},
                   {"expression": "(SELECT password FROM users LIMIT 1)"}):
        refused = definition_from_spec(Index.model_validate(
            {"name": "idx_x", "table": "users", "columns": [column]}))
        assert isinstance(refused, RefusedIndex), column


def test_create_statement_quotes_identifiers_and_uses_the_normalised_expressions():
    d = index(columns=[{"column": "tenant_id"},
                       {"expression": "lower(email)", "order": "Desc", "nulls": "Last"}],
              include=["id"], unique=True, where="deleted_at is null")
    text = d.create_statement("idx_new").as_string(None)
    assert text == ('CREATE UNIQUE INDEX CONCURRENTLY "idx_new" ON "public"."users" USING '
                    '"btree" ("tenant_id", (lower(email)) DESC NULLS LAST) INCLUDE ("id") '
                    'WHERE (deleted_at IS NULL)')


def test_gin_with_operator_class():
    d = index(method="gin", columns=[{"column": "name", "opclass": "public.gin_trgm_ops"}])
    assert 'USING "gin" ("name" "public"."gin_trgm_ops")' in \
        d.create_statement("i").as_string(None)


def test_temporary_names_fit_postgres_and_differ_per_owner():
    long = "i" * 63
    assert len(temporary_name(OWNER, long)) == 63
    assert temporary_name(OWNER, "idx") != temporary_name("other/profile", "idx")
    assert temporary_name(OWNER, long) != temporary_name(OWNER, long[:-1] + "j")


def test_marker_round_trip_and_foreign_comments():
    marker = Marker(OWNER, "idx", "abc")
    assert Marker.parse(marker.render()) == marker
    assert Marker.parse("perf-operator:not json") is None
    assert Marker.parse("a DBA's note") is None
    assert Marker.parse(None) is None


def test_unmarked_temporary_of_a_withdrawn_index_is_dropped():
    """Killed mid-build, then the index left the spec: its last status still names it."""
    d = index()
    leftover = observed(temp(d), valid=False)
    assert plan([], leftover).jobs == ()
    result = plan([], leftover, withdrawn=[d.name])
    assert steps_of(result) == [DropIndex("public", temp(d), DropReason.LEFTOVER)]
    running = observed(temp(d), valid=False, builder=7, application=APPLICATION_NAME)
    assert steps_of(plan([], running, withdrawn=[d.name])) == [
        CancelBackend(7, "public", temp(d))]
    assert plan([], observed(d.name), withdrawn=[d.name]).jobs == ()  # the final: not ours


def test_an_index_the_optimizer_added_is_marked_automatic():
    from dataclasses import replace

    d = replace(index(), automatic=True)
    assert d.definition_hash == index().definition_hash  # declaring it later rebuilds nothing
    marker = Marker(OWNER, d.name, d.definition_hash, automatic=True)
    assert MarkIndex("public", temp(d), marker) in steps_of(plan([d]))
    assert '"automatic":true' in marker.render()
    assert Marker.parse(marker.render()) == marker
    plain = Marker(OWNER, d.name, d.definition_hash)
    assert "automatic" not in plain.render()  # markers written before are unchanged
    assert Marker.parse(plain.render()).automatic is False
    assert [r.phase for r in plan([d], ours(d)).reports] == [Phase.READY]


def test_a_running_build_reports_its_progress_from_the_catalog():
    d = index()
    building = replace(observed(temp(d), valid=False, builder=4242, application=APPLICATION_NAME),
                       progress=BuildProgress("building index: scanning table", blocks_done=300,
                                              blocks_total=1000))
    result = plan([d], building, busy={("public", d.name): Phase.BUILDING})
    report = result.reports[0]
    assert result.jobs == () and report.phase is Phase.BUILDING
    assert report.progress.percent == 12  # 2 % waiting for writers + 50 % * 0.7 * 0.3
    assert report.as_status()["progress"] == {
        "phase": "building index: scanning table", "blocksDone": 300, "blocksTotal": 1000,
        "tuplesDone": 0, "tuplesTotal": 0, "percent": 12}
    assert report.message == ("building 12% (building index: scanning table, "
                              "300/1000 blocks)")
    assert building_summary(result.reports) == f"{d.name} 12%"


def test_build_progress_only_grows_through_the_phases_to_100():
    rows = [("initializing", 0, 0, 0, 0),
            ("waiting for writers before build", 0, 0, 0, 0),
            ("building index: scanning table", 0, 100, 0, 0),
            ("building index: scanning table", 100, 100, 0, 0),
            ("building index: sorting live tuples", 0, 0, 0, 0),
            ("building index: loading tuples in tree", 0, 0, 50, 100),
            ("waiting for writers before validation", 0, 0, 0, 0),
            ("index validation: scanning index", 5, 10, 0, 0),
            ("index validation: sorting tuples", 0, 0, 0, 0),
            ("index validation: scanning table", 10, 10, 0, 0),
            ("waiting for old snapshots", 0, 0, 0, 0),
            ("waiting for readers before dropping", 0, 0, 0, 0)]
    percents = [BuildProgress(*row).percent for row in rows]
    assert percents == sorted(percents) and percents[0] == 0 and 95 <= percents[-1] <= 100
    assert BuildProgress("something new in PostgreSQL 19").percent == 0


def test_progress_is_only_reported_while_building():
    d = index()
    final = replace(ours(d), progress=BuildProgress("building index: scanning table"))
    assert plan([d], final).reports[0].progress is None  # Ready
