//! TLS on the gRPC link between coordinators and media nodes, read from the
//! environment and checked before anything is bound: the node serves with a
//! certificate and, given a client CA, accepts only coordinators presenting
//! a certificate that CA signed (mutual TLS); a coordinator checks the nodes
//! against a CA and presents its own certificate.
//!
//! The files are PEM; the checks build the same rustls configurations the
//! gRPC library builds later (certificates parse, the key matches the
//! certificate, the CA bundle holds a certificate), so a wrong file is a
//! configuration error at start naming its variable, not a failed call.
//!
//! Calls only rustls (its parsing and config builders). Owns nothing.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The node's certificate chain (PEM).
pub const GRPC_TLS_CERT_FILE: &str = "THRONG_GRPC_TLS_CERT_FILE";
/// The node certificate's private key (PEM).
pub const GRPC_TLS_KEY_FILE: &str = "THRONG_GRPC_TLS_KEY_FILE";
/// CAs whose client certificates the node accepts (PEM): mutual TLS.
pub const GRPC_TLS_CLIENT_CA_FILE: &str = "THRONG_GRPC_TLS_CLIENT_CA_FILE";
/// CAs the coordinator checks media nodes' certificates against (PEM).
pub const NODE_TLS_CA_FILE: &str = "THRONG_NODE_TLS_CA_FILE";
/// The coordinator's client certificate chain (PEM).
pub const NODE_TLS_CERT_FILE: &str = "THRONG_NODE_TLS_CERT_FILE";
/// The coordinator client certificate's private key (PEM).
pub const NODE_TLS_KEY_FILE: &str = "THRONG_NODE_TLS_KEY_FILE";
/// The name media node certificates are checked for, instead of the host of
/// each node's address.
pub const NODE_TLS_SERVER_NAME: &str = "THRONG_NODE_TLS_SERVER_NAME";

/// A setting refused: the variable and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError {
    /// The variable at fault.
    pub var: &'static str,
    /// Why.
    pub reason: String,
}

impl TlsConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// A certificate chain and its key, checked to go together.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// Certificate chain, PEM.
    pub cert: Vec<u8>,
    /// Private key, PEM.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &"(hidden)")
            .finish()
    }
}

/// The media node's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// What the node presents.
    pub identity: Identity,
    /// When set, a caller must present a certificate one of these signed.
    pub client_ca: Option<Vec<u8>>,
}

/// The coordinator's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// What node certificates are checked against.
    pub ca: Vec<u8>,
    /// What the coordinator presents (required by nodes with a client CA).
    pub identity: Option<Identity>,
    /// The name node certificates must carry; `None`: each node's host.
    pub server_name: Option<String>,
}

