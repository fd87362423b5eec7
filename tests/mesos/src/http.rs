//! Just enough HTTP/1.1 for the v1 scheduler API on plain TCP: a GET or POST whose answer is
//! read whole, and a POST whose answer is a stream of chunks (SUBSCRIBE) read as it comes.
//! Every connect, write and read has a timeout, except the stream's reads, which end when the
//! stream is shut down.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A status line and headers longer than this are not Mesos.
const MOST_HEADER_BYTES: usize = 64 * 1024;
/// A chunk or an answer bigger than this is not what a test expects.
const MOST_BODY_BYTES: usize = 64 * 1024 * 1024;

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// GETs `path` and reads the whole answer.
pub fn get(to: SocketAddr, path: &str) -> Result<Answer, String> {
    read_answer(to, path, connect_and_send(to, "GET", path, "", &[])?)
}

/// POSTs `body` (JSON) to `path` and reads the whole answer.
pub fn post(
    to: SocketAddr,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Result<Answer, String> {
    read_answer(to, path, connect_and_send(to, "POST", path, body, extra)?)
}

fn read_answer(to: SocketAddr, path: &str, stream: TcpStream) -> Result<Answer, String> {
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let mut body = Vec::new();
    if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while let Some(chunk) = read_chunk(&mut reader)? {
            body.extend(chunk);
        }
    } else {
        let length = header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok());
        match length {
            Some(length) if length <= MOST_BODY_BYTES => {
                body.resize(length, 0);
                reader.read_exact(&mut body).map_err(|e| format!("{to}{path}: body: {e}"))?;
            }
            Some(length) => return Err(format!("{to}{path}: a body of {length} bytes")),
            None => {
                reader
                    .take(MOST_BODY_BYTES as u64)
                    .read_to_end(&mut body)
                    .map_err(|e| format!("{to}{path}: body: {e}"))?;
            }
        }
    }
    Ok(Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A response being streamed: its head, then chunks as they come.
pub struct Streamed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    /// Shuts the connection down from another thread, ending a blocked read.
    pub closer: TcpStream,
}

impl Streamed {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next chunk of the body; None at its end (or when shut down).
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        read_chunk(&mut self.reader)
    }

    /// What is left of an answer that is not a stream (an error's text).
    pub fn rest(mut self) -> String {
        self.reader.get_ref().set_read_timeout(Some(TIMEOUT)).ok();
        let mut rest = Vec::new();
        let _ = (&mut self.reader).take(64 * 1024).read_to_end(&mut rest);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// POSTs `body` and returns as soon as the answer's head has arrived.
pub fn post_streaming(to: SocketAddr, path: &str, body: &str) -> Result<Streamed, String> {
    let stream = connect_and_send(to, "POST", path, body, &[])?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let closer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    // From here the master speaks when it has something (a heartbeat at least every 15 s).
    reader.get_ref().set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(Streamed { status, headers, reader, closer })
}

pub fn shut(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

fn connect_and_send(
    to: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Result<TcpStream, String> {
    let mut stream =
        TcpStream::connect_timeout(&to, TIMEOUT).map_err(|e| format!("connect to {to}: {e}"))?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    request += body;
    stream.write_all(request.as_bytes()).map_err(|e| format!("send to {to}{path}: {e}"))?;
    Ok(stream)
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Result<(u16, Vec<(String, String)>), String> {
    let mut status_line = String::new();
    read_line(reader, &mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let mut headers = Vec::new();
    let mut total = status_line.len();
    loop {
        let mut line = String::new();
        read_line(reader, &mut line)?;
        total += line.len();
        if total > MOST_HEADER_BYTES {
            return Err("the answer's headers are too long".to_owned());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok((status, headers));
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

fn read_line(reader: &mut impl BufRead, line: &mut String) -> Result<(), String> {
    let read =
        reader.take(MOST_HEADER_BYTES as u64).read_line(line).map_err(|e| format!("read: {e}"))?;
    if read == 0 {
        return Err("the connection closed".to_owned());
    }
    Ok(())
}

/// One chunk of a chunked body; None after the last.
fn read_chunk(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line).map_err(|e| format!("read: {e}"))? == 0 {
        return Ok(None);
    }
    let size_text = size_line.trim().split(';').next().unwrap_or_default();
    let size = usize::from_str_radix(size_text, 16)
        .map_err(|_| format!("not a chunk size: {size_line:?}"))?;
    if size > MOST_BODY_BYTES {
        return Err(format!("a chunk of {size} bytes"));
    }
    let mut chunk = vec![0; size];
    reader.read_exact(&mut chunk).map_err(|e| format!("read a chunk: {e}"))?;
    let mut end = String::new();
    reader.read_line(&mut end).map_err(|e| format!("read: {e}"))?;
    Ok((size > 0).then_some(chunk))
}
