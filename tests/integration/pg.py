"""A real PostgreSQL for the tests (Debian's postgresql), started in a
temporary folder as the unprivileged user nobody, listening on a Unix
socket in that folder and on a loopback port, and loaded with the Chinook
sample database (examples/data/chinook). The service under test connects
as `reader`, a role that may only read (SELECT on chinook's tables), and
as `writer`, a role that may write anything (what an operator who skipped
the docs would give): the read-only transaction must hold on its own. The
tests check the data with the superuser's psql before and after."""
import glob
import os
import shutil
import subprocess
import tempfile
import time

from harness import REPO, free_port

CHINOOK = os.path.join(REPO, "examples", "data", "chinook", "Chinook_PostgreSql.sql")
READER_PASSWORD = "reader-password-not-secret"


def bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL: scripts/install-deps.sh installs it")
    return os.path.dirname(found[-1])


class Postgres:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nbcanvas-pg-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "nobody", "nogroup")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.bin = bindir()

    def as_nobody(self, *args, **kw):
        return subprocess.run(["runuser", "-u", "nobody", "--"] + list(args),
                              capture_output=True, text=True, check=True, **kw)

    def start(self):
        self.as_nobody(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                       "--locale=C.UTF-8")
        self.as_nobody(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-l",
                       os.path.join(self.dir, "log"), "-o",
                       "-k %s -p %d -c listen_addresses=127.0.0.1 -c fsync=off"
                       % (self.dir, self.port), "start")
        self.psql("postgres", "", file=CHINOOK)
        self.psql("chinook", """
            CREATE ROLE reader LOGIN PASSWORD '%s';
            CREATE ROLE writer LOGIN PASSWORD '%s';
            GRANT CONNECT, TEMPORARY ON DATABASE chinook TO writer;
            GRANT USAGE, CREATE ON SCHEMA public TO writer;
            GRANT ALL ON ALL TABLES IN SCHEMA public TO writer;
            GRANT CONNECT ON DATABASE chinook TO reader;
            GRANT USAGE ON SCHEMA public TO reader;
            GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;
            REVOKE CREATE ON SCHEMA public FROM PUBLIC;
            CREATE TABLE kinds (id int PRIMARY KEY, big bigint, price numeric(12, 4),
                ratio double precision, flag boolean, day date, at timestamptz,
                doc jsonb, label text);
            COMMENT ON TABLE kinds IS 'one row of each kind of value';
            COMMENT ON COLUMN kinds.price IS 'exact, in EUR';
            INSERT INTO kinds VALUES
              (1, 9007199254740993, 12345678.1234, 0.1, true, '2024-02-29',
               '2024-03-01 12:30:00+02', '{"a": [1, 2]}', 'x<y>&"z"'),
              (2, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL),
              (3, -5, -0.5, 'Infinity', false, '1999-12-31', '1999-12-31 23:59:59+00',
               '[]', '');
            GRANT SELECT ON kinds TO reader;
            GRANT ALL ON kinds TO writer;
            """ % (READER_PASSWORD, READER_PASSWORD))
        return self

    def psql(self, db, sql, file=None):
        args = [os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                self.dir, "-p", str(self.port), "-U", "postgres", "-d", db, "-At"]
        args += ["-f", file] if file else ["-c", sql]
        return self.as_nobody(*args).stdout

    def checksum(self):
        """Every table's row count and content digest: what a write of any
        kind would change."""
        tables = self.psql("chinook", "SELECT tablename FROM pg_tables WHERE schemaname = "
                           "'public' ORDER BY 1").split()
        parts = [self.psql("chinook", "SELECT count(*), md5(coalesce(string_agg(t::text, "
                           "',' ORDER BY t::text), '')) FROM %s t" % name).strip()
                 for name in tables]
        roles = self.psql("postgres", "SELECT string_agg(rolname || rolsuper::text || "
                          "rolcreaterole::text, ',' ORDER BY rolname) FROM pg_roles")
        return list(zip(tables, parts)) + [roles.strip()]

    def conninfo(self, socket_dir=False, user="reader"):
        host = self.dir if socket_dir else "127.0.0.1"
        return "host=%s port=%d dbname=chinook user=%s" % (host, self.port, user)

    def stop(self):
        try:
            self.as_nobody(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate",
                           "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
