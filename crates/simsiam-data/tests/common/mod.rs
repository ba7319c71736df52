//! Fixtures in the real formats, written at test time: CIFAR binary files, tar.gz archives,
//! and a tiny HTTP/1.1 server on loopback.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

pub const CIFAR10_TRAIN: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];

/// Pixel `p` of record `r` of a generated batch.
pub fn pixel(seed: usize, r: usize, p: usize) -> u8 {
    ((seed * 131 + r * 7 + p * 3 + (p / 1024) * 50) % 256) as u8
}

/// `n` CIFAR-10 records: label `(seed + r) % 10`, pixels from [`pixel`].
pub fn cifar10_records(seed: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3073);
    for r in 0..n {
        out.push(((seed + r) % 10) as u8);
        out.extend((0..3072).map(|p| pixel(seed, r, p)));
    }
    out
}

/// `n` CIFAR-100 records: coarse `r % 20`, fine `(r * 3) % 100`.
pub fn cifar100_records(seed: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3074);
    for r in 0..n {
        out.push((r % 20) as u8);
        out.push(((r * 3) % 100) as u8);
        out.extend((0..3072).map(|p| pixel(seed, r, p)));
    }
    out
}

/// The files of a CIFAR-10 folder: five train batches of `per_batch` records and a test
/// batch of `test` records, plus `batches.meta.txt`.
pub fn cifar10_files(per_batch: usize, test: usize) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = CIFAR10_TRAIN
        .iter()
        .enumerate()
        .map(|(k, f)| ((*f).to_owned(), cifar10_records(k, per_batch)))
        .collect();
    files.push(("test_batch.bin".into(), cifar10_records(9, test)));
    let meta = simsiam_data::CIFAR10_CLASSES.join("\n") + "\n\n";
    files.push(("batches.meta.txt".into(), meta.into_bytes()));
    files
}

/// Writes `files` into `dir` (created).
pub fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `.tar.gz` holding `files` under `top/`.
pub fn tar_gz(top: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    tar_gz_with(top, files, |_| {})
}

/// A `.tar.gz` holding `files` under `top/`, then whatever `extra` appends.
pub fn tar_gz_with(
    top: &str,
    files: &[(String, Vec<u8>)],
    extra: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>),
) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder.append_data(&mut dir, format!("{top}/"), std::io::empty()).unwrap();
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, format!("{top}/{name}"), bytes.as_slice()).unwrap();
    }
    extra(&mut builder);
    builder.into_inner().unwrap().finish().unwrap()
}

/// Appends a regular file whose stored name is `raw_name`, bypassing `tar`'s own checks (as a
/// malicious archive would).
pub fn append_raw(builder: &mut tar::Builder<impl Write>, raw_name: &str, data: &[u8]) {
    let mut header = tar::Header::new_old();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    let name = &mut header.as_old_mut().name;
    name[..raw_name.len()].copy_from_slice(raw_name.as_bytes());
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

/// Appends a symbolic link `name` -> `target`.
pub fn append_symlink(builder: &mut tar::Builder<impl Write>, name: &str, target: &str) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder.append_link(&mut header, name, target).unwrap();
}

/// Names of the entries of `dir` (sorted).
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Path of the real CIFAR-10 archive, if present.
pub fn real_cifar10_archive() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar-10-binary.tar.gz");
    path.is_file().then_some(path)
}

/// What the server answers for a path.
#[derive(Clone)]
pub enum Route {
    /// 200 with this body.
    Ok(Vec<u8>),
    /// 200 announcing `body.len() + missing` bytes, sending `body`, then closing.
    Truncated(Vec<u8>, usize),
    /// This status, with a short body.
    Status(u16),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 (port 0) answering each connection once, then closing
/// it. It stops when dropped, after 60 s, or after 100 connections, whichever comes first.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<usize>>,
}

impl Server {
    pub fn start(routes: HashMap<String, Route>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while served < 100 && Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let _ = serve_one(stream, &routes);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
            served
        });
        Self { addr, stop, handle: Some(handle) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(mut stream: std::net::TcpStream, routes: &HashMap<String, Route>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    // Read the request head (bounded).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, announced, body) = match routes.get(&path) {
        Some(Route::Ok(body)) => (200, body.len(), body.clone()),
        Some(Route::Truncated(body, missing)) => (200, body.len() + missing, body.clone()),
        Some(Route::Status(code)) => (*code, 5, b"error".to_vec()),
        None => (404, 9, b"not found".to_vec()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {announced}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    stream.write_all(&body)?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}
