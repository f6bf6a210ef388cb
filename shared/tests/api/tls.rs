//! TLS to a PostgreSQL of the test's own, with certificates made by the test: `verify-full`
//! encrypts and accepts only a certificate from its CA for the host it connects to, and
//! refuses a server that offers no TLS.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use shared::db::{ConnectOptions, Db};
use uuid::Uuid;

#[tokio::test]
async fn verify_full_encrypts_and_accepts_only_a_certificate_from_its_ca_for_the_host() {
    let ca = TestCa::new("the database's CA");
    let cluster = Cluster::start(Some(ca.server_certificate("127.0.0.1")));
    let bundle = cluster.write("ca.pem", &ca.pem);
    let other_bundle = cluster.write("other-ca.pem", &TestCa::new("another CA").pem);

    let verified = cluster.url("127.0.0.1", "verify-full", Some(&bundle));
    assert!(encrypted_through_a_pool(&verified).await.unwrap(), "the functions' pool is encrypted");
    assert!(encrypted_alone(&verified).await.unwrap(), "the migration runner's connection is encrypted");

    let error = encrypted_alone(&cluster.url("127.0.0.1", "verify-full", Some(&other_bundle))).await.unwrap_err();
    assert!(format!("{error:#}").contains("invalid peer certificate: UnknownIssuer"), "{error:#}");

    // The certificate names 127.0.0.1 only: the same server as `localhost` is not verified...
    let error = encrypted_alone(&cluster.url("localhost", "verify-full", Some(&bundle))).await.unwrap_err();
    assert!(format!("{error:#}").contains("certificate not valid for name \"localhost\""), "{error:#}");
    // ...unless only the chain is asked for, or nothing is verified.
    assert!(encrypted_alone(&cluster.url("localhost", "verify-ca", Some(&bundle))).await.unwrap());
    assert!(encrypted_alone(&cluster.url("localhost", "require", None)).await.unwrap());
}

#[tokio::test]
async fn verify_full_refuses_a_server_that_offers_no_tls() {
    let cluster = Cluster::start(None);
    let bundle = cluster.write("ca.pem", &TestCa::new("the database's CA").pem);

    let error = encrypted_through_a_pool(&cluster.url("127.0.0.1", "verify-full", Some(&bundle))).await.unwrap_err();
    assert!(format!("{error:#}").contains("server does not support TLS"), "{error:#}");
    let error = encrypted_alone(&cluster.url("127.0.0.1", "verify-full", Some(&bundle))).await.unwrap_err();
    assert!(format!("{error:#}").contains("sslmode=verify-full"), "{error:#}");

    assert!(!encrypted_alone(&cluster.url("127.0.0.1", "prefer", None)).await.unwrap(), "prefer falls back to plain");
}

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Whether a connection of a pool over `url` (as the functions make them) is encrypted.
async fn encrypted_through_a_pool(url: &str) -> anyhow::Result<bool> {
    let db = Db::connect(url, 1)?;
    let mut connection = db.connection().await?;
    let tx = connection.begin(Uuid::new_v4()).await?;
    Ok(tx.query_one(SSL_IN_USE, &[]).await?.get(0))
}

/// Whether one connection to `url` (as the migration runner and devctl make it) is encrypted.
async fn encrypted_alone(url: &str) -> anyhow::Result<bool> {
    let client = url.parse::<ConnectOptions>()?.connect().await?;
    Ok(client.query_one(SSL_IN_USE, &[]).await?.get(0))
}

/// A certificate authority of one test.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `name` and its private key, in PEM.
    fn server_certificate(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

/// A PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1; stopped and
/// removed when dropped, so also when the test fails.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// Serves TLS with `certificate` (and its key) when given, plain connections only otherwise.
    fn start(certificate: Option<(String, String)>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { dir: std::env::temp_dir().join(format!("cs-tls-{}", Uuid::new_v4().simple())), port };
        let dir = cluster.dir.to_str().unwrap();
        run(postgres_tool("initdb").args(["-D", dir, "-U", "postgres", "--auth=trust", "--no-sync"]));
        let ssl = match certificate {
            Some((cert, key)) => {
                // PostgreSQL reads a key only if its own user owns it and nobody else may read it.
                let owner = fs::metadata(&cluster.dir).unwrap();
                for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                    let path = cluster.write(name, &pem);
                    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
                }
                "on"
            }
            None => "off",
        };
        let settings = format!("-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl={ssl}");
        let log = cluster.dir.join("server.log");
        let started = postgres_tool("pg_ctl")
            .args(["-D", dir, "-l", log.to_str().unwrap(), "-w", "-o", &settings, "start"])
            .output()
            .unwrap();
        assert!(started.status.success(), "PostgreSQL did not start: {}", fs::read_to_string(&log).unwrap_or_default());
        cluster
    }

    fn url(&self, host: &str, sslmode: &str, bundle: Option<&Path>) -> String {
        let bundle = bundle.map(|path| format!("&sslrootcert={}", path.display())).unwrap_or_default();
        format!("postgres://postgres@{host}:{}/postgres?connect_timeout=5&sslmode={sslmode}{bundle}", self.port)
    }

    /// Writes a file of the cluster's directory that only its owner may read.
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        file.write_all(content.as_bytes()).unwrap();
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.dir.to_str().unwrap();
        let _ = postgres_tool("pg_ctl").args(["-D", dir, "-m", "immediate", "-w", "stop"]).output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL program from `PG_BIN_DIR` (set by `make test`) or `PATH`, run as the
/// `postgres` user when the tests run as root (PostgreSQL refuses root).
fn postgres_tool(name: &str) -> Command {
    let program = postgres_bin_dir().join(name);
    let as_root = fs::metadata("/proc/self").map(|me| me.uid() == 0).unwrap_or(false);
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return dir.into();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.is_file())
        .and_then(|initdb| Some(fs::canonicalize(initdb).ok()?.parent()?.to_path_buf()))
        .expect("initdb is neither in PG_BIN_DIR nor on PATH: install PostgreSQL 15 (`make test` finds it)")
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}
