//! exhook-gateway's TLS: PEM files → rustls configurations, rotation on change, peer names.
//!
//! * [`server_config`]: the EMQX-facing (and admin) side. TLS 1.3 and 1.2, ALPN `h2` selected
//!   (EMQX 4.4's gun falls back to HTTP/1.1 otherwise), client certificates REQUIRED when a
//!   client CA is given (mTLS).
//! * [`client_config`]: the provider side. Host name verification is always on; the trust
//!   anchors are `ca_file` or the system's root store; an optional client certificate.
//! * [`Watched`]: a configuration rebuilt when its files change on disk (cert-manager,
//!   Kubernetes Secret symlink swaps). The files are compared by content, so a swap of the
//!   `..data` symlink counts even when every timestamp stays. A rotation to files that do not
//!   load keeps the previous configuration and reports why.
//! * [`certificate_names`]: the names a verified peer certificate carries (DNS SANs, else the
//!   subject CN), which bind a caller to a tenant.
//!
//! The crypto provider is *ring*: it builds with a C compiler alone, where aws-lc-rs may want
//! cmake and nasm, which a fresh machine does not have. Key material is never formatted into
//! an error or a log line: errors name the file and what is wrong with it.
#![warn(missing_docs)]

mod accept;
mod names;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use accept::{
    ConnectionLimit, ConnectionPermit, HandshakeFailure, LimitEvent, accept_tcp, accept_tls, accept_tls_limited,
};
pub use names::certificate_names;
pub use rustls;
pub use rustls_pki_types::ServerName;
pub use tokio_rustls;
pub use watch::{Refresh, Watched};

/// ALPN for gRPC: HTTP/2 only.
pub const ALPN_H2: &[u8] = b"h2";

/// What is wrong with a TLS file. `key` is the configuration key that names the file
/// (`cert_file`, `key_file`, `client_ca_file`, `ca_file`), so that callers can prefix it with
/// their table (`server.tls.cert_file: ...`).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {path}: {problem}")]
pub struct TlsError {
    /// The configuration key naming the file.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong (never the file's content).
    pub problem: String,
}

impl TlsError {
    fn new(key: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
        TlsError { key, path: path.to_owned(), problem: problem.into() }
    }

    /// The problem without the key (for `key: reason` lists that name the key themselves).
    pub fn reason(&self) -> String {
        format!("{}: {}", self.path.display(), self.problem)
    }
}

/// The files of a TLS server (`[server.tls]`, `[tenants.tls]`, `[admin.tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, RSA or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, a client certificate signed by one of them is required.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerFiles {
    /// Every file, for change detection.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert_file.clone(), self.key_file.clone()];
        v.extend(self.client_ca_file.clone());
        v
    }
}

/// The files of a TLS client (`[providers.tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientFiles {
    /// PEM CA certificates to trust; `None`: the system's root store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mTLS to the server), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl ClientFiles {
    /// Every file, for change detection.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.ca_file.iter().chain(&self.cert_file).chain(&self.key_file).cloned().collect()
    }
}

/// The process's crypto provider (ring), shared by every configuration.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(key, path, format!("cannot read: {e}")))
}

/// The certificates of a PEM file (at least one).
pub fn load_certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(key, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(TlsError::new(key, path, "holds no certificate (expected -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, RSA or SEC1).
pub fn load_private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    // Never echo the content: the error says only what kind of problem it is.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let what = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "holds no private key (expected PKCS#8, RSA or EC PEM)".to_owned()
            }
            other => format!("not a PEM private key ({})", pem_error_kind(&other)),
        };
        TlsError::new(key, path, what)
    })
}

fn pem_error_kind(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a section has no END line",
        E::IllegalSectionStart { .. } => "a malformed BEGIN line",
        E::Base64Decode(_) => "bad base64",
        E::Io(_) => "read error",
        E::NoItemsFound => "no items",
        _ => "malformed",
    }
}

fn root_store(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(key, path)? {
        roots.add(cert).map_err(|e| TlsError::new(key, path, format!("not a usable CA certificate ({e})")))?;
    }
    Ok(roots)
}

/// A certificate chain with its private key, checked to belong together.
pub fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = load_certificates("cert_file", cert_file)?;
    let key = load_private_key("key_file", key_file)?;
    let certified = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::new(
            "key_file",
            key_file,
            format!("does not match the certificate in {} (a key of another certificate?)", cert_file.display()),
        ),
        other => TlsError::new("key_file", key_file, format!("unusable private key ({other})")),
    })?;
    Ok(certified)
}

/// A server configuration for gRPC: TLS 1.3 and 1.2, ALPN `alpn` (the first the client also
/// offers is selected), client certificates required when `client_ca_file` is set.
pub fn server_config(files: &ServerFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let certified = certified_key(&files.cert_file, &files.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::new("cert_file", &files.cert_file, format!("TLS versions: {e}")))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let roots = root_store("client_ca_file", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::new("client_ca_file", ca, format!("cannot verify clients with it ({e})")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration for gRPC providers: ALPN `h2`, host name verification always on,
/// trust anchors from `ca_file` or the system's root store, optional client certificate.
pub fn client_config(files: &ClientFiles) -> Result<ClientConfig, TlsError> {
    let roots = match &files.ca_file {
        Some(ca) => root_store("ca_file", ca)?,
        None => system_roots(),
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().map_err(|e| {
        let path = files.ca_file.clone().unwrap_or_else(|| PathBuf::from("<system root store>"));
        TlsError::new("ca_file", &path, format!("no usable trust anchors ({e})"))
    })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::new("ca_file", Path::new("<client>"), format!("TLS versions: {e}")))?
        .with_webpki_verifier(verifier);
    let mut config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let certified = certified_key(cert, key)?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), None) => return Err(TlsError::new("key_file", cert, "cert_file is set without key_file")),
        (None, Some(key)) => return Err(TlsError::new("cert_file", key, "key_file is set without cert_file")),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The system's trust anchors (`/etc/ssl/certs` and friends); empty when there are none, and
/// then every server is refused as signed by an unknown CA.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "system root store: a certificate could not be loaded");
    }
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("system root store is empty: set ca_file for https providers");
    }
    roots
}

/// What a failed client handshake means, in words an operator can act on (unknown CA,
/// expired, name mismatch, ...). `server_name` is the name that was verified.
pub fn describe_handshake_error(e: &std::io::Error, server_name: &str) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return format!("TLS handshake: {e}");
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "TLS: unknown CA: the provider's certificate is not signed by a trusted CA (ca_file)".to_owned()
            }
            C::Expired | C::ExpiredContext { .. } => "TLS: the provider's certificate has expired".to_owned(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "TLS: the provider's certificate is not valid yet".to_owned()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "TLS: name mismatch: the provider's certificate is not valid for {server_name:?} (set tls.server_name or fix the certificate's SANs)"
            ),
            C::Revoked => "TLS: the provider's certificate is revoked".to_owned(),
            other => format!("TLS: invalid provider certificate ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("TLS: the provider refused the handshake ({alert:?}; a client certificate missing or not trusted?)")
        }
        rustls::Error::NoApplicationProtocol => "TLS: the provider does not speak HTTP/2 (no ALPN h2)".to_owned(),
        other => format!("TLS handshake: {other}"),
    }
}

#[cfg(test)]
mod tests;
