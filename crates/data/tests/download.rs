//! The downloader against a local HTTP server that each test starts on 127.0.0.1.
//!
//! The server serves bytes the test made, honours `Range: bytes=N-`, and can be told to
//! drop the connection after `k` body bytes, to ignore ranges, or to answer an error
//! status. It records every request so tests can check what went over the wire. No
//! test touches the internet.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bigbatch_data::Error;
use bigbatch_data::download::{
    Checksum, FetchOptions, NoProgress, Progress, Resource, fetch, sha256_file,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How the server treats one path.
#[derive(Clone, Default)]
struct Route {
    body: Vec<u8>,
    /// Answer this status (with an empty body) to every request.
    status: Option<u16>,
    /// Drop the connection after this many body bytes, on the first `drops` requests.
    drop_after: Option<usize>,
    drops: usize,
    /// Answer `200` with the whole body even when a range is asked for.
    ignore_range: bool,
}

impl Route {
    fn serving(body: &[u8]) -> Self {
        Route {
            body: body.to_vec(),
            ..Route::default()
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    path: String,
    range: Option<String>,
}

struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `routes` (path → route) until dropped, at most 64 connections.
    fn start(routes: Vec<(&str, Route)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let routes: HashMap<String, (Route, AtomicUsize)> = routes
            .into_iter()
            .map(|(path, route)| (path.to_owned(), (route, AtomicUsize::new(0))))
            .collect();
        let thread = {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming().take(64) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &routes, &log);
                    }
                }
            })
        };
        Server {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(
    stream: TcpStream,
    routes: &HashMap<String, (Route, AtomicUsize)>,
    log: &Mutex<Vec<Seen>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return; // the wake-up connection from `Drop`
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    log.lock().expect("log lock").push(Seen {
        path: path.clone(),
        range: range.clone(),
    });

    let mut out = &stream;
    let Some((route, served)) = routes.get(&path) else {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if let Some(status) = route.status {
        let _ = write!(
            out,
            "HTTP/1.1 {status} Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let len = route.body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| !route.ignore_range);
    let (head, body) = match start {
        Some(start) if start >= len => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            (head, &[][..])
        }
        Some(start) => {
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - start
            );
            (head, &route.body[start..])
        }
        None => {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            (head, &route.body[..])
        }
    };
    let _ = out.write_all(head.as_bytes());
    let nth = served.fetch_add(1, Ordering::SeqCst);
    match route.drop_after {
        Some(k) if nth < route.drops && k < body.len() => {
            let _ = out.write_all(&body[..k]);
            let _ = out.flush();
            let _ = stream.shutdown(Shutdown::Both);
        }
        _ => {
            let _ = out.write_all(body);
        }
    }
}

/// 200 KB of reproducible random bytes.
fn payload() -> Vec<u8> {
    let mut bytes = vec![0u8; 200_000];
    ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut bytes);
    bytes
}

fn sha256_of(bytes: &[u8]) -> Checksum {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x");
    fs::write(&path, bytes).expect("write");
    Checksum::Sha256(sha256_file(&path).expect("hash"))
}

fn resource(mirrors: Vec<String>, checksum: Checksum) -> Resource {
    Resource {
        file_name: "blob.bin".to_owned(),
        checksum,
        mirrors,
    }
}

fn quick() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        retry_delay: Duration::ZERO,
        ..FetchOptions::default()
    }
}

/// A [`Progress`] that records what it is told.
#[derive(Default)]
struct Recorder {
    starts: Mutex<Vec<(Option<u64>, u64)>>,
    advanced: AtomicUsize,
    finished: AtomicUsize,
}

