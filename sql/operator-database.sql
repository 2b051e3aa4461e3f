-- What the operator's login (sql/operator-role.sql) needs in each database it manages. Run as a
-- superuser in that database:
--
--   psql -d idp -v operator=perf_operator -f sql/operator-database.sql
--
--   pg_reload_conf()              makes ALTER SYSTEM values take effect (a function is granted
--                                 per database)
--   pg_file_settings              reads postgresql.auto.conf to compare what is recorded
--   CONNECT, CREATE               its own schema perf_operator (the tenant-limits mirror)

GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO :"operator";
GRANT SELECT ON pg_catalog.pg_file_settings TO :"operator";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_all_file_settings() TO :"operator";
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), :'operator')
\gexec
