//! A fault-injecting HTTP proxy on 127.0.0.1 for the transfer tests.
//!
//! It forwards each request to the real Glance (one request per connection: it asks both
//! sides for `Connection: close`) and, when a [`Rule`] matches the request's method and
//! path, injects one fault: flip one byte of the response body, close the connection
//! after N response (or request) body bytes (or cut the client and hold Glance's side
//! open until the client has looked at the record), answer 503 without forwarding, slow both
//! bodies down (so a test can kill a client mid-transfer), or forward the request with
//! its token replaced by an invalid one (so the real Glance answers 401, as it does to an
//! expired or revoked token), forward it without its `Range` header, or rewrite the
//! answer's `Content-Range`. A request body the client cuts
//! short is cut short towards Glance too, as a direct connection would be. Threads and
//! std sockets only; no part of Glance is imitated.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What to do to a matching exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// XOR the response body byte at this offset with 0x01.
    FlipByte { offset: u64 },
    /// As `FlipByte`, only on a request without a `Range` header (the whole-data GET,
    /// not the range reads before it).
    FlipByteUnranged { offset: u64 },
    /// Forward this many response body bytes, then close both sockets.
    CloseResponseAfter { bytes: u64 },
    /// Forward this many request body bytes, then close both sockets.
    CloseRequestAfter { bytes: u64 },
    /// Forward this many request body bytes, then close the client's socket at once but
    /// keep Glance's open (and silent) until the proxy has answered a later `GET` of the
    /// image record (at most [`HOLD_LIMIT`]): Glance goes on waiting for the body, so the
    /// client's first look after the cut finds the record still `saving` (or `uploading`),
    /// however slow the machine is.
    CutClientThenHold { bytes: u64 },
    /// Answer `503 Service Unavailable` without contacting Glance.
    Unavailable,
    /// Forward the first `after` bytes of the request and response bodies at full
    /// speed, the rest at about `bytes_per_second`.
    Throttle { after: u64, bytes_per_second: u64 },
    /// Forward the request with `X-Auth-Token` replaced by a token Keystone never issued.
    InvalidToken,
    /// Forward the request without its `Range` header, as a store that cannot serve
    /// ranges ignores it (Glance then answers 200 with the whole image).
    StripRange,
    /// Replace the response's `Content-Range` header (if it has one) by this value.
    ContentRange(&'static str),
}

/// What replaces the client's token under [`Fault::InvalidToken`].
const INVALID_TOKEN: &str = "gAAAAABinvalid-token-injected-by-the-test-proxy";

/// Longest hold of Glance's side under [`Fault::CutClientThenHold`] when the client never
/// looks at the record (the test then fails on its own assertions, not by hanging).
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes forwarded per step while throttling.
const THROTTLE_STEP: u64 = 16 * 1024;

/// Copies `reader` to `writer`, after the first `after` bytes at about
/// `bytes_per_second`; returns the bytes copied.
fn throttled_copy(
    reader: &mut impl Read,
    writer: &mut impl Write,
    after: u64,
    bytes_per_second: u64,
) -> io::Result<u64> {
    let mut copied = io::copy(&mut reader.take(after), writer)?;
    loop {
        let step = io::copy(&mut reader.take(THROTTLE_STEP), writer)?;
        if step == 0 {
            return Ok(copied);
        }
        copied += step;
        let nanos = step.saturating_mul(1_000_000_000) / bytes_per_second.max(1);
        thread::sleep(std::time::Duration::from_nanos(nanos));
    }
}

/// A fault for requests whose method is `method` and whose path ends with `path_suffix`,
/// applied `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub path_suffix: String,
    pub fault: Fault,
    pub times: u32,
}

/// One request seen by the proxy: `METHOD PATH` plus its `Range` header, if any, and a
/// fingerprint of the token the client sent (the token itself is not kept).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub fault: Option<Fault>,
    /// A hash of the client's `X-Auth-Token`: equal for the same token, else different.
    pub token_fingerprint: Option<u64>,
    /// Body bytes forwarded so far, request and response together (a test waits on it
    /// to act in the middle of a transfer).
    pub body_bytes: Arc<AtomicU64>,
    /// Set once the response has been forwarded to the client in full.
    pub answered: Arc<AtomicBool>,
}

impl Seen {
    /// Body bytes forwarded so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }
}

