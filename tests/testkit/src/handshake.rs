//! A bare TLS client, for tests of what the service accepts: present any certificate, or none,
//! and see whether a request gets an answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Connects to `address`, verifying the server as `control-service` against `cluster`,
/// presenting `identity` (certificate, key) if given, and sends `GET <path>`. `Ok` is the
/// answer's status line; `Err` says how the connection failed.
pub fn tls_handshake(
    address: SocketAddr,
    cluster: &Path,
    identity: Option<(&Path, &Path)>,
    path: &str,
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for certificate in
        flocker_api::certificates::load_certificates(cluster).map_err(|e| e.to_string())?
    {
        roots.add(certificate).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => {
            let chain = flocker_api::certificates::load_certificates(certificate)
                .map_err(|e| e.to_string())?;
            let key =
                flocker_api::certificates::load_private_key(key).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
        }
    };
    let name = ServerName::try_from("control-service").map_err(|e| e.to_string())?;
    let connection = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let socket =
        TcpStream::connect_timeout(&address, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(connection, socket);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: control-service\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    match stream.read_to_string(&mut answer) {
        Ok(_) | Err(_) if !answer.is_empty() => {
            Ok(answer.lines().next().unwrap_or_default().to_owned())
        }
        Ok(_) => Err("the server closed the connection without answering".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}
