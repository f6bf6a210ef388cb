//! devctl against a PostgreSQL cluster of the test's own, one that checks passwords.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use uuid::Uuid;

use super::*;

/// A private PostgreSQL cluster that trusts its Unix socket, asks for a SCRAM password on TCP
/// and logs every statement it receives; stopped and removed on drop. (The shared development
/// server trusts every local connection, so a login there proves nothing about a password.)
struct PasswordCluster {
    directory: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PasswordCluster {
    fn start() -> Self {
        let bin = postgres_bin_dir();
        let directory = std::env::temp_dir().join(format!("devctl-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&directory).unwrap();
        if running_as_root() {
            run(Command::new("chown").arg("postgres").arg(&directory));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { directory, bin, port };
        run(cluster
            .as_postgres("initdb")
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-D"])
            .arg(cluster.data()));
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=all",
            cluster.port,
            cluster.directory.display()
        );
        run(cluster
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(cluster.data())
            .arg("-l")
            .arg(cluster.log())
            .args(["-w", "-o", &options, "start"]));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.directory.join("data")
    }

    fn log(&self) -> PathBuf {
        self.directory.join("server.log")
    }

    /// The superuser over the trusted socket.
    fn admin(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host_path(&self.directory).port(self.port).user("postgres").dbname("postgres");
        config
    }

    /// `user` with `password` over TCP, where the server checks it.
    fn over_tcp(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user(user).password(password).dbname("postgres");
        config
    }

    fn server_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log()).unwrap()).into_owned()
    }

    fn as_postgres(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PasswordCluster {
    fn drop(&mut self) {
        let stopped = self.as_postgres("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "stop"]).output();
        if stopped.is_ok() {
            std::fs::remove_dir_all(&self.directory).ok();
        }
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|process| process.uid() == 0)
}

/// Where `initdb` and `pg_ctl` are: on the PATH, or the newest `/usr/lib/postgresql/<n>/bin`.
fn postgres_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file());
    let packaged = || {
        let root = Path::new("/usr/lib/postgresql");
        let newest = std::fs::read_dir(root)
            .ok()?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()?;
        Some(root.join(newest.to_string()).join("bin"))
    };
    on_path.or_else(packaged).expect("this test needs PostgreSQL's server programs (initdb, pg_ctl)")
}

fn run(command: &mut Command) {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn the_runtime_password_is_sent_as_a_scram_verifier_and_opens_a_scram_login() {
    let cluster = PasswordCluster::start();
    let admin = admin_client(&cluster.admin().into()).await.unwrap();
    admin.batch_execute("CREATE ROLE customer_app LOGIN").await.unwrap();
    let password = "plain-Text-password-4f9c";

    set_runtime_password(&cluster.admin().into(), password).await.unwrap();

    let log = cluster.server_log();
    assert!(!log.contains(password), "the plaintext reached the server:\n{log}");
    assert!(log.contains("ALTER ROLE customer_app PASSWORD 'SCRAM-SHA-256$4096:"), "{log}");
    let stored: String =
        admin.query_one("SELECT rolpassword FROM pg_authid WHERE rolname = 'customer_app'", &[]).await.unwrap().get(0);
    assert!(log.contains(&stored), "the server stored the verifier as sent");
    let (client, connection) = cluster
        .over_tcp("customer_app", password)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("customer_app logs in with its password over SCRAM");
    tokio::spawn(connection);
    let role: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(role, "customer_app");
    let refused = cluster.over_tcp("customer_app", "another-password").connect(tokio_postgres::NoTls).await;
    assert!(refused.is_err(), "the server checks the password");
}
