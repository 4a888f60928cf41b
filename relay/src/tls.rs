//! Certificates: loading the relay's (rustls with the ring provider, named explicitly so another
//! crate enabling a second provider cannot make the process default ambiguous), and `relay
//! gen-certs`, which makes a lab CA and a server certificate with rcgen.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The rustls provider every TLS config of the relay (and its tests) uses: ring, which builds
/// with a C compiler only (aws-lc-rs would add minutes of build on the lab machines). rustls
/// 0.23.48 marks it deprecated because it lacks post-quantum key exchange (X25519MLKEM768);
/// X25519 is what the lab needs.
///
/// Key exchange: X25519 first. rustls 0.23.48 puts P-384 first in ring's defaults, whose generic
/// code cost ~2 ms of CPU per handshake here (perf: `bn_mul_mont_nohw` in `nistz384`), the whole
/// of a cold session on loopback; X25519 costs a few tens of microseconds.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(p)
}

/// How to make certificates, for error messages.
pub fn how_to_make(dir: &str) -> String {
    format!(
        "make a lab CA and a certificate with `relay gen-certs --dir {dir} --name <relay's DNS \
         name> --ip <relay's address>`, then set cert = \"{dir}/server.pem\" and \
         key = \"{dir}/server.key\" (devices and browsers trust {dir}/ca.pem)"
    )
}

/// Loads a PEM certificate chain and its private key into a server config (HTTP/1.1 only).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = load_certs(cert).with_context(|| format!("`cert` = {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("`key` = {}: cannot read", key.display()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .with_context(|| format!("`key` = {}: not PEM", key.display()))?
        .with_context(|| format!("`key` = {}: no private key in it", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("`cert` and `key` do not belong together")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumption skips the certificate signature and chain check on a device's next session;
    // the default cache (256) would hold a few devices' tickets only.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(cfg))
}

/// Loads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// A client config trusting the CA in `ca` (PEM): what a device (and the tests) use.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).context("CA certificate")?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The files `gen-certs` writes.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate (give it to devices and browsers).
    pub ca: PathBuf,
    /// The server certificate followed by the CA's.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "homenet lab relay CA");
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Makes (or reuses) a CA in `dir` (`ca.pem`, `ca.key`) and a certificate for `name` and `ips`
/// signed by it (`<file>.pem` with the chain, `<file>.key`). Running it again for a second relay
/// with the same `dir` and another `file` keeps the CA, so one `ca.pem` trusts every relay.
pub fn gen_certs(dir: &Path, file: &str, name: &str, ips: &[IpAddr]) -> Result<Generated> {
    std::fs::create_dir_all(dir).with_context(|| format!("--dir {}", dir.display()))?;
    let ca_key_path = dir.join("ca.key");
    let ca_path = dir.join("ca.pem");
    let ca_key = if ca_key_path.exists() && ca_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)?;
        KeyPair::from_pem(&pem).with_context(|| format!("{}", ca_key_path.display()))?
    } else {
        let k = KeyPair::generate()?;
        write_private(&ca_key_path, &k.serialize_pem())?;
        k
    };
    // The same key and name make an equivalent issuer: certificates signed now verify under
    // the ca.pem written the first time.
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
    if !ca_path.exists() {
        std::fs::write(&ca_path, ca_cert.pem())?;
    }
    let mut p = CertificateParams::new(vec![name.to_string()])
        .with_context(|| format!("--name {name}: not a valid DNS name"))?;
    for ip in ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
    let cert_path = dir.join(format!("{file}.pem"));
    let key_path = dir.join(format!("{file}.key"));
    let ca_pem = std::fs::read_to_string(&ca_path)?;
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_pem))?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(Generated {
        ca: ca_path,
        cert: cert_path,
        key: key_path,
    })
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    Ok(())
}
