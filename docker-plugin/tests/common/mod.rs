//! A plugin process per node of a test cluster, called as Docker's daemon calls it (HTTP/1.1
//! POSTs of JSON on its Unix socket).

#![allow(dead_code)] // each test file uses its part

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flocker_testkit::LocalCluster;
use serde_json::Value;

/// A plugin process for one node; killed when dropped.
pub struct Plugin {
    child: Option<Child>,
    arguments: Vec<String>,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Plugin {
    /// Node `index`'s plugin on `socket` (its own directory's when None).
    pub fn start(cluster: &LocalCluster, index: usize, socket: Option<PathBuf>) -> Self {
        let directory = cluster.agents[index].directory.join("docker-plugin");
        let certificates = directory.join("certificates");
        fs::create_dir_all(&certificates).unwrap();
        let parameters = cluster.isolator_parameters(index);
        let text = |key: &str| parameters[key].as_str().unwrap().to_owned();
        for (from, to) in [
            ("cluster_certificate", "cluster.crt"),
            ("client_certificate", "plugin.crt"),
            ("client_key", "plugin.key"),
            ("node_certificate", "node.crt"),
        ] {
            fs::copy(text(from), certificates.join(to)).unwrap();
        }
        let socket = socket.unwrap_or_else(|| directory.join("flocker.sock"));
        let arguments = vec![
            format!("--control-service={}", text("control_service_host")),
            format!("--rest-api-port={}", text("control_service_port")),
            format!("--certificates-directory={}", certificates.display()),
            format!("--socket={}", socket.display()),
            format!("--state-dir={}", directory.join("state").display()),
            "--mount-timeout=30".to_owned(),
        ];
        let mut plugin = Self { child: None, arguments, socket, log: directory.join("plugin.log") };
        plugin.restart();
        plugin
    }

    pub fn restart(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flocker-docker-plugin"))
            .args(&self.arguments)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_call("/Plugin.Activate", "{}").is_err() {
            assert!(Instant::now() < deadline, "the plugin did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A POST as Docker sends it; the status and the JSON answer.
    pub fn try_call(&self, call: &str, body: &str) -> std::io::Result<(u16, Value)> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "POST {call} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
    }

    /// A call that must answer 200; its JSON.
    pub fn call(&self, call: &str, body: Value) -> Value {
        let (status, answer) = self.try_call(call, &body.to_string()).unwrap();
        assert_eq!(status, 200, "{call} {body}: {answer}\n{}", self.log());
        answer
    }

    /// A call that must succeed (`Err` empty).
    pub fn ok(&self, call: &str, body: Value) -> Value {
        let answer = self.call(call, body.clone());
        assert_eq!(answer["Err"], "", "{call} {body}: {answer}\n{}", self.log());
        answer
    }

    /// A call that must fail; its `Err`.
    pub fn refused(&self, call: &str, body: Value) -> String {
        let answer = self.call(call, body.clone());
        let error = answer["Err"].as_str().unwrap_or_default().to_owned();
        assert!(!error.is_empty(), "{call} {body} succeeded: {answer}");
        error
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.socket);
    }
}