fn file(env: &HashMap<String, String>, var: &'static str) -> Option<String> {
    env.get(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn read(var: &'static str, path: &str) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|e| TlsConfigError::new(var, format!("{path}: {e}")))
}

fn certificates(var: &'static str, path: &str) -> Result<Vec<u8>, TlsConfigError> {
    let pem = read(var, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsConfigError::new(var, format!("{path}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsConfigError::new(
            var,
            format!("{path}: no PEM certificate in it"),
        ));
    }
    Ok(pem)
}

fn roots(var: &'static str, pem: &[u8]) -> Result<Arc<rustls::RootCertStore>, TlsConfigError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsConfigError::new(var, e.to_string()))?;
        store
            .add(cert)
            .map_err(|e| TlsConfigError::new(var, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// A certificate/key pair from two variables: both or neither.
fn identity(
    env: &HashMap<String, String>,
    cert_var: &'static str,
    key_var: &'static str,
) -> Result<
    Option<(
        Identity,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    )>,
    TlsConfigError,
> {
    let (cert_path, key_path) = match (file(env, cert_var), file(env, key_var)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(TlsConfigError::new(
                key_var,
                format!("required with {cert_var}"),
            ))
        }
        (None, Some(_)) => {
            return Err(TlsConfigError::new(
                cert_var,
                format!("required with {key_var}"),
            ))
        }
        (Some(c), Some(k)) => (c, k),
    };
    let cert = certificates(cert_var, &cert_path)?;
    let key = read(key_var, &key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsConfigError::new(cert_var, e.to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        TlsConfigError::new(key_var, format!("{key_path}: no PEM private key: {e}"))
    })?;
    Ok(Some((Identity { cert, key }, chain, der)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The node's TLS from `THRONG_GRPC_TLS_*`; `None` when no certificate is
/// given (plain gRPC).
pub fn server_tls(env: &HashMap<String, String>) -> Result<Option<ServerTls>, TlsConfigError> {
    let client_ca = match file(env, GRPC_TLS_CLIENT_CA_FILE) {
        Some(path) => Some(certificates(GRPC_TLS_CLIENT_CA_FILE, &path)?),
        None => None,
    };
    let Some((identity, chain, key)) = identity(env, GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE)? else {
        if client_ca.is_some() {
            return Err(TlsConfigError::new(
                GRPC_TLS_CERT_FILE,
                format!("required with {GRPC_TLS_CLIENT_CA_FILE} (client certificates are checked over TLS)"),
            ));
        }
        return Ok(None);
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::new(GRPC_TLS_CERT_FILE, e.to_string()))?;
    let builder = match &client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots(GRPC_TLS_CLIENT_CA_FILE, ca)?,
                provider(),
            )
            .build()
            .map_err(|e| TlsConfigError::new(GRPC_TLS_CLIENT_CA_FILE, e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        TlsConfigError::new(
            GRPC_TLS_KEY_FILE,
            format!("does not go with {GRPC_TLS_CERT_FILE}: {e}"),
        )
    })?;
    Ok(Some(ServerTls {
        identity,
        client_ca,
    }))
}

/// The coordinator's TLS from `THRONG_NODE_TLS_*`; `None` when no CA is
/// given (plain gRPC).
pub fn client_tls(env: &HashMap<String, String>) -> Result<Option<ClientTls>, TlsConfigError> {
    let ca = match file(env, NODE_TLS_CA_FILE) {
        Some(path) => Some(certificates(NODE_TLS_CA_FILE, &path)?),
        None => None,
    };
    let identity = identity(env, NODE_TLS_CERT_FILE, NODE_TLS_KEY_FILE)?;
    let server_name = file(env, NODE_TLS_SERVER_NAME);
    let Some(ca) = ca else {
        if identity.is_some() || server_name.is_some() {
            let var = if identity.is_some() {
                NODE_TLS_CERT_FILE
            } else {
                NODE_TLS_SERVER_NAME
            };
            return Err(TlsConfigError::new(
                var,
                format!("used only with {NODE_TLS_CA_FILE} (TLS to the media nodes)"),
            ));
        }
        return Ok(None);
    };
    if let Some(name) = &server_name {
        rustls::pki_types::ServerName::try_from(name.as_str())
            .map_err(|e| TlsConfigError::new(NODE_TLS_SERVER_NAME, format!("{name:?}: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::new(NODE_TLS_CA_FILE, e.to_string()))?
        .with_root_certificates(roots(NODE_TLS_CA_FILE, &ca)?);
    let identity = match identity {
        Some((identity, chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsConfigError::new(
                    NODE_TLS_KEY_FILE,
                    format!("does not go with {NODE_TLS_CERT_FILE}: {e}"),
                )
            })?;
            Some(identity)
        }
        None => None,
    };
    Ok(Some(ClientTls {
        ca,
        identity,
        server_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_set_is_plain_grpc() {
        assert_eq!(server_tls(&env(&[])), Ok(None));
        assert_eq!(client_tls(&env(&[])), Ok(None));
    }

    #[test]
    fn halves_and_strays_are_refused_naming_the_missing_variable() {
        let e = server_tls(&env(&[(GRPC_TLS_CERT_FILE, "/x.pem")])).unwrap_err();
        assert_eq!(e.var, GRPC_TLS_KEY_FILE);
        let e = server_tls(&env(&[(GRPC_TLS_KEY_FILE, "/x.pem")])).unwrap_err();
        assert_eq!(e.var, GRPC_TLS_CERT_FILE);
        let e = client_tls(&env(&[(NODE_TLS_SERVER_NAME, "media-node")])).unwrap_err();
        assert_eq!(e.var, NODE_TLS_SERVER_NAME);
        let e = client_tls(&env(&[(NODE_TLS_CA_FILE, "/nonexistent/ca.pem")])).unwrap_err();
        assert_eq!(e.var, NODE_TLS_CA_FILE);
        assert!(e.reason.contains("/nonexistent/ca.pem"), "{}", e.reason);
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("throng-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client_tls(&env(&[(NODE_TLS_CA_FILE, path.to_str().unwrap())])).unwrap_err();
        assert_eq!(e.var, NODE_TLS_CA_FILE);
        assert!(e.reason.contains("no PEM certificate"), "{}", e.reason);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
