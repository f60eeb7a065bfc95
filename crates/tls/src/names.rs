//! The names a peer certificate carries, for binding a verified caller to a tenant.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DNS names of a certificate's subjectAltName extension, or, when it has none, its
/// subject common name(s) — the rule for `[[tenants]] client_cert_names`. Empty when the
/// certificate cannot be parsed (it was verified by rustls before this is called).
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else { return Vec::new() };
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    if names.is_empty() {
        for cn in parsed.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_owned());
            }
        }
    }
    names
}
