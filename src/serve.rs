//! `wgsl-cnn serve`: the browser page (`web/`, with the wasm build in `web/pkg/`) and the
//! data set's IDX files over plain HTTP, on the loopback interface unless told otherwise.
//!
//! Paths map to files only through a fixed rule: `/data/<name>` to one of the data set's four
//! files (or its `IDX-MD5SUMS`) by exact name, anything else to a file under the page's
//! directory whose every segment is a plain name (no `..`, no `.` start, no separators, no
//! encoded bytes after decoding). Whatever else is asked for is a 404.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::data::local::CHECKSUMS_FILE;
use crate::data::mnist::locate;
use crate::dataset::Dataset;

/// What is served and where.
#[derive(Clone, Debug)]
pub struct Site {
    /// The page: index.html, its modules, pkg/ (wasm-bindgen's output).
    pub web_dir: PathBuf,
    pub data_dir: PathBuf,
    pub dataset: Dataset,
}

/// The page's directory: `web/` here, else the one beside the sources this binary was built from.
pub fn default_web_dir() -> PathBuf {
    let here = PathBuf::from("web");
    if here.join("index.html").is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Binds `host:port` (port 0: any free port) and answers requests until the process ends.
/// `on_ready` gets the bound address before the first request is taken.
pub fn serve(site: &Site, host: &str, port: u16, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    if !site.web_dir.join("index.html").is_file() {
        bail!("{} has no index.html: serve the page from the repository (or give --web-dir)", site.web_dir.display());
    }
    let listener = TcpListener::bind((host, port)).with_context(|| format!("cannot listen on {host}:{port}"))?;
    on_ready(listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let site = site.clone();
        std::thread::spawn(move || {
            let _ = answer(&site, stream);
        });
    }
    Ok(())
}

/// Where a request path leads: a file to send with its content type, or nowhere (404).
pub fn resolve(site: &Site, raw_path: &str) -> Option<(PathBuf, &'static str)> {
    let path = raw_path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let rel = decoded.strip_prefix('/')?;
    let segments: Vec<&str> = if rel.is_empty() { vec!["index.html"] } else { rel.split('/').collect() };
    if !segments.iter().all(|s| plain_name(s)) {
        return None;
    }
    if segments[0] == "data" {
        let [_, name] = segments[..] else { return None };
        return data_file(site, name).map(|p| (p, "application/octet-stream"));
    }
    let file = segments.iter().fold(site.web_dir.clone(), |p, s| p.join(s));
    file.is_file().then(|| (file.clone(), content_type(&file)))
}

/// A path segment that names an entry of its directory and nothing else.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['\\', ':', '\0']) && s.chars().all(|c| !c.is_control())
}

/// One of the data set's files by exact name (`NAME` or `NAME.gz`, as present), or its
/// checksum list.
fn data_file(site: &Site, name: &str) -> Option<PathBuf> {
    if name == CHECKSUMS_FILE {
        let p = site.data_dir.join(CHECKSUMS_FILE);
        return p.is_file().then_some(p);
    }
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let spec = site.dataset.spec();
    if !spec.files().iter().any(|f| f.stem == stem) {
        return None;
    }
    locate(&site.data_dir, stem).filter(|p| p.file_name().and_then(|n| n.to_str()) == Some(name) && p.is_file())
}

/// The data set the page is offered: its name and the files present (the page fetches them
/// from `/data/<name>`), as JSON for `/data/`.
fn data_index(site: &Site) -> String {
    let files: Vec<String> = site
        .dataset
        .spec()
        .files()
        .iter()
        .filter_map(|f| locate(&site.data_dir, f.stem))
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .collect();
    let checksums = site.data_dir.join(CHECKSUMS_FILE).is_file();
    serde_json::json!({"dataset": site.dataset.name(), "files": files, "checksums": checksums}).to_string()
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// `%XX` decoded; None for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn answer(site: &Site, mut stream: TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.by_ref().take(8192).read_line(&mut request)?;
    // The headers are not needed; read them so the client sees a clean close.
    let mut line = String::new();
    while reader.by_ref().take(8192).read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET and HEAD\n", method == "HEAD");
    }
    let head = method == "HEAD";
    if target.split('?').next() == Some("/data/") {
        return respond(&mut stream, "200 OK", "application/json", data_index(site).as_bytes(), head);
    }
    match resolve(site, target) {
        Some((file, kind)) => match std::fs::read(&file) {
            Ok(body) => respond(&mut stream, "200 OK", kind, &body, head),
            Err(_) => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n", head),
        },
        None => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n", head),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8], head: bool) -> Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()?;
    Ok(())
}
