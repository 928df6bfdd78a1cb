//! Fashion-MNIST without the network: IDX files made here, served by a tiny HTTP server on
//! 127.0.0.1, checked against `.gz` md5 tables (the test's own, then the published one).

mod common;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wgsl_cnn::data::fashion::{ensure_fashion_with, FASHION_GZ_MD5, FASHION_MNIST};
use wgsl_cnn::data::idx::md5_hex;
use wgsl_cnn::data::spec::{TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use wgsl_cnn::data::DownloadOptions;
use wgsl_cnn::dataset::Dataset;
use wgsl_cnn::mistakes::Confusion;
use wgsl_cnn::rng::Rng;

/// Serves `files` (name → bytes) under `/fm/` until dropped (at most 60 s).
struct Server {
    base: String,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(files: Vec<(String, Vec<u8>)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/fm/", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !halt.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").trim_start_matches("/fm/").to_string();
                let body = files.iter().find(|(n, _)| *n == path).map(|(_, b)| b.clone());
                let mut out = &stream;
                let _ = match body {
                    Some(b) => write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).and_then(|_| out.write_all(&b)),
                    None => write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        Server { base, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// IDX images (2051) and labels (2049) of `n` random examples, gzip'd.
fn idx_pair(rng: &mut Rng, n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut images = [2051u32, n as u32, 28, 28].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    images.extend((0..n * 784).map(|_| rng.below(256) as u8));
    let mut labels = [2049u32, n as u32].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    labels.extend((0..n).map(|_| rng.below(10) as u8));
    (gz(&images), gz(&labels))
}

fn made_files(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let (ti, tl) = idx_pair(&mut rng, 30);
    let (vi, vl) = idx_pair(&mut rng, 12);
    [(TRAIN_IMAGES, ti), (TRAIN_LABELS, tl), (TEST_IMAGES, vi), (TEST_LABELS, vl)].into_iter().map(|(s, b)| (format!("{s}.gz"), b)).collect()
}

fn opts() -> DownloadOptions {
    DownloadOptions { progress: false, ..DownloadOptions::default() }
}

#[test]
fn downloads_through_the_local_server_with_the_md5_table_checked() {
    let seed = common::base_seed();
    let files = made_files(seed);
    let server = Server::start(files.clone());
    let dir = common::temp_dir("fashion", "download");
    // The test's own table: the md5s of the files it serves.
    let table: Vec<(&str, String)> = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS].iter().zip(&files).map(|(s, (_, b))| (*s, md5_hex(b))).collect();
    let table: Vec<(&str, &str)> = table.iter().map(|(s, m)| (*s, m.as_str())).collect();
    let spec = FASHION_MNIST.unchecked(); // the made files hold 30 and 12 examples
    let data = ensure_fashion_with(&dir, &spec, &table, std::slice::from_ref(&server.base), &opts()).unwrap();
    assert_eq!((data.train.count, data.test.count), (30, 12), "seed {seed}");
    assert_eq!(data.report.dataset, "Fashion-MNIST");
    for (name, bytes) in &files {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), *bytes, "{name} as served");
    }
    // Present now: loaded again without the server's help.
    drop(server);
    assert_eq!(ensure_fashion_with(&dir, &spec, &table, &[], &opts()).unwrap().test.labels, data.test.labels);
}

#[test]
fn a_checksum_mismatch_is_an_error_and_the_download_is_removed() {
    let seed = common::base_seed();
    let server = Server::start(made_files(seed));
    let dir = common::temp_dir("fashion", "mismatch");
    // The published table: the made files cannot match it.
    let err = ensure_fashion_with(&dir, &FASHION_MNIST.unchecked(), &FASHION_GZ_MD5, std::slice::from_ref(&server.base), &opts()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("checksum mismatch") && msg.contains(FASHION_GZ_MD5[0].1), "{msg}");
    assert!(!dir.join(format!("{TRAIN_IMAGES}.gz")).exists(), "the bad download is removed");
    // A bad file that was already there is kept and reported.
    let files = made_files(seed);
    std::fs::write(dir.join(&files[0].0), &files[0].1).unwrap();
    let msg = format!("{:#}", ensure_fashion_with(&dir, &FASHION_MNIST.unchecked(), &FASHION_GZ_MD5, &[], &opts()).unwrap_err());
    assert!(msg.contains("checksum mismatch") && msg.contains("remove it"), "{msg}");
    assert!(dir.join(&files[0].0).exists());
}

#[test]
fn class_names_appear_in_the_confusion_matrix() {
    let names = Dataset::FashionMnist.class_names();
    assert_eq!(names[0], "T-shirt/top");
    assert_eq!(names[9], "Ankle boot");
    assert_eq!(Dataset::parse("fashion-mnist").unwrap(), Dataset::FashionMnist);
    assert_eq!(Dataset::FashionMnist.default_dir(), std::path::PathBuf::from("data/fashion-mnist"));
    let mut counts = vec![0u32; 100];
    counts[0] = 7;
    counts[9 * 10 + 7] = 3; // three ankle boots taken for sneakers
    let text = Confusion { classes: 10, counts }.format(names);
    assert!(text.contains("0 T-shirt/top  100.00 % (7/7)"), "{text}");
    assert!(text.contains("9 Ankle boot     0.00 % (0/3)"), "{text}");
    // MNIST's digits print no name column.
    let text = Confusion { classes: 10, counts: vec![1; 100] }.format(Dataset::Mnist.class_names());
    assert!(text.contains("  3  10.00 % (1/10)"), "{text}");
}