/// A writer that adds what it writes to a shared count.
struct Counting<'a, W> {
    inner: W,
    count: &'a AtomicU64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn fingerprint(token: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    /// Per [`Fault::CutClientThenHold`] applied: whether the client's look released it.
    holds: Vec<bool>,
}

/// A running proxy; it lives as long as the test process (its threads are detached).
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_owned();
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                let upstream = upstream.clone();
                thread::spawn(move || {
                    let _ = handle(client, &upstream, &state);
                });
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule (checked in the order added).
    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// For each [`Fault::CutClientThenHold`] applied so far: `true` when the client's
    /// look at the record ended the hold, `false` when [`HOLD_LIMIT`] did (a Glance too
    /// busy to answer the look while the cut upload still held one of its threads).
    pub fn holds(&self) -> Vec<bool> {
        self.state.lock().unwrap().holds.clone()
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn handle(client: TcpStream, upstream: &str, state: &Arc<Mutex<State>>) -> io::Result<()> {
    let mut client_reader = BufReader::new(client.try_clone()?);
    let head = read_head(&mut client_reader)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let content_length: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_bytes = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let fault = {
        let mut state = state.lock().unwrap();
        let path_only = path.split('?').next().unwrap_or_default().to_owned();
        let fault = state
            .rules
            .iter_mut()
            .find(|r| {
                let ranged =
                    matches!(r.fault, Fault::FlipByteUnranged { .. }) && header("range").is_some();
                r.times > 0 && r.method == method && path_only.ends_with(&r.path_suffix) && !ranged
            })
            .map(|r| {
                r.times -= 1;
                match r.fault {
                    Fault::FlipByteUnranged { offset } => Fault::FlipByte { offset },
                    other => other,
                }
            });
        state.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: header("range"),
            fault,
            token_fingerprint: header("x-auth-token").as_deref().map(fingerprint),
            body_bytes: Arc::clone(&body_bytes),
            answered: Arc::clone(&answered),
        });
        fault
    };
    let result = forward(
        client_reader,
        client,
        Exchange {
            request_line,
            path,
            headers,
            content_length,
            fault,
            body_bytes,
        },
        upstream,
        state,
    );
    answered.store(true, Ordering::SeqCst);
    result
}

/// The parts of a request [`handle`] has read and decided on.
struct Exchange {
    request_line: String,
    path: String,
    headers: Vec<(String, String)>,
    content_length: u64,
    fault: Option<Fault>,
    body_bytes: Arc<AtomicU64>,
}

/// The record path `/v2/images/{id}` of an upload path `/v2/images/{id}/file|stage`.
fn record_path(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.rsplit_once('/')
        .map(|(record, _)| record.to_owned())
        .unwrap_or_default()
}

