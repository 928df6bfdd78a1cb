//! The downloader against a tiny HTTP/1.1 server on 127.0.0.1 started by each test.
//! The "good" bytes are the assets subset, checked with the subset spec (its md5s).

mod common;
use common::TempDir;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wgsl_cnn::data::download::download_file;
use wgsl_cnn::data::spec::{MNIST_SUBSET, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use wgsl_cnn::data::{
    assets_subset_dir, ensure_with, mirrors_from_env, DownloadOptions, DEFAULT_MIRRORS, MIRRORS_ENV,
};

const STEMS: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

// ---- a minimal HTTP server -----------------------------------------------------------

#[derive(Clone)]
enum Reply {
    /// 200 with the body and its true Content-Length.
    Body(Vec<u8>),
    /// 200 announcing `claimed` bytes, sending only `body`, then closing.
    CutOff { body: Vec<u8>, claimed: usize },
    /// 404 Not Found.
    NotFound,
}

/// Serves `routes` (path → reply) on 127.0.0.1 until dropped; at most 64 connections and
/// 60 s, so a test that goes wrong cannot hang the suite. Records every requested path.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(prefix: &str, routes: HashMap<String, Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}{prefix}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !halt.load(Ordering::SeqCst) && Instant::now() < deadline && served < 64 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        handle(stream, &routes, &log);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            base,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The mirror list naming just this server.
    fn mirrors(&self) -> Vec<String> {
        vec![self.base.clone()]
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(stream: TcpStream, routes: &HashMap<String, Reply>, log: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers up to the blank line.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    log.lock().unwrap().push(path.clone());
    let mut out = &stream;
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    let _ = match routes.get(&path).cloned().unwrap_or(Reply::NotFound) {
        Reply::Body(body) => out
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|_| out.write_all(&body)),
        Reply::CutOff { body, claimed } => out
            .write_all(head("200 OK", claimed).as_bytes())
            .and_then(|_| out.write_all(&body)),
        Reply::NotFound => out
            .write_all(head("404 Not Found", 9).as_bytes())
            .and_then(|_| out.write_all(b"not found")),
    };
    let _ = out.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

// ---- helpers -------------------------------------------------------------------------

fn temp_dir(test: &str) -> TempDir {
    common::temp_dir("download-test", test)
}

fn asset(stem: &str) -> Vec<u8> {
    std::fs::read(assets_subset_dir().join(format!("{stem}.gz"))).unwrap()
}

/// Routes serving the good subset files under `prefix`.
fn good_routes(prefix: &str) -> HashMap<String, Reply> {
    STEMS
        .iter()
        .map(|s| (format!("{prefix}{s}.gz"), Reply::Body(asset(s))))
        .collect()
}

fn opts() -> DownloadOptions {
    DownloadOptions {
        connect_timeout: Duration::from_secs(3),
        io_timeout: Duration::from_secs(10),
        progress: false,
        deadline: Duration::from_secs(30),
        min_rate: 1024,
        stall_window: Duration::from_secs(30),
    }
}

/// Everything in `dir`, sorted (to show that no temporary or partial file is left).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn gz_names(stems: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = stems.iter().map(|s| format!("{s}.gz")).collect();
    v.sort();
    v
}

// ---- tests ---------------------------------------------------------------------------

#[test]
fn good_bytes_land_verified_and_load() {
    let server = Server::start("/mnist/", good_routes("/mnist/"));
    let root = temp_dir("good");
    let dir = root.join("nested"); // the data directory is created as needed
    let m = ensure_with(&dir, &MNIST_SUBSET, &server.mirrors(), &opts())
        .expect("download should succeed");
    assert_eq!((m.train.count, m.test.count), (2000, 1000));
    assert!(
        m.report.files.iter().all(|f| f.downloaded && f.md5_checked),
        "{:?}",
        m.report.files
    );
    assert_eq!(
        listing(&dir),
        gz_names(&STEMS),
        "only the four final files may be left"
    );
    for s in STEMS {
        assert!(
            std::fs::read(dir.join(format!("{s}.gz"))).unwrap() == asset(s),
            "{s} differs from what was served"
        );
    }
    assert_eq!(server.requests().len(), 4, "{:?}", server.requests());

    // A second call finds everything and asks the network for nothing.
    let again = ensure_with(&dir, &MNIST_SUBSET, &server.mirrors(), &opts()).unwrap();
    assert!(again.report.files.iter().all(|f| !f.downloaded));
    assert_eq!(
        server.requests().len(),
        4,
        "present files must not be downloaded again"
    );
}

#[test]
fn later_mirror_is_used_when_the_first_fails() {
    let mut routes = good_routes("/good/");
    routes.insert("/bad/whatever".into(), Reply::NotFound); // everything under /bad/ is 404
    let server = Server::start("/bad/", routes);
    let good = server.base.replace("/bad/", "/good"); // no trailing slash: one is added
    let dir = temp_dir("fallback");
    let m = ensure_with(&dir, &MNIST_SUBSET, &[server.base.clone(), good], &opts())
        .expect("second mirror is good");
    assert_eq!(m.train.count, 2000);
    let requests = server.requests();
    for s in STEMS {
        assert!(
            requests.contains(&format!("/bad/{s}.gz"))
                && requests.contains(&format!("/good/{s}.gz")),
            "{requests:?}"
        );
    }
    assert_eq!(listing(&dir), gz_names(&STEMS));
}

#[test]
fn truncated_bytes_are_rejected_and_nothing_good_is_replaced() {
    // The directory already has three good files; only train-images is missing, and the
    // mirror serves the first half of it (with an honest Content-Length).
    let dir = temp_dir("truncated");
    for s in [TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        std::fs::write(dir.join(format!("{s}.gz")), asset(s)).unwrap();
    }
    let full = asset(TRAIN_IMAGES);
    let mut routes = good_routes("/m/");
    routes.insert(
        format!("/m/{TRAIN_IMAGES}.gz"),
        Reply::Body(full[..full.len() / 2].to_vec()),
    );
    let server = Server::start("/m/", routes);
    let err = ensure_with(&dir, &MNIST_SUBSET, &server.mirrors(), &opts())
        .expect_err("truncated data must fail");
    let msg = format!("{err:#}");
    for needle in [
        &format!("could not download {TRAIN_IMAGES}.gz from any mirror"),
        "truncated",
        &dir.display().to_string(),
    ] {
        assert!(
            msg.contains(needle),
            "message should mention {needle:?}:\n{msg}"
        );
    }
    assert_eq!(
        server.requests(),
        vec![format!("/m/{TRAIN_IMAGES}.gz")],
        "only the missing file is fetched"
    );
    assert_eq!(
        listing(&dir),
        gz_names(&[TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]),
        "no final or partial file may appear"
    );
    for s in [TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        assert!(
            std::fs::read(dir.join(format!("{s}.gz"))).unwrap() == asset(s),
            "{s} was modified"
        );
    }
}

#[test]
fn connection_cut_off_mid_body_is_rejected() {
    let dir = temp_dir("cutoff");
    let full = asset(TEST_IMAGES);
    let routes = HashMap::from([(
        format!("/m/{TEST_IMAGES}.gz"),
        Reply::CutOff {
            body: full[..full.len() / 3].to_vec(),
            claimed: full.len(),
        },
    )]);
    let server = Server::start("/m/", routes);
    let err = download_file(
        &dir,
        &MNIST_SUBSET.test.images,
        Some(1000),
        &server.mirrors(),
        &opts(),
    )
    .expect_err("a cut-off body must fail");
    let msg = format!("{err:#}");
    for needle in [
        &format!("could not download {TEST_IMAGES}.gz"),
        "download interrupted",
        &dir.display().to_string(),
    ] {
        assert!(
            msg.contains(needle),
            "message should mention {needle:?}:\n{msg}"
        );
    }
    assert!(
        listing(&dir).is_empty(),
        "nothing may be left: {:?}",
        listing(&dir)
    );
}

#[test]
fn a_wrong_but_valid_file_is_rejected_by_its_checks() {
    // The mirror serves the test labels (1,000 labels) under the train labels' name.
    let dir = temp_dir("wrong-file");
    let routes = HashMap::from([(
        format!("/m/{TRAIN_LABELS}.gz"),
        Reply::Body(asset(TEST_LABELS)),
    )]);
    let server = Server::start("/m/", routes);
    let err = download_file(
        &dir,
        &MNIST_SUBSET.train.labels,
        Some(2000),
        &server.mirrors(),
        &opts(),
    )
    .expect_err("the wrong file must be refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("failed verification") && msg.contains("holds 1000 labels, expected 2000"),
        "{msg}"
    );
    assert!(
        listing(&dir).is_empty(),
        "nothing may be left: {:?}",
        listing(&dir)
    );
}

#[test]
fn an_existing_file_is_never_replaced_by_a_download() {
    // Even when asked to download over it with good bytes, the existing file stays.
    let dir = temp_dir("no-replace");
    let dest = dir.join(format!("{TEST_LABELS}.gz"));
    std::fs::write(&dest, b"someone else's file").unwrap();
    let server = Server::start("/m/", good_routes("/m/"));
    let path = download_file(
        &dir,
        &MNIST_SUBSET.test.labels,
        Some(1000),
        &server.mirrors(),
        &opts(),
    )
    .unwrap();
    assert_eq!(path, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's file");
    assert_eq!(
        listing(&dir),
        gz_names(&[TEST_LABELS]),
        "the temporary file must be removed"
    );
}

#[test]
fn refused_connections_give_an_error_naming_the_directory() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: connections to this port are refused
    let mirrors = [
        format!("http://127.0.0.1:{port}/a/"),
        format!("http://127.0.0.1:{port}/b/"),
    ];
    let dir = temp_dir("refused");
    let start = Instant::now();
    let err =
        ensure_with(&dir, &MNIST_SUBSET, &mirrors, &opts()).expect_err("no server: must fail");
    let msg = format!("{err:#}");
    let want = format!(
        "could not download {TRAIN_IMAGES}.gz from any mirror; put the files in {}",
        dir.display()
    );
    assert!(
        msg.contains(&want),
        "message should contain {want:?}:\n{msg}"
    );
    assert!(
        msg.contains(&mirrors[0]) && msg.contains(&mirrors[1]),
        "each mirror tried is listed:\n{msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "refusal should be quick, took {:?}",
        start.elapsed()
    );
    assert!(
        listing(&dir).is_empty(),
        "nothing may be left: {:?}",
        listing(&dir)
    );
}

#[test]
fn mirrors_come_from_the_environment_or_the_defaults() {
    // The only test that touches this variable.
    std::env::set_var(
        MIRRORS_ENV,
        " http://a.example/mnist/ ,http://b.example/x,, ",
    );
    assert_eq!(
        mirrors_from_env(),
        ["http://a.example/mnist/", "http://b.example/x"]
    );
    std::env::remove_var(MIRRORS_ENV);
    assert_eq!(mirrors_from_env(), DEFAULT_MIRRORS);
    assert!(DEFAULT_MIRRORS.len() >= 2);
}
