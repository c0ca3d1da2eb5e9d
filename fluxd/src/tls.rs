//! TLS for fluxd: a configured certificate, or a local CA and server certificate created in the
//! data directory on first start. TLS 1.2 and 1.3 only (rustls offers nothing older).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The generated CA clients should trust, when fluxd made its own.
    pub ca: Option<PathBuf>,
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    flux_core::files::replace_private(path, contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Uses `<data_dir>/tls/{server.crt,server.key}` if present, else creates a CA and a server
/// certificate for `localhost`, `127.0.0.1`, `::1` and `sans`.
pub fn ensure_local_ca(data_dir: &Path, sans: &[String]) -> Result<(TlsFiles, bool)> {
    let dir = data_dir.join("tls");
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: Some(dir.join("ca.crt")),
    };
    // It holds the CA's and the server's private keys: owner-only even in a data dir that
    // others may read (an existing one is narrowed).
    flux_core::files::create_private_dir(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    if files.cert.exists() && files.key.exists() {
        return Ok((files, false));
    }

    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "FluxForge local CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(sans.iter().cloned());
    names.dedup();
    let server_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fluxd");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &ca)?;

    std::fs::write(files.ca.as_ref().expect("set above"), ca.pem())?;
    write_private(&dir.join("ca.key"), &ca.key().serialize_pem())?;
    write_private(&files.key, &server_key.serialize_pem())?;
    std::fs::write(&files.cert, server.pem())?;
    Ok((files, true))
}

/// A rustls server configuration for the certificate and key in PEM files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", files.cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading private key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