/// Waits until a `GET` of `record` seen after the first `after` requests has been
/// answered (returns `true`), or [`HOLD_LIMIT`] has passed (`false`).
fn wait_for_look(state: &Mutex<State>, record: &str, after: usize) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < HOLD_LIMIT {
        let looked = state.lock().unwrap().seen.iter().skip(after).any(|s| {
            s.method == "GET"
                && s.path.split('?').next() == Some(record)
                && s.answered.load(Ordering::SeqCst)
        });
        if looked {
            return true;
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

fn forward(
    mut client_reader: BufReader<TcpStream>,
    client: TcpStream,
    exchange: Exchange,
    upstream: &str,
    state: &Arc<Mutex<State>>,
) -> io::Result<()> {
    let Exchange {
        request_line,
        path,
        headers,
        content_length,
        fault,
        body_bytes,
    } = exchange;
    let mut client_writer = client;

    if fault == Some(Fault::Unavailable) {
        let _ = io::copy(
            &mut (&mut client_reader).take(content_length),
            &mut io::sink(),
        );
        let body =
            "<html><body><h1>503 Service Unavailable</h1>injected by the test proxy</body></html>";
        write!(
            client_writer,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client_writer.shutdown(Shutdown::Both);
    }

    let mut server = TcpStream::connect(upstream)?;
    let mut forwarded = format!("{request_line}\r\n");
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("x-auth-token") && fault == Some(Fault::InvalidToken) {
            forwarded.push_str(&format!("{k}: {INVALID_TOKEN}\r\n"));
        } else if k.eq_ignore_ascii_case("range") && fault == Some(Fault::StripRange) {
            continue;
        } else if !k.eq_ignore_ascii_case("connection") {
            forwarded.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes())?;

    // Request body: client -> server on its own thread.
    let uploaded = Arc::clone(&body_bytes);
    let to_server = server.try_clone()?;
    let (request_limit, hold) = match fault {
        Some(Fault::CloseRequestAfter { bytes }) => (Some(bytes), false),
        Some(Fault::CutClientThenHold { bytes }) => (Some(bytes), true),
        _ => (None, false),
    };
    let record = record_path(&path);
    let throttle = match fault {
        Some(Fault::Throttle {
            after,
            bytes_per_second,
        }) => Some((after, bytes_per_second)),
        _ => None,
    };
    let client_for_cut = client_writer.try_clone()?;
    let server_for_cut = server.try_clone()?;
    let held_state = Arc::clone(state);
    let uploader = thread::spawn(move || -> io::Result<()> {
        let mut to_server = Counting {
            inner: to_server,
            count: &uploaded,
        };
        let mut body = client_reader.take(content_length);
        match request_limit {
            None => {
                let copied = match throttle {
                    Some((after, rate)) => throttled_copy(&mut body, &mut to_server, after, rate)?,
                    // Glance answers a bad token before reading the body and closes;
                    // the rest is read and dropped here, so the client reads the 401
                    // instead of a reset (the 401 path is what the fault tests).
                    None if fault == Some(Fault::InvalidToken) => {
                        let sent = io::copy(&mut body, &mut to_server).unwrap_or(0);
                        sent + io::copy(&mut body, &mut io::sink())?
                    }
                    None => io::copy(&mut body, &mut to_server)?,
                };
                if copied < content_length {
                    // The client went away mid-body: Glance sees the cut, as it would
                    // without the proxy.
                    let _ = server_for_cut.shutdown(Shutdown::Both);
                }
            }
            Some(limit) => {
                io::copy(&mut (&mut body).take(limit), &mut to_server)?;
                let cut_at = held_state.lock().unwrap().seen.len();
                let _ = client_for_cut.shutdown(Shutdown::Both);
                if hold {
                    let looked = wait_for_look(&held_state, &record, cut_at);
                    held_state.lock().unwrap().holds.push(looked);
                }
                let _ = server_for_cut.shutdown(Shutdown::Both);
            }
        }
        Ok(())
    });

    // Response: head as is, body with the fault applied.
    let mut server_reader = BufReader::new(server.try_clone()?);
    let mut response_head = read_head(&mut server_reader)?;
    if let Some(Fault::ContentRange(value)) = fault {
        response_head = response_head
            .split("\r\n")
            .map(|line| match line.split_once(':') {
                Some((k, _)) if k.eq_ignore_ascii_case("content-range") => {
                    format!("{k}: {value}")
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\r\n");
    }
    client_writer.write_all(response_head.as_bytes())?;
    client_writer.write_all(b"\r\n\r\n")?;
    let mut offset = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = server_reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        let mut piece = &mut buffer[..n];
        match fault {
            Some(Fault::FlipByte { offset: at }) if at >= offset && at < offset + n as u64 => {
                piece[(at - offset) as usize] ^= 0x01;
            }
            Some(Fault::CloseResponseAfter { bytes }) if offset + n as u64 > bytes => {
                piece = &mut piece[..(bytes.saturating_sub(offset)) as usize];
                client_writer.write_all(piece)?;
                let _ = client_writer.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }
        client_writer.write_all(piece)?;
        body_bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
        offset += n as u64;
        match throttle {
            Some((after, rate)) if offset > after => {
                let nanos = (n as u64).saturating_mul(1_000_000_000) / rate.max(1);
                thread::sleep(std::time::Duration::from_nanos(nanos));
            }
            _ => {}
        }
    }
    // Closing with request bytes unread would reset the connection: under a bad token
    // the whole body is read first.
    let mut uploader = Some(uploader);
    if fault == Some(Fault::InvalidToken) {
        let _ = uploader.take().map(thread::JoinHandle::join);
    }
    let _ = client_writer.shutdown(Shutdown::Both);
    let _ = uploader.map(thread::JoinHandle::join);
    Ok(())
}

/// Reads up to the blank line ending a head; returns it without the final CRLFCRLF.
fn read_head(reader: &mut impl BufRead) -> io::Result<String> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "head cut off"));
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        head.extend_from_slice(&line);
        if head.len() > 64 * 1024 {
            return Err(io::Error::other("head too large"));
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}
