//! Issue 10 for downloads, against mirrors on 127.0.0.1 that the tests start: a mirror that
//! trickles bytes hits the overall deadline (then the next mirror is used), `--repair`
//! fetches a damaged file again, and partial files of dead processes are removed. Issue 26:
//! a transfer under the minimum rate for a whole window is abandoned for the next mirror
//! long before the deadline, and a slow but steady one finishes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::temp_dir;
use wgsl_cnn::data::download::download_file;
use wgsl_cnn::data::spec::{MNIST_SUBSET, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use wgsl_cnn::data::{assets_subset_dir, ensure_with, DownloadOptions};

const STEMS: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Serves the subset's files on 127.0.0.1, sending each byte after `delay` when set; at most
/// `connections` requests, 60 s, so nothing outlives a test for long. Returns the base URL.
fn mirror(delay: Option<Duration>, connections: usize) -> String {
    mirror_serving(delay, connections, None)
}

/// [`mirror`], serving `body` (when given) under every name.
fn mirror_serving(delay: Option<Duration>, connections: usize, body: Option<Vec<u8>>) -> String {
    mirror_paced(1, delay, connections, body)
}

/// [`mirror_serving`], sending `chunk` bytes at a time, each after `delay` when set.
fn mirror_paced(chunk: usize, delay: Option<Duration>, connections: usize, body: Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections).flatten() {
            let fixed = body.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    match reader.read_line(&mut h) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if h.trim().is_empty() => break,
                        Ok(_) => {}
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").trim_start_matches('/').to_string();
                let body = fixed.unwrap_or_else(|| std::fs::read(assets_subset_dir().join(&path)).unwrap_or_default());
                let mut out = &stream;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let started = Instant::now();
                match delay {
                    None => {
                        let _ = out.write_all(&body);
                    }
                    Some(d) => {
                        for b in body.chunks(chunk) {
                            if out.write_all(b).and_then(|_| out.flush()).is_err() || started.elapsed() > Duration::from_secs(60) {
                                return;
                            }
                            std::thread::sleep(d);
                        }
                    }
                }
            });
        }
    });
    base
}

fn opts(deadline: Duration) -> DownloadOptions {
    // No minimum rate: these tests are about the deadline.
    DownloadOptions { connect_timeout: Duration::from_secs(3), io_timeout: Duration::from_secs(10), progress: false, deadline, min_rate: 0, stall_window: Duration::from_secs(30) }
}

/// A long deadline and a minimum of `min_rate` bytes/s over `window`.
fn rate_opts(min_rate: u64, window: Duration) -> DownloadOptions {
    DownloadOptions { min_rate, stall_window: window, ..opts(Duration::from_secs(600)) }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_mirror_under_the_minimum_rate_is_abandoned_for_the_next_within_the_window() {
    // One byte per second against a floor of 100 bytes/s over 1 s: called after 1–2 s, not
    // at the 600 s deadline.
    let trickle = mirror(Some(Duration::from_secs(1)), 4);
    let dir = temp_dir("download-faults", "stall");
    let started = Instant::now();
    let msg = match download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), std::slice::from_ref(&trickle), &rate_opts(100, Duration::from_secs(1))) {
        Ok(_) => panic!("a trickling mirror must be abandoned"),
        Err(e) => format!("{e:#}"),
    };
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert!(msg.contains("stalled") && msg.contains("minimum of 100 bytes/s over 1 s") && msg.contains("WGSL_CNN_DOWNLOAD_MIN_RATE") && msg.contains(&trickle), "{msg}");
    assert!(listing(&dir).is_empty(), "no partial file is left: {:?}", listing(&dir));
    // Then the next mirror is used.
    let good = mirror(None, 4);
    let started = Instant::now();
    let path = download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), &[trickle, good], &rate_opts(100, Duration::from_secs(1))).unwrap();
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert_eq!(listing(&dir), [format!("{TEST_LABELS}.gz")], "{path:?}");
}

#[test]
fn a_mirror_that_sends_nothing_at_all_is_abandoned_within_the_window() {
    // The headers, then silence: each read waits at most the window (not the 10 s io_timeout).
    let silent = mirror(Some(Duration::from_secs(30)), 2);
    let dir = temp_dir("download-faults", "silent");
    let started = Instant::now();
    let err = download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), &[silent], &rate_opts(100, Duration::from_secs(1))).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(format!("{err:#}").contains("stalled"), "{err:#}");
}

