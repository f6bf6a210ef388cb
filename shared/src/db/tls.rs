//! TLS of PostgreSQL connections, with rustls and ring: libpq's `sslmode` and
//! `sslrootcert`, of which tokio-postgres itself knows only `disable`, `prefer` and `require`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`: whether a connection is encrypted, and what of the server is verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, plain otherwise; the server is not verified. libpq's default.
    #[default]
    Prefer,
    /// TLS or no connection. The server is not verified, unless a CA bundle is given: then, as in
    /// libpq, its certificate must chain to it (`verify-ca`).
    Require,
    /// TLS with a server certificate that chains to the CA bundle, whatever host it names.
    VerifyCa,
    /// TLS with a server certificate that chains to the CA bundle and names the host connected to.
    VerifyFull,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => bail!("sslmode must be disable, prefer, require, verify-ca or verify-full, not `{other}`"),
        })
    }
}

impl From<SslMode> for TlsMode {
    fn from(mode: SslMode) -> Self {
        match mode {
            SslMode::Disable => Self::Disable,
            SslMode::Prefer => Self::Prefer,
            // `Require` and whatever stricter mode tokio-postgres may learn.
            _ => Self::Require,
        }
    }
}

/// How connections are secured: the mode, and the CA bundle (`sslrootcert`, PEM) that the
/// verifying modes check the server's certificate against; in AWS, the RDS bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub mode: TlsMode,
    pub root_cert: Option<PathBuf>,
}

impl Tls {
    /// What tokio-postgres must do with our connector: never use it, use it when the server
    /// offers TLS, or refuse a server that does not.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// The rustls connector for these settings. Reads the CA bundle now, so a missing or empty
    /// bundle fails at cold start rather than at the first connection.
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.root_cert) {
            (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => bail!(
                "sslmode={} needs the CA bundle to verify the server against (sslrootcert, or \
                 DATABASE_SSLROOTCERT: in AWS the RDS bundle)",
                self.mode
            ),
            (TlsMode::Disable | TlsMode::Prefer, _) | (TlsMode::Require, None) => {
                Arc::new(EncryptOnly(provider.signature_verification_algorithms))
            }
            (mode, Some(bundle)) => {
                let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(bundle)?), provider.clone())
                    .build()
                    .context("building the server certificate verifier")?;
                match mode {
                    TlsMode::VerifyFull => chain,
                    _ => Arc::new(AnyHostName(chain)),
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// Every certificate of the PEM file at `path`.
fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let unreadable = || format!("reading the CA bundle {}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).with_context(unreadable)? {
        roots.add(cert.with_context(unreadable)?).with_context(unreadable)?;
    }
    ensure!(!roots.is_empty(), "the CA bundle {} holds no certificate", path.display());
    Ok(roots)
}

/// `prefer` and `require` without a CA bundle: any certificate, as libpq accepts it, but the
/// handshake must still be signed by that certificate's key.
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain is verified, the host name is not. webpki checks the chain before
/// the name, so a name mismatch means the chain was good.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
