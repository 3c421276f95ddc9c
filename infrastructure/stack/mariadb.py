"""MariaDB: a private datadir under ``.stack/mariadb``, binary log in ROW format for CDC."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from infrastructure.stack._proc import (
    StackError,
    check_traversable,
    chown,
    chown_tree,
    process_alive,
    read_pid,
    run,
    spawn_detached,
    tcp_listening,
    terminate,
    write_if_changed,
)
from infrastructure.stack._service import AptRequirement, Service

OS_USER = "mysql"


def sql_literal(value: str) -> str:
    """Quote a string as a MariaDB literal (backslash escapes are on by default)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    """Quote a MariaDB identifier."""
    return "`" + value.replace("`", "``") + "`"


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if found:
            return found
    return None


class MariaDB(Service):
    name = "mariadb"
    ready_timeout_s = 120.0
    stop_timeout_s = 120.0

    @property
    def port(self) -> int:
        return self.settings.mariadb.port

    @property
    def log(self) -> Path:
        return self.dir / "mariadb.log"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def config(self) -> Path:
        return self.dir / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "mariadb.sock"

    @property
    def pidfile(self) -> Path:
        # Written by the launcher (root); mariadbd's own pid file is run/mariadbd.pid, because
        # after dropping to the mysql account it could not rewrite a root-owned file.
        return self.dir / "mariadbd.pid"

    @property
    def installed_marker(self) -> Path:
        # Written after mariadb-install-db succeeded: an interrupted one is redone from scratch.
        return self.dir / "datadir.initialized"

    def apt_requirements(self, *, for_install: bool = False) -> list[AptRequirement]:
        return [AptRequirement(("mariadb-server",)), AptRequirement(("mariadb-client",))]

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        if pid is None:
            pid = read_pid(self.dir / "run" / "mariadbd.pid")
        return pid if pid is not None and process_alive(pid, "mariadbd") else None

    def probe(self) -> bool:
        # Listening is checked without connecting: a bare TCP connect that closes without
        # logging in puts an "Aborted connection" warning in the log on every probe. The
        # provisioning step then logs in over TCP for real, as the app user.
        if not tcp_listening(self.port) or not self.socket.exists():
            return False
        try:
            out = self._sql("SELECT 1", timeout=10)
        except StackError:
            return False
        return out.strip() == "1"

    def launch(self) -> None:
        server = _binary("mariadbd", "mysqld")
        if server is None:
            raise StackError(self.name, "mariadbd is not installed", self.log)
        for sub in ("data", "run", "binlog"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        check_traversable(self.name, self.dir, OS_USER)
        write_if_changed(self.config, self._config_text())
        self.log.touch()
        if not self.installed_marker.exists():
            self._install_db()
        # Not the datadir or the binlog: they grow with use and were chowned at creation.
        for path in (self.dir, self.dir / "binlog", self.log):
            chown(path, OS_USER)
        chown_tree(self.dir / "run", OS_USER)
        (self.dir / "run" / "mariadbd.pid").unlink(missing_ok=True)
        # No --log-error: mariadbd then logs to stderr, which the launcher (still root) has
        # opened on mariadb.log, so the account switch cannot lock it out of its log.
        spawn_detached(
            self.name,
            [server, f"--defaults-file={self.config}"],
            log=self.log,
            pidfile=self.pidfile,
            cwd=self.dir,
        )

    def _install_db(self) -> None:
        install_db = _binary("mariadb-install-db", "mysql_install_db")
        if install_db is None:
            raise StackError(self.name, "mariadb-install-db is not installed", self.log)
        if self.data.exists():
            shutil.rmtree(self.data)  # a half-made datadir from an interrupted install
        for sub in ("data", "binlog"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir()
        chown_tree(self.dir, OS_USER)
        run(
            self.name,
            [
                install_db,
                f"--defaults-file={self.config}",
                f"--user={OS_USER}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            cwd=self.dir,
            log=self.log,
            timeout=300,
        )
        self.installed_marker.write_text("mariadb-install-db completed\n")

    def _config_text(self) -> str:
        return f"""\
# Written by infrastructure/stack on every start: change the generator, not this file.
[mysqld]
user = {OS_USER}
datadir = {self.data}
socket = {self.socket}
pid-file = {self.dir / "run" / "mariadbd.pid"}
port = {self.port}
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
max_connections = 200
innodb_buffer_pool_size = 512M
innodb_log_file_size = 256M
innodb_flush_log_at_trx_commit = 2
# Binary log in full ROW images: what Debezium's MySQL/MariaDB connector reads for CDC.
server_id = 1
log_bin = {self.dir / "binlog" / "mariadb-bin"}
binlog_format = ROW
binlog_row_image = FULL
expire_logs_days = 3

[client]
socket = {self.socket}
port = {self.port}
"""

    def _sql(self, sql: str, *, timeout: float = 60) -> str:
        client = _binary("mariadb", "mysql")
        if client is None:
            raise StackError(self.name, "the mariadb client is not installed", self.log)
        # root over the unix socket (unix_socket authentication: OS root is MariaDB root).
        return run(
            self.name,
            [client, f"--defaults-file={self.config}", "-uroot", "-N", "-B"],
            stdin=sql,
            timeout=timeout,
        )

    def provision(self) -> None:
        my = self.settings.mariadb
        db = sql_ident(my.database)
        # The app's databases: the configured one, and any named <database>_<suffix> so that
        # tests can create and drop their own isolated copies.
        pattern = sql_ident(my.database.replace("_", "\\_") + "\\_%")
        password = sql_literal(my.password.get_secret_value())
        statements = [
            # Account management stays out of the binlog, which Debezium reads: every `up`
            # re-applies these statements.
            "SET SESSION sql_log_bin = 0",
            f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4",
        ]
        for host in ("localhost", "%"):
            account = f"{sql_literal(my.user)}@{sql_literal(host)}"
            statements += [
                f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}",
                f"ALTER USER {account} IDENTIFIED BY {password}",
                f"GRANT ALL PRIVILEGES ON {db}.* TO {account}",
                f"GRANT ALL PRIVILEGES ON {pattern}.* TO {account}",
                # What Debezium's binlog connector needs (snapshot lock, binlog read, schema).
                "GRANT RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, SELECT"
                f" ON *.* TO {account}",
            ]
        self._sql(";\n".join(statements) + ";\n")
        self._check_app_login()

    def _check_app_login(self) -> None:
        """Log in over TCP as the app user and run SELECT 1, as the application will."""
        my = self.settings.mariadb
        client = _binary("mariadb", "mysql")
        if client is None:
            raise StackError(self.name, "the mariadb client is not installed", self.log)
        out = run(
            self.name,
            [
                client,
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-P",
                str(self.port),
                "-u",
                my.user,
                "-N",
                "-B",
                "-e",
                "SELECT 1",
                my.database,
            ],
            # MYSQL_PWD keeps the password off the command line (ps).
            env={**os.environ, "MYSQL_PWD": my.password.get_secret_value()},
            timeout=30,
        )
        if out.strip() != "1":
            raise StackError(
                self.name, f"SELECT 1 as {my.user} over TCP returned {out!r}", self.log
            )

    def shutdown(self, pid: int) -> None:
        # SIGTERM is a clean shutdown (InnoDB flushes, binlog closed).
        terminate(pid, "mariadbd", self.stop_timeout_s)
        self.pidfile.unlink(missing_ok=True)