#[test]
fn a_slow_but_steady_mirror_finishes() {
    // 526 bytes, 20 every 50 ms (400 bytes/s, about 1.3 s), against a floor of 100 bytes/s
    // over 0.4 s windows: slow, but above the floor in every window.
    let steady = mirror_paced(20, Some(Duration::from_millis(50)), 2, None);
    let dir = temp_dir("download-faults", "steady");
    let started = Instant::now();
    let path = download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), &[steady], &rate_opts(100, Duration::from_millis(400))).unwrap();
    let took = started.elapsed();
    assert!(took > Duration::from_millis(800) && took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(assets_subset_dir().join(format!("{TEST_LABELS}.gz"))).unwrap());
}

#[test]
fn the_default_minimum_rate_is_1_kib_per_second_over_30_s() {
    let d = DownloadOptions::default();
    // The variables may be set where the tests run; unset, the defaults hold.
    if std::env::var_os("WGSL_CNN_DOWNLOAD_MIN_RATE").is_none() && std::env::var_os("WGSL_CNN_DOWNLOAD_STALL_SECONDS").is_none() {
        assert_eq!((d.min_rate, d.stall_window), (1024, Duration::from_secs(30)));
    }
}

#[test]
fn a_trickling_mirror_hits_the_deadline_and_the_next_mirror_is_used() {
    // 1,008 bytes at one per 100 ms would take 100 s; each read returns well within the
    // 10 s io_timeout, so only the overall deadline stops it.
    let slow = mirror(Some(Duration::from_millis(100)), 4);
    let dir = temp_dir("download-faults", "trickle");
    let started = Instant::now();
    let msg = match download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), std::slice::from_ref(&slow), &opts(Duration::from_secs(1))) {
        Ok(_) => panic!("a trickling mirror must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert!(msg.contains("did not arrive within 1 s") && msg.contains(&slow), "{msg}");
    let good = mirror(None, 4);
    let started = Instant::now();
    let path = download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), &[slow, good], &opts(Duration::from_secs(1))).unwrap();
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert!(path.exists());
    let left: Vec<String> = std::fs::read_dir(&*dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, [format!("{TEST_LABELS}.gz")], "no partial file is left");
}

#[test]
fn the_default_deadline_lets_a_slow_real_connection_through() {
    let d = DownloadOptions::default().deadline;
    // The largest file, 9.9 MB, at 20 kB/s.
    assert!(d >= Duration::from_secs(9_912_422 / 20_000), "{d:?}");
}

/// A pid no process has.
fn dead_pid() -> u32 {
    (4_000_000..).find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap()
}

#[test]
fn repair_moves_a_damaged_file_aside_and_downloads_it_again() {
    let dir = temp_dir("download-faults", "repair");
    for stem in STEMS {
        let name = format!("{stem}.gz");
        std::fs::copy(assets_subset_dir().join(&name), dir.join(&name)).unwrap();
    }
    let name = format!("{TRAIN_LABELS}.gz");
    let good = std::fs::read(dir.join(&name)).unwrap();
    std::fs::write(dir.join(&name), &good[..good.len() - 9]).unwrap();
    // A partial download of a killed process, and one of a live process (this one).
    let stale = dir.join(format!(".{name}.part-{}-0", dead_pid()));
    let live = dir.join(format!(".{name}.part-{}-999", std::process::id()));
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::write(&live, b"partial").unwrap();
    let server = mirror(None, 4);
    let err = ensure_with(&dir, &MNIST_SUBSET, std::slice::from_ref(&server), &opts(Duration::from_secs(20))).map(|_| ()).unwrap_err();
    assert!(format!("{err:#}").contains("--repair"), "{err:#}");
    let moved = wgsl_cnn::data::local::move_bad_files_aside(&dir, &MNIST_SUBSET).unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let m = ensure_with(&dir, &MNIST_SUBSET, &[server], &opts(Duration::from_secs(20))).unwrap();
    assert_eq!(m.train.count, 2000);
    assert_eq!(std::fs::read(dir.join(&name)).unwrap(), good, "the file is downloaded again");
    assert!(moved[0].exists(), "the damaged file is kept aside");
    assert!(!stale.exists(), "a dead process's partial file is removed");
    assert!(live.exists(), "a live process's partial file is kept");
}

#[test]
fn a_gzip_bomb_from_a_mirror_is_refused_early() {
    // 5 MB of gzip that would be 1 GiB: a labels header for 1,000 labels, then zeros.
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut bomb = gz(&[0, 0, 8, 1, 0, 0, 3, 232]);
    let member = gz(&vec![0u8; 16 << 20]);
    for _ in 0..64 {
        bomb.extend_from_slice(&member);
    }
    let server = mirror_serving(None, 2, Some(bomb));
    let dir = temp_dir("download-faults", "bomb");
    let started = Instant::now();
    let err = download_file(&dir, &MNIST_SUBSET.test.labels, Some(1000), &[server], &opts(Duration::from_secs(20))).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("failed verification") && msg.contains("wrong length"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(std::fs::read_dir(&*dir).unwrap().count(), 0, "nothing is left");
}
