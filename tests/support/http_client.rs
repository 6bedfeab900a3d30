//! A tiny HTTP/1.1 client for the console tests: raw exchanges, one request, uploads as the
//! console's own page sends them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses one response from `bytes`; returns it and what follows it.
pub fn parse_response(bytes: &[u8]) -> (Resp, &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let rest = &bytes[end + 4..];
    let body = rest[..len.min(rest.len())].to_vec();
    (
        Resp {
            status,
            headers,
            body,
        },
        &rest[len.min(rest.len())..],
    )
}

/// Sends raw bytes on a new connection and reads until the server closes it.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Resp {
    exchange_waiting(addr, request, Duration::from_secs(20))
}

/// `exchange`, for an answer that may take up to `wait` (a calibration).
pub fn exchange_waiting(addr: SocketAddr, request: &[u8], wait: Duration) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out).0
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    exchange(addr, &request_bytes(addr, method, path, headers, body))
}

/// The bytes of an HTTP/1.1 request that closes its connection.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

pub fn origin(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub fn multipart(filename: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----kneescreenTestBoundary7MA4YWxk";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads like the console's own page does (same-origin).
pub fn upload(addr: SocketAddr, filename: &str, content: &[u8]) -> Resp {
    let (ct, body) = multipart(filename, content);
    let o = origin(addr);
    request(
        addr,
        "POST",
        "/api/analyze",
        &[
            ("Content-Type", &ct),
            ("Origin", &o),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &body,
    )
}
