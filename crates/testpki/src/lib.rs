//! A throw-away PKI for tests: a CA that issues server and client certificates (valid,
//! expired, with chosen names and serials) and writes them as PEM files. Test use only:
//! keys are generated fresh per test and never leave its temporary directory.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber, date_time_ymd,
};

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub cert_pem: String,
}

/// An issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The serial number it was issued with.
    pub serial: u64,
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// subjectAltNames: DNS names, or IP addresses written as such.
    pub sans: Vec<String>,
    /// The subject CN.
    pub common_name: String,
    /// The serial number.
    pub serial: u64,
    /// Valid only in the year 2000.
    pub expired: bool,
}

impl Leaf {
    /// A certificate for `sans` (the first is also the CN), serial 1, valid now.
    pub fn new(sans: &[&str]) -> Leaf {
        Leaf {
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            common_name: sans.first().map(|s| (*s).to_owned()).unwrap_or_else(|| "test".to_owned()),
            serial: 1,
            expired: false,
        }
    }

    /// The same with this serial.
    pub fn serial(mut self, serial: u64) -> Leaf {
        self.serial = serial;
        self
    }

    /// The same, expired.
    pub fn expired(mut self) -> Leaf {
        self.expired = true;
        self
    }

    /// The same with this CN.
    pub fn common_name(mut self, cn: &str) -> Leaf {
        self.common_name = cn.to_owned();
        self
    }
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// Issues a certificate usable for both server and client authentication.
    pub fn issue(&self, leaf: &Leaf) -> Issued {
        let mut params = CertificateParams::new(leaf.sans.clone()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, leaf.common_name.as_str());
        params.serial_number = Some(SerialNumber::from(leaf.serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if leaf.expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2000, 12, 31);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("issue");
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial: leaf.serial }
    }

    /// Writes the CA certificate to `dir/<name>.crt`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, &self.cert_pem).expect("write CA");
        path
    }
}

/// Paths of a written certificate and key.
#[derive(Debug, Clone)]
pub struct Files {
    /// `<name>.crt`.
    pub cert: PathBuf,
    /// `<name>.key`.
    pub key: PathBuf,
}

impl Issued {
    /// Writes `dir/<name>.crt` and `dir/<name>.key`.
    pub fn write(&self, dir: &Path, name: &str) -> Files {
        let files = Files { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&files.cert, &self.cert_pem).expect("write cert");
        std::fs::write(&files.key, &self.key_pem).expect("write key");
        files
    }
}
