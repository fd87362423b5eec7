//! A stand-in for a surviving Flocker 1.x control service, as far as TLS goes: Python's `ssl`
//! (OpenSSL, as Twisted used) with X.509 v1 certificates, requiring a client certificate of the
//! cluster, answering `GET /v1/version` as Flocker 1.15 did, and other `GET`s with fixed
//! bodies, ignoring the query string as Flocker's routes did. Flocker itself can no longer be
//! installed; this is only what a client's TLS stack and its lookups meet.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::openssl::FlockerOneCertificates;

const SERVER: &str = r#"
import http.server, json, ssl, sys
cluster, certificate, key, answers = sys.argv[1:]
answers = json.loads(answers)
answers["/v1/version"] = {"flocker": "1.15.0"}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # As Flocker 1.x's routes did, the query string is ignored.
        path = self.path.split("?")[0]
        body = json.dumps(answers.get(path, {"description": "Not found."})).encode()
        self.send_response(200 if path in answers else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Configuration-Tag", "flocker-1-tag")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
context.load_verify_locations(cluster)
context.verify_mode = ssl.CERT_REQUIRED
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The stand-in, serving until dropped.
pub struct FlockerOneControlService {
    child: Child,
    pub address: SocketAddr,
}

impl FlockerOneControlService {
    pub fn start(certificates: &FlockerOneCertificates) -> Self {
        Self::serving(certificates, &serde_json::json!({}))
    }

    /// The stand-in answering each `GET` of a path of `answers` (an object: path → JSON body)
    /// with its body, whatever the query string, and the others with 404.
    pub fn serving(certificates: &FlockerOneCertificates, answers: &serde_json::Value) -> Self {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(&certificates.cluster)
            .arg(&certificates.control.0)
            .arg(&certificates.control.1)
            .arg(answers.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut port = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut port)
            .expect("the port");
        let address = format!("127.0.0.1:{}", port.trim()).parse().expect("a port number");
        Self { child, address }
    }
}

impl Drop for FlockerOneControlService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
