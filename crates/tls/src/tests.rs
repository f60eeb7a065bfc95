use exhook_testpki::{Ca, Leaf};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::*;

fn files(dir: &Path, ca: &Ca, leaf: &Leaf) -> ServerFiles {
    let f = ca.issue(leaf).write(dir, "server");
    ServerFiles { cert_file: f.cert, key_file: f.key, client_ca_file: Some(ca.write(dir, "ca")) }
}

#[test]
fn server_config_selects_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let f = files(dir.path(), &ca, &Leaf::new(&["gw.example.com"]));
    let config = server_config(&f, &[ALPN_H2]).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    // Whether client certificates are required is proven by real handshakes in the gateway's
    // tls tests (rustls keeps the verifier private).
    assert!(server_config(&ServerFiles { client_ca_file: None, ..f }, &[ALPN_H2]).is_ok());
}

#[test]
fn errors_name_the_key_and_the_file_never_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let a = ca.issue(&Leaf::new(&["a.example.com"])).write(dir.path(), "a");
    let b = ca.issue(&Leaf::new(&["b.example.com"])).write(dir.path(), "b");
    let key_pem = std::fs::read_to_string(&b.key).unwrap();

    let mismatch = certified_key(&a.cert, &b.key).unwrap_err();
    assert_eq!(mismatch.key, "key_file");
    assert!(mismatch.to_string().contains("does not match the certificate"), "{mismatch}");

    let missing = certified_key(&dir.path().join("nope.crt"), &a.key).unwrap_err();
    assert_eq!(missing.key, "cert_file");
    assert!(missing.to_string().contains("cannot read"), "{missing}");

    // A key where the certificate should be, and a certificate where the key should be.
    let swapped = certified_key(&b.key, &a.key).unwrap_err();
    assert_eq!(swapped.key, "cert_file");
    let swapped = certified_key(&a.cert, &a.cert).unwrap_err();
    assert_eq!(swapped.key, "key_file");
    for e in [&mismatch, &missing, &swapped] {
        let text = format!("{e} {e:?}");
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "key material in an error: {text}");
        }
    }
}

#[test]
fn client_config_needs_cert_and_key_together() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let a = ca.issue(&Leaf::new(&["a.example.com"])).write(dir.path(), "a");
    let ca_file = Some(ca.write(dir.path(), "ca"));
    assert!(client_config(&ClientFiles { ca_file: ca_file.clone(), ..Default::default() }).is_ok());
    let e = client_config(&ClientFiles { ca_file: ca_file.clone(), cert_file: Some(a.cert.clone()), key_file: None })
        .unwrap_err();
    assert_eq!(e.key, "key_file");
    let ok = client_config(&ClientFiles { ca_file, cert_file: Some(a.cert), key_file: Some(a.key) }).unwrap();
    assert_eq!(ok.alpn_protocols, vec![b"h2".to_vec()]);
}

#[test]
fn names_are_dns_sans_else_the_common_name() {
    let ca = Ca::new("test CA");
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let with_sans =
        ca.issue(&Leaf::new(&["emqx-a.example.com", "127.0.0.1", "emqx-b.example.com"]).common_name("cn-a"));
    assert_eq!(certificate_names(&der(&with_sans.cert_pem)), ["emqx-a.example.com", "emqx-b.example.com"]);
    let cn_only = ca.issue(&Leaf::new(&[]).common_name("emqx-factory-a"));
    assert_eq!(certificate_names(&der(&cn_only.cert_pem)), ["emqx-factory-a"]);
    assert!(certificate_names(&CertificateDer::from(vec![1, 2, 3])).is_empty());
}

#[test]
fn watched_rotates_on_content_change_and_keeps_the_old_on_a_bad_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.issue(&Leaf::new(&["gw.example.com"]).serial(1)).write(dir.path(), "server");
    let (cert, key) = (first.cert.clone(), first.key.clone());
    let build = {
        let (cert, key) = (cert.clone(), key.clone());
        move || certified_key(&cert, &key).map(|k| k.cert[0].clone())
    };
    let watched = Watched::new("test", vec![cert.clone(), key.clone()], build).unwrap();
    let serial1 = watched.current();
    assert!(matches!(watched.refresh(), Refresh::Unchanged));

    // A valid rotation.
    ca.issue(&Leaf::new(&["gw.example.com"]).serial(2)).write(dir.path(), "server");
    assert!(matches!(watched.refresh(), Refresh::Rotated));
    let serial2 = watched.current();
    assert_ne!(serial1, serial2);

    // Half a rotation: a new certificate with the old key. Kept, reported once.
    let other = ca.issue(&Leaf::new(&["gw.example.com"]).serial(3));
    std::fs::write(&cert, &other.cert_pem).unwrap();
    match watched.refresh() {
        Refresh::Kept(e) => assert!(e.to_string().contains("does not match"), "{e}"),
        r => panic!("expected Kept, got {r:?}"),
    }
    assert_eq!(watched.current(), serial2);
    assert!(matches!(watched.refresh(), Refresh::Unchanged), "a bad rotation is reported once");
    // The key arrives: the rotation completes.
    std::fs::write(&key, &other.key_pem).unwrap();
    assert!(matches!(watched.refresh(), Refresh::Rotated));
    assert_ne!(watched.current(), serial2);
}