impl Progress for Recorder {
    fn start(&self, _file: &str, total_bytes: Option<u64>, already: u64) {
        self.starts
            .lock()
            .expect("lock")
            .push((total_bytes, already));
    }
    fn advance(&self, bytes: u64) {
        self.advanced.fetch_add(bytes as usize, Ordering::SeqCst);
    }
    fn finish(&self, _file: &str) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn plain_fetch_verifies_and_places_atomically() {
    let body = payload();
    let server = Server::start(vec![("/blob.bin", Route::serving(&body))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let target_dir = dir.path().join("nested/dir");
    let progress = Recorder::default();
    let res = resource(vec![server.url("/blob.bin")], sha256_of(&body));

    let path = fetch(&res, &target_dir, &quick(), &progress).expect("fetch");
    assert_eq!(path, target_dir.join("blob.bin"));
    assert_eq!(fs::read(&path).expect("read"), body);
    assert_eq!(leftovers(&target_dir), ["blob.bin"], "no .part left behind");
    assert_eq!(*progress.starts.lock().expect("lock"), [(Some(200_000), 0)]);
    assert_eq!(progress.advanced.load(Ordering::SeqCst), 200_000);
    assert_eq!(progress.finished.load(Ordering::SeqCst), 1);

    // Already present and valid: no second request.
    fetch(&res, &target_dir, &quick(), &NoProgress).expect("second fetch");
    assert_eq!(server.requests().len(), 1);

    // MD5 checksums work the same way.
    let md5 = Checksum::Md5(bigbatch_data::download::md5_file(&path).expect("md5"));
    fetch(
        &resource(res.mirrors.clone(), md5),
        &target_dir,
        &quick(),
        &NoProgress,
    )
    .expect("md5 fetch");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn dropped_connection_resumes_with_a_range_request() {
    let body = payload();
    let route = Route {
        drop_after: Some(70_000),
        drops: 1,
        ..Route::serving(&body)
    };
    let server = Server::start(vec![("/blob.bin", route)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let progress = Recorder::default();
    let res = resource(vec![server.url("/blob.bin")], sha256_of(&body));

    let path = fetch(&res, dir.path(), &quick(), &progress).expect("fetch");
    assert_eq!(fs::read(path).expect("read"), body);
    let ranges: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .map(|seen| seen.range)
        .collect();
    assert_eq!(ranges, [None, Some("bytes=70000-".to_owned())]);
    assert_eq!(
        *progress.starts.lock().expect("lock"),
        [(Some(200_000), 0), (Some(200_000), 70_000)]
    );
    assert_eq!(progress.advanced.load(Ordering::SeqCst), 200_000);
    assert_eq!(leftovers(dir.path()), ["blob.bin"]);
}

#[test]
fn partial_file_from_an_earlier_run_is_resumed_or_restarted() {
    let body = payload();
    let checksum = sha256_of(&body);

    // Server honours ranges: only the missing tail is transferred.
    let server = Server::start(vec![("/blob.bin", Route::serving(&body))]);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("blob.bin.part"), &body[..123_456]).expect("write part");
    let path = fetch(
        &resource(vec![server.url("/blob.bin")], checksum.clone()),
        dir.path(),
        &quick(),
        &NoProgress,
    )
    .expect("resume");
    assert_eq!(fs::read(path).expect("read"), body);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=123456-"));

    // Server ignores ranges (answers 200): the partial file is overwritten, not appended to.
    let route = Route {
        ignore_range: true,
        ..Route::serving(&body)
    };
    let server = Server::start(vec![("/blob.bin", route)]);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("blob.bin.part"), &body[..50_000]).expect("write part");
    let path = fetch(
        &resource(vec![server.url("/blob.bin")], checksum.clone()),
        dir.path(),
        &quick(),
        &NoProgress,
    )
    .expect("restart");
    assert_eq!(fs::read(path).expect("read"), body);
    assert_eq!(server.requests().len(), 1);

    // A stale partial file of other bytes: the resumed result fails its checksum, so the
    // same mirror is asked again from zero.
    let server = Server::start(vec![("/blob.bin", Route::serving(&body))]);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("blob.bin.part"), vec![0u8; 1000]).expect("write part");
    let path = fetch(
        &resource(vec![server.url("/blob.bin")], checksum.clone()),
        dir.path(),
        &quick(),
        &NoProgress,
    )
    .expect("restart after stale part");
    assert_eq!(fs::read(path).expect("read"), body);
    let ranges: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .map(|seen| seen.range)
        .collect();
    assert_eq!(ranges, [Some("bytes=1000-".to_owned()), None]);

    // A partial file longer than the resource: 416, then a fresh download.
    let server = Server::start(vec![("/blob.bin", Route::serving(&body))]);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("blob.bin.part"), vec![1u8; 250_000]).expect("write part");
    let path = fetch(
        &resource(vec![server.url("/blob.bin")], checksum.clone()),
        dir.path(),
        &quick(),
        &NoProgress,
    )
    .expect("restart after 416");
    assert_eq!(fs::read(path).expect("read"), body);
    assert_eq!(server.requests().len(), 2);

    // A complete .part whose rename was interrupted: finished without the network.
    let server = Server::start(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("blob.bin.part"), &body).expect("write part");
    fetch(
        &resource(vec![server.url("/blob.bin")], checksum),
        dir.path(),
        &quick(),
        &NoProgress,
    )
    .expect("rename only");
    assert!(server.requests().is_empty());
    assert_eq!(leftovers(dir.path()), ["blob.bin"]);
}

#[test]
fn corrupted_mirror_is_rejected_and_the_next_one_used() {
    let body = payload();
    let mut corrupted = body.clone();
    corrupted[100_000] ^= 0x01;
    let server = Server::start(vec![
        ("/bad/blob.bin", Route::serving(&corrupted)),
        ("/good/blob.bin", Route::serving(&body)),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let res = resource(
        vec![server.url("/bad/blob.bin"), server.url("/good/blob.bin")],
        sha256_of(&body),
    );

    let path = fetch(&res, dir.path(), &quick(), &NoProgress).expect("second mirror");
    assert_eq!(fs::read(path).expect("read"), body);
    let paths: Vec<String> = server
        .requests()
        .into_iter()
        .map(|seen| seen.path)
        .collect();
    assert_eq!(paths, ["/bad/blob.bin", "/good/blob.bin"]);
    // The corrupt bytes were deleted, not resumed from: the good mirror got no range.
    assert_eq!(server.requests()[1].range, None);
    assert_eq!(leftovers(dir.path()), ["blob.bin"]);
}

#[test]
fn a_present_file_that_is_not_the_published_one_is_left_untouched_unless_forced() {
    let body = payload();
    let server = Server::start(vec![("/blob.bin", Route::serving(&body))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob.bin");
    fs::write(&path, b"a user's own file").expect("write");
    let res = resource(vec![server.url("/blob.bin")], sha256_of(&body));
    let error = fetch(&res, dir.path(), &quick(), &NoProgress).expect_err("not official");
    assert!(
        matches!(error, Error::NotOfficial { path: ref p, .. } if p == &path),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("left untouched") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(fs::read(&path).expect("read"), b"a user's own file");
    assert!(
        server.requests().is_empty(),
        "asked the network for a present file"
    );

    let forced = FetchOptions {
        force: true,
        ..quick()
    };
    let replaced = fetch(&res, dir.path(), &forced, &NoProgress).expect("forced fetch");
    assert_eq!(fs::read(replaced).expect("read"), body);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn offline_mode_never_touches_the_network() {
    let body = payload();
    let server = Server::start(vec![("/blob.bin", Route::serving(&body))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let res = resource(vec![server.url("/blob.bin")], sha256_of(&body));
    let offline = FetchOptions {
        offline: true,
        ..quick()
    };

    let error = fetch(&res, dir.path(), &offline, &NoProgress).expect_err("missing offline");
    let expected = dir.path().join("blob.bin");
    assert!(
        matches!(error, Error::Offline { ref path, ref url } if path == &expected && url == &res.mirrors[0])
    );
    let text = error.to_string();
    assert!(text.contains(&expected.display().to_string()), "{text}");
    assert!(text.contains(&res.mirrors[0]), "{text}");

    fs::write(&expected, &body).expect("place the file by hand");
    assert_eq!(
        fetch(&res, dir.path(), &offline, &NoProgress).expect("present offline"),
        expected
    );

    fs::write(&expected, b"corrupt").expect("corrupt it");
    let error = fetch(&res, dir.path(), &offline, &NoProgress).expect_err("corrupt offline");
    assert!(matches!(error, Error::NotOfficial { ref path, .. } if path == &expected));

    assert!(server.requests().is_empty(), "offline mode made requests");
}

#[test]
fn all_mirrors_failing_lists_each_one() {
    let body = payload();
    let mut corrupted = body.clone();
    corrupted[0] ^= 0xff;
    let route_500 = Route {
        status: Some(500),
        ..Route::default()
    };
    let always_drops = Route {
        drop_after: Some(10_000),
        drops: usize::MAX,
        ..Route::serving(&body)
    };
    let server = Server::start(vec![
        ("/error/blob.bin", route_500),
        ("/corrupt/blob.bin", Route::serving(&corrupted)),
        ("/drops/blob.bin", always_drops),
    ]);
    // A port nobody listens on: bind one, note it, close it.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let mirrors = vec![
        server.url("/missing/blob.bin"),
        server.url("/error/blob.bin"),
        format!("http://{closed}/blob.bin"),
        server.url("/corrupt/blob.bin"),
        server.url("/drops/blob.bin"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FetchOptions {
        retries: 2,
        ..quick()
    };

    let error = fetch(
        &resource(mirrors.clone(), sha256_of(&body)),
        dir.path(),
        &opts,
        &NoProgress,
    )
    .expect_err("every mirror fails");
    let Error::AllMirrorsFailed {
        ref file,
        ref attempts,
    } = error
    else {
        panic!("expected AllMirrorsFailed, got {error}");
    };
    assert_eq!(file, "blob.bin");
    let urls: Vec<&str> = attempts.iter().map(|a| a.url.as_str()).collect();
    assert_eq!(urls, mirrors);
    assert!(matches!(
        attempts[0].error,
        Error::HttpStatus { status: 404, .. }
    ));
    assert!(matches!(
        attempts[1].error,
        Error::HttpStatus { status: 500, .. }
    ));
    assert!(matches!(attempts[2].error, Error::Http { .. }));
    assert!(matches!(attempts[3].error, Error::Checksum { .. }));
    assert!(matches!(
        attempts[4].error,
        Error::Interrupted {
            attempts: 3,
            received_bytes: 30_000,
            ..
        }
    ));

    let text = error.to_string();
    for url in &mirrors {
        assert!(
            text.contains(&format!("\n  - {url}: ")),
            "{url} not listed in:\n{text}"
        );
    }
    // The interrupted download keeps its partial file for a later resume.
    assert_eq!(leftovers(dir.path()), ["blob.bin.part"]);
    assert_eq!(
        fs::read(dir.path().join("blob.bin.part"))
            .expect("read")
            .len(),
        30_000
    );
    // Three transfers of the dropping mirror: one fresh and two resumed.
    let ranges: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|seen| seen.path == "/drops/blob.bin")
        .map(|seen| seen.range)
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=10000-".to_owned()),
            Some("bytes=20000-".to_owned())
        ]
    );
}

#[test]
fn no_mirrors_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = fetch(
        &resource(vec![], Checksum::Md5("00".repeat(16))),
        dir.path(),
        &quick(),
        &NoProgress,
    )
    .expect_err("no mirrors");
    assert!(matches!(error, Error::AllMirrorsFailed { ref attempts, .. } if attempts.is_empty()));
    assert!(error.to_string().contains("no mirrors are listed"));
}
