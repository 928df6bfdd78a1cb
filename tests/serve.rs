//! `wgsl-cnn serve`: what it answers, on raw requests (no client normalises the paths): the
//! page and the data set's four files, and a 404 for everything else, path traversal in any
//! spelling included; loopback unless told otherwise.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wgsl-cnn");

struct Server {
    child: Child,
    addr: String,
    stderr: std::thread::JoinHandle<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str]) -> Server {
    let subset = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/mnist-subset");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--offline", "--data-dir", subset])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_else(|| panic!("serve printed {line:?}")).to_string();
    Server { child, addr, stderr }
}

/// (status code, body) of a raw request line.
fn get(addr: &str, request_line: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "{request_line}\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, resp[split + 4..].to_vec())
}

#[test]
fn serve_answers_the_page_and_the_data_and_nothing_else() {
    let server = serve(&[]);
    let a = &server.addr;
    assert!(a.starts_with("127.0.0.1:"), "bound to {a}, not loopback");
    let (code, body) = get(a, "GET / HTTP/1.1");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("<script type=\"module\" src=\"main.js\">"));
    assert_eq!(get(a, "GET /main.js HTTP/1.1").0, 200);
    let (code, index) = get(a, "GET /data/ HTTP/1.1");
    assert_eq!(code, 200);
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index["dataset"], "mnist");
    assert_eq!(index["files"].as_array().unwrap().len(), 4);
    let name = "train-labels-idx1-ubyte.gz";
    let (code, body) = get(a, &format!("GET /data/{name} HTTP/1.1"));
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/mnist-subset/train-labels-idx1-ubyte.gz")).unwrap());
    assert_eq!(get(a, "GET /data/IDX-MD5SUMS HTTP/1.1").0, 200);
    assert_eq!(get(a, &format!("HEAD /data/{name} HTTP/1.1")), (200, Vec::new()));
    assert_eq!(get(a, "POST / HTTP/1.1").0, 405);
    for bad in [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E%2FCargo.toml",
        "/%2e%2e%5cCargo.toml",
        "/data/../../Cargo.toml",
        "/data/..%2f..%2fCargo.toml",
        "/tests/../../Cargo.toml",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/C:%5cWindows%5cwin.ini",
        "/.git/config",
        "/data/README.md",
        "/data/train-labels-idx1-ubyte",
        "/data/nested/train-labels-idx1-ubyte.gz",
        "/%00index.html",
        "/%zz",
        "/missing.js",
        "http://example.com/etc/passwd",
        "*",
    ] {
        let (code, body) = get(a, &format!("GET {bad} HTTP/1.1"));
        assert_eq!(code, 404, "GET {bad} answered {code}: {}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn serve_says_when_it_listens_beyond_loopback() {
    let mut server = serve(&["--host", "0.0.0.0"]);
    assert!(server.addr.starts_with("0.0.0.0:"), "{}", server.addr);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(get(&format!("127.0.0.1:{port}"), "GET / HTTP/1.1").0, 200);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let stderr = std::mem::replace(&mut server.stderr, std::thread::spawn(String::new)).join().unwrap();
    assert!(stderr.contains("other machines that reach this address can load the page"), "{stderr}");
}

#[test]
fn serve_refuses_a_directory_without_the_page() {
    let dir = common::temp_dir("serve", "no-page");
    let subset = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/mnist-subset");
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--offline", "--data-dir", subset, "--web-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no index.html"), "{err}");
}
