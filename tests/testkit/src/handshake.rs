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

/// The same request from Python's `ssl` module (OpenSSL), the TLS stack of Flocker's own
/// clients: unlike rustls, it will present an X.509 v1 certificate.
pub fn openssl_client_request(
    address: SocketAddr,
    cluster: &Path,
    certificate: &Path,
    key: &Path,
    path: &str,
) -> Result<String, String> {
    const CLIENT: &str = r#"
import socket, ssl, sys
host, port, cluster, certificate, key, path = sys.argv[1:]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(cluster)
context.load_cert_chain(certificate, key)
try:
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="control-service") as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: control-service\r\nConnection: close\r\n\r\n".encode())
            answer = tls.recv(4096).decode(errors="replace")
            print(answer.splitlines()[0] if answer else "")
except (ssl.SSLError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .args([cluster, certificate, key])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let status_line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && !status_line.is_empty() {
        Ok(status_line)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
