//! Certificates made the way Flocker's `flocker-ca` made them, as far as the `openssl` command
//! can: X.509 **v1** (no version set, hence no extensions), to pin down how they are treated.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A v1 certificate `CN=<common_name>` and its P-256 key in `directory`, signed by
/// `authority` (certificate, key) — or self-signed when that is `None`.
pub fn version_1_certificate(
    directory: &Path,
    file_stem: &str,
    common_name: &str,
    authority: Option<(&Path, &Path)>,
) -> (PathBuf, PathBuf) {
    certificate(directory, file_stem, common_name, authority, None)
}

/// The same, with X.509 v3 `extensions` in openssl's config syntax (`subjectAltName=…`):
/// openssl writes a v3 certificate as soon as there is one.
pub fn certificate(
    directory: &Path,
    file_stem: &str,
    common_name: &str,
    authority: Option<(&Path, &Path)>,
    extensions: Option<&str>,
) -> (PathBuf, PathBuf) {
    let key = directory.join(format!("{file_stem}.key"));
    let request = directory.join(format!("{file_stem}.csr"));
    let certificate = directory.join(format!("{file_stem}.crt"));
    let subject = format!("/CN={common_name}/OU=00000000-0000-4000-8000-000000000000");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path(&key),
        "-out",
        path(&request),
        "-subj",
        &subject,
    ]);
    let mut sign =
        vec!["x509", "-req", "-in", path(&request), "-days", "30", "-out", path(&certificate)];
    match authority {
        Some((ca_certificate, ca_key)) => {
            sign.extend(["-CA", path(ca_certificate), "-CAkey", path(ca_key), "-set_serial", "7"])
        }
        None => sign.extend(["-signkey", path(&key)]),
    }
    let extensions_file = directory.join(format!("{file_stem}.cnf"));
    if let Some(extensions) = extensions {
        std::fs::write(&extensions_file, format!("[leaf]\n{extensions}\n"))
            .expect("write extensions");
        sign.extend(["-extensions", "leaf", "-extfile", path(&extensions_file)]);
    }
    openssl(&sign);
    (certificate, key)
}

/// The X.509 version `openssl` reads in a certificate (1 or 3).
pub fn x509_version(certificate: &Path) -> u32 {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", path(certificate)])
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&output.stdout);
    let line =
        text.lines().find(|l| l.trim_start().starts_with("Version:")).expect("a Version line");
    line.trim_start()
        .trim_start_matches("Version:")
        .trim()
        .split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a version number")
}

fn openssl(arguments: &[&str]) {
    let output =
        Command::new("openssl").args(arguments).output().expect("run openssl (is it installed?)");
    assert!(
        output.status.success(),
        "openssl {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A cluster's certificates as Flocker 1.x's `flocker-ca` left them, as far as `openssl` can
/// make them: X.509 v1 throughout, RSA keys in the traditional PKCS#1 form.
pub struct FlockerOneCertificates {
    pub cluster: PathBuf,
    pub control: (PathBuf, PathBuf),
    pub user: (PathBuf, PathBuf),
}

pub fn flocker_1_certificates(directory: &Path) -> FlockerOneCertificates {
    let rsa_key = |name: &str| {
        let key = directory.join(format!("{name}.key"));
        openssl(&["genrsa", "-traditional", "-out", path(&key), "2048"]);
        key
    };
    let subject = |cn: &str| format!("/CN={cn}/OU=00000000-0000-4000-8000-000000000000");
    let (cluster_key, cluster) = (rsa_key("cluster"), directory.join("cluster.crt"));
    let cluster_request = directory.join("cluster.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        path(&cluster_key),
        "-subj",
        &subject("flocker-1-cluster"),
        "-out",
        path(&cluster_request),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&cluster_request),
        "-signkey",
        path(&cluster_key),
        "-days",
        "30",
        "-out",
        path(&cluster),
    ]);
    let leaf = |name: &str, cn: &str| {
        let (key, request, certificate) = (
            rsa_key(name),
            directory.join(format!("{name}.csr")),
            directory.join(format!("{name}.crt")),
        );
        openssl(&[
            "req",
            "-new",
            "-key",
            path(&key),
            "-subj",
            &subject(cn),
            "-out",
            path(&request),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&request),
            "-CA",
            path(&cluster),
            "-CAkey",
            path(&cluster_key),
            "-set_serial",
            "3",
            "-days",
            "30",
            "-out",
            path(&certificate),
        ]);
        (certificate, key)
    };
    FlockerOneCertificates {
        control: leaf("control-service", "control-service"),
        user: leaf("plugin", "user-plugin"),
        cluster,
    }
}

/// How a client of Python's `ssl` (OpenSSL, the TLS stack of Flocker's own clients) connects:
/// the ALPN protocols it offers, whether it stops at TLS 1.2 (as Flocker 1.x's Python 2.7 and
/// OpenSSL 1.0 did), and the HTTP version of its request.
#[derive(Debug, Clone, Copy)]
pub struct PythonClient<'a> {
    pub alpn: &'a [&'a str],
    pub tls_1_2: bool,
    pub http_version: &'a str,
}

impl Default for PythonClient<'_> {
    fn default() -> Self {
        Self { alpn: &[], tls_1_2: false, http_version: "HTTP/1.1" }
    }
}

/// What such a client saw: the answer's status line, the protocol ALPN settled on, if any,
/// and the TLS version (`TLSv1.3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonAnswer {
    pub status_line: String,
    pub alpn: Option<String>,
    pub tls_version: String,
}

/// Connects to `address` with `client`, verifying the server as `control-service` against
/// `cluster` and presenting `identity` (certificate, key) if given, and sends `GET <path>`.
/// `Err` is Python's account of the failure.
pub fn python_request(
    address: std::net::SocketAddr,
    cluster: &Path,
    identity: Option<(&Path, &Path)>,
    client: PythonClient<'_>,
    path: &str,
) -> Result<PythonAnswer, String> {
    const CLIENT: &str = r#"
import socket, ssl, sys
host, port, cluster, certificate, key, alpn, tls_1_2, http_version, path = sys.argv[1:]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(cluster)
if certificate:
    context.load_cert_chain(certificate, key)
if alpn:
    context.set_alpn_protocols(alpn.split(","))
if tls_1_2 == "yes":
    context.maximum_version = ssl.TLSVersion.TLSv1_2
try:
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="control-service") as tls:
            request = f"GET {path} {http_version}\r\nHost: control-service\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            answer = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                answer += chunk
            lines = answer.decode(errors="replace").splitlines()
            print(lines[0] if lines else "")
            print(tls.selected_alpn_protocol() or "")
            print(tls.version())
except (ssl.SSLError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
"#;
    let (certificate, key) = match identity {
        Some((certificate, key)) => (certificate.as_os_str(), key.as_os_str()),
        None => ("".as_ref(), "".as_ref()),
    };
    let output = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .arg(cluster)
        .args([certificate, key])
        .arg(client.alpn.join(","))
        .arg(if client.tls_1_2 { "yes" } else { "no" })
        .args([client.http_version, path])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    match (output.status.success(), lines.next(), lines.next(), lines.next()) {
        (true, Some(status_line), Some(alpn), Some(tls_version)) if !status_line.is_empty() => {
            Ok(PythonAnswer {
                status_line: status_line.to_owned(),
                alpn: (!alpn.is_empty()).then(|| alpn.to_owned()),
                tls_version: tls_version.to_owned(),
            })
        }
        (true, ..) => Err("the server closed the connection without answering".to_owned()),
        (false, ..) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
    }
}
