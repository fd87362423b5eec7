//! Reading the Prometheus endpoint of a running `flocker-control` or `flocker-dataset-agent`:
//! where it listens (from its log), a plain-HTTP GET, the samples of a scrape, and which TCP
//! sockets a process listens on (to show the endpoint is off by default).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The address of the metrics endpoint, from the line the process logs once it is bound.
pub fn metrics_address_in(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let (_, after) = line.split_once(flocker_metrics::SERVING)?;
        after.strip_suffix(flocker_metrics::PATH)?.parse().ok()
    })
}

/// Waits up to 20 s for `log()` to give the metrics endpoint's address.
pub fn wait_for_metrics_address(log: impl Fn() -> String) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = log();
        if let Some(address) = metrics_address_in(&text) {
            return Ok(address);
        }
        if Instant::now() > deadline {
            return Err(format!("no metrics address was logged in 20 s; the log:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An answer over plain HTTP: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// `METHOD path` over plain HTTP/1.1, connection closed after; every wait bounded (5 s to
/// connect, 10 s for each read or write).
pub fn plain_request(address: SocketAddr, method: &str, path: &str) -> Result<PlainAnswer, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| e.to_string())?;
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("{method} {path}: {e}"))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| format!("{method} {path}: {e}"))?;
    let answer = String::from_utf8(answer).map_err(|e| format!("{method} {path}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: not an HTTP answer: {answer:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    let content_type = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type").then(|| value.trim().to_owned())
    });
    Ok(PlainAnswer { status, content_type, body: body.to_owned() })
}

/// One sample of a scrape: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What one `GET /metrics` answered.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Scrapes `address`; fails unless it answers 200 in the OpenMetrics text format.
    pub fn of(address: SocketAddr) -> Result<Self, String> {
        let answer = plain_request(address, "GET", flocker_metrics::PATH)?;
        if answer.status != 200
            || answer.content_type.as_deref() != Some(flocker_metrics::OPENMETRICS_TEXT)
        {
            return Err(format!("GET /metrics answered {answer:?}"));
        }
        Self::parse(&answer.body)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| sample(line).ok_or_else(|| format!("not a sample: {line:?}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { text: text.to_owned(), samples })
    }

    /// The value of the sample named `name` with exactly `labels`, if there is one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == wanted).map(|s| s.value)
    }

    /// [`Scrape::value`], or a failure naming the sample and showing the scrape.
    pub fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{}", self.text))
    }
}

/// `name{key="value",…} value`, the label values unescaped.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        let mut chars = inside.char_indices();
        let mut key = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '}' => break,
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
        rest = chars.as_str();
    }
    let value = rest.trim().split(' ').next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// The TCP addresses process `pid` listens on: its sockets (`/proc/<pid>/fd`) that its network
/// namespace's tables (`/proc/<pid>/net/tcp`, `tcp6`) show in state LISTEN.
pub fn listening_addresses(pid: u32) -> Vec<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            const LISTEN: &str = "0A";
            if *state == LISTEN && inodes.iter().any(|i| i == inode) {
                listening.extend(kernel_address(local));
            }
        }
    }
    listening.sort();
    listening
}

/// `0100007F:1F90` (tcp) or 32 hex digits and a port (tcp6): the kernel writes each 32-bit
/// word of the address in the machine's byte order.
fn kernel_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(8 * i..8 * i + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_keeps_braces_and_escapes_inside_its_label_values() {
        let scrape = Scrape::parse(
            "# TYPE x counter\nx_total{route=\"/v1/d/{id}\",q=\"a\\\"b\"} 3\ny 1.5\nz_bucket{le=\"+Inf\"} 2\n# EOF\n",
        )
        .unwrap();
        assert_eq!(scrape.value("x_total", &[("route", "/v1/d/{id}"), ("q", "a\"b")]), Some(3.0));
        assert_eq!(scrape.value("y", &[]), Some(1.5));
        assert_eq!(scrape.value("z_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(scrape.value("x_total", &[("route", "/v1/d/{id}")]), None);
    }

    #[test]
    fn kernel_addresses_read_as_the_kernel_writes_them_on_this_machine() {
        assert_eq!(kernel_address("0100007F:1F90"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(
            kernel_address("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn this_process_is_seen_listening_where_it_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        assert!(listening_addresses(std::process::id()).contains(&address));
        drop(listener);
        assert!(!listening_addresses(std::process::id()).contains(&address));
    }
}
