//! Verified downloads and safe extraction of dataset archives.
//!
//! [`fetch_dataset`] takes a [`DatasetSpec`] (URL, archive md5, the files it must hold with
//! their sizes and md5s) and a source (the official URL, a mirror URL, a `file://` URL or a
//! local path), and leaves a verified dataset folder in the target directory:
//!
//! 1. A download streams to `<archive>.part` under a progress bar (hidden when stderr is not
//!    a terminal) and is renamed to `<archive>` only when every byte announced arrived.
//! 2. The archive's md5 must match when it came from the spec's official URL; from a mirror or
//!    a local file a mismatch is only logged, because a re-packed archive holding the same
//!    files is as good: its files are what we check.
//! 3. The archive is extracted into a fresh temporary sibling of the dataset folder, refusing
//!    entries that would land outside it (`..`, absolute paths) and links.
//! 4. Every listed file is checked (exact size, md5 when known), then the spec's own check
//!    runs (CIFAR-100: record counts and label ranges).
//! 5. Only then is the folder renamed into place. On any failure the temporary folder and a
//!    partial or bad download are removed, and a good dataset already there is left untouched.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::cifar::{CIFAR_PIXELS, Cifar10, Cifar100, Split};
use crate::dataset::Dataset;
use crate::error::{DataError, Result, io_err};

/// One file a dataset must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Path relative to the dataset folder, `/`-separated.
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
    /// md5, lowercase hex, when known.
    pub md5: Option<String>,
}

impl FileSpec {
    /// A file of `size` bytes with an optional md5.
    pub fn new(path: &str, size: u64, md5: Option<&str>) -> Self {
        Self { path: path.to_owned(), size, md5: md5.map(str::to_ascii_lowercase) }
    }
}

/// A downloadable dataset: where it comes from and what it must contain.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// A human name, for messages (`CIFAR-10`).
    pub name: String,
    /// The official URL of a `.tar.gz` (or `.tar`) archive.
    pub url: String,
    /// The md5 of the official archive, lowercase hex, when known.
    pub archive_md5: Option<String>,
    /// The folder the archive unpacks to, which is also the folder created in the target
    /// directory (`cifar-10-batches-bin`).
    pub dir: String,
    /// The files the folder must hold.
    pub files: Vec<FileSpec>,
    /// A further check of the extracted folder (record counts, label ranges).
    pub check: Option<fn(&Path) -> Result<()>>,
}

/// The official CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// md5 of [`CIFAR10_URL`].
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The official CIFAR-100 binary archive.
pub const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// md5 of [`CIFAR100_URL`].
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";

/// The official per-file md5s of CIFAR-10's binary batches (10,000 records each).
const CIFAR10_FILES: [(&str, &str); 6] = [
    ("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
    ("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
    ("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
    ("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
    ("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
    ("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),
];

impl DatasetSpec {
    /// CIFAR-10, binary version: six 30,730,000-byte batches, each checked against its
    /// official md5.
    pub fn cifar10() -> Self {
        let size = 10_000 * (1 + CIFAR_PIXELS as u64);
        Self {
            name: "CIFAR-10".into(),
            url: CIFAR10_URL.into(),
            archive_md5: Some(CIFAR10_MD5.into()),
            dir: Cifar10::DIR.into(),
            files: CIFAR10_FILES.iter().map(|(f, md5)| FileSpec::new(f, size, Some(md5))).collect(),
            check: None,
        }
    }

    /// CIFAR-100, binary version. The per-file md5s are not published with the archive, so
    /// the files are checked by exact size (`train.bin` 50,000 and `test.bin` 10,000 records
    /// of 3,074 bytes), record count and label ranges (coarse below 20, fine below 100).
    pub fn cifar100() -> Self {
        let record = 2 + CIFAR_PIXELS as u64;
        Self {
            name: "CIFAR-100".into(),
            url: CIFAR100_URL.into(),
            archive_md5: Some(CIFAR100_MD5.into()),
            dir: Cifar100::DIR.into(),
            files: vec![
                FileSpec::new("train.bin", 50_000 * record, None),
                FileSpec::new("test.bin", 10_000 * record, None),
            ],
            check: Some(check_cifar100),
        }
    }

    /// The archive's file name: the last segment of [`DatasetSpec::url`].
    pub fn archive_name(&self) -> String {
        let name = self.url.rsplit('/').next().unwrap_or_default();
        if name.is_empty() { format!("{}.tar.gz", self.dir) } else { name.to_owned() }
    }
}

/// Loads both CIFAR-100 splits (validating every label) and checks their record counts.
fn check_cifar100(dir: &Path) -> Result<()> {
    for (split, file, expected) in [(Split::Train, "train.bin", 50_000), (Split::Test, "test.bin", 10_000)] {
        let n = Cifar100::load(dir, split)?.len();
        if n != expected {
            return Err(DataError::InvalidFile {
                path: dir.join(file),
                reason: format!("{n} records, expected {expected}"),
            });
        }
    }
    Ok(())
}

/// Options of [`fetch_dataset_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Fetch and extract even when a verified dataset is already there (it is replaced only
    /// once the new one is verified).
    pub force: bool,
}

/// Downloads (or copies from a mirror or a local file) and verifies CIFAR-10 into
/// `target_dir/cifar-10-batches-bin`; see [`fetch_dataset`].
///
/// # Errors
/// As [`fetch_dataset`].
pub fn fetch_cifar10(target_dir: &Path, source: Option<&str>) -> Result<PathBuf> {
    fetch_dataset(&DatasetSpec::cifar10(), target_dir, source)
}

/// Downloads (or copies from a mirror or a local file) and verifies CIFAR-100 into
/// `target_dir/cifar-100-binary`; see [`fetch_dataset`].
///
/// # Errors
/// As [`fetch_dataset`].
pub fn fetch_cifar100(target_dir: &Path, source: Option<&str>) -> Result<PathBuf> {
    fetch_dataset(&DatasetSpec::cifar100(), target_dir, source)
}

/// Makes sure `target_dir/<spec.dir>` holds the verified dataset and returns that path.
///
/// When it is already there and passes [`verify_dataset`], nothing is fetched. `source` is
/// `None` for the official URL, or an `http(s)://` URL (a mirror), a `file://` URL, a path to
/// the archive, or a directory holding an archive named [`DatasetSpec::archive_name`].
/// Downloads are kept as `target_dir/<archive name>` and reused while their md5 matches.
///
/// # Errors
/// [`DataError::Download`] (connection, HTTP status, truncated body),
/// [`DataError::Checksum`] and [`DataError::Size`] naming the file,
/// [`DataError::UnsafeEntry`] for an archive entry outside the folder or a link,
/// [`DataError::Io`] naming the path. Nothing partial is left behind.
pub fn fetch_dataset(spec: &DatasetSpec, target_dir: &Path, source: Option<&str>) -> Result<PathBuf> {
    fetch_dataset_with(spec, target_dir, source, &FetchOptions::default())
}

/// [`fetch_dataset`] with options.
///
/// # Errors
/// As [`fetch_dataset`].
pub fn fetch_dataset_with(
    spec: &DatasetSpec,
    target_dir: &Path,
    source: Option<&str>,
    options: &FetchOptions,
) -> Result<PathBuf> {
    let final_dir = target_dir.join(&spec.dir);
    if !options.force && final_dir.is_dir() {
        match verify_dataset(spec, &final_dir) {
            Ok(()) => return Ok(final_dir),
            Err(e) => {
                tracing::warn!("{}: existing copy failed verification ({e}); fetching it again", spec.name)
            }
        }
    }
    std::fs::create_dir_all(target_dir).map_err(io_err(target_dir))?;
    let (archive, downloaded) = obtain_archive(spec, target_dir, source)?;
    let result = install(spec, target_dir, &archive);
    if result.is_err() && downloaded {
        // A download that does not give a good dataset is of no further use.
        let _ = std::fs::remove_file(&archive);
    }
    result
}

/// The archive to extract, and whether we downloaded it.
fn obtain_archive(spec: &DatasetSpec, target_dir: &Path, source: Option<&str>) -> Result<(PathBuf, bool)> {
    let source = source.unwrap_or(&spec.url);
    let official = source == spec.url;
    if source.starts_with("http://") || source.starts_with("https://") {
        let dest = target_dir.join(spec.archive_name());
        if dest.is_file() {
            if let Some(expected) = &spec.archive_md5 {
                if md5_file(&dest)? == *expected {
                    return Ok((dest, true));
                }
            }
        }
        download(source, &dest)?;
        check_archive_md5(spec, &dest, official).inspect_err(|_| {
            let _ = std::fs::remove_file(&dest);
        })?;
        return Ok((dest, true));
    }
    let mut path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
    if path.is_dir() {
        path = path.join(spec.archive_name());
    }
    if !path.is_file() {
        return Err(DataError::MissingFile { path, what: format!("{} archive", spec.name) });
    }
    check_archive_md5(spec, &path, official)?;
    Ok((path, false))
}

/// Enforces the archive md5 for the official source; logs a mismatch for any other.
fn check_archive_md5(spec: &DatasetSpec, archive: &Path, official: bool) -> Result<()> {
    let Some(expected) = &spec.archive_md5 else { return Ok(()) };
    let actual = md5_file(archive)?;
    if actual == *expected {
        return Ok(());
    }
    if official {
        return Err(DataError::Checksum { path: archive.to_path_buf(), expected: expected.clone(), actual });
    }
    tracing::info!(
        "{}: archive md5 {actual} is not the official {expected} (a mirror or a re-packed \
         archive); its files will be checked one by one",
        archive.display()
    );
    Ok(())
}

/// Extracts `archive` into a temporary sibling, verifies it, and renames it into place.
fn install(spec: &DatasetSpec, target_dir: &Path, archive: &Path) -> Result<PathBuf> {
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.staging-", spec.dir))
        .tempdir_in(target_dir)
        .map_err(io_err(target_dir))?;
    tracing::info!("extracting {}", archive.display());
    extract_archive(archive, staging.path())?;
    let new_dir = staging.path().join(&spec.dir);
    if !new_dir.is_dir() {
        return Err(DataError::MissingFile {
            path: archive.join(&spec.dir),
            what: format!("folder `{}` inside the archive", spec.dir),
        });
    }
    verify_dataset(spec, &new_dir)?;
    let final_dir = target_dir.join(&spec.dir);
    let old = staging.path().join(".previous");
    let had_old = final_dir.exists();
    if had_old {
        std::fs::rename(&final_dir, &old).map_err(io_err(&final_dir))?;
    }
    if let Err(e) = std::fs::rename(&new_dir, &final_dir) {
        if had_old {
            let _ = std::fs::rename(&old, &final_dir);
        }
        return Err(DataError::Io { path: final_dir, source: e });
    }
    // Dropping `staging` removes the replaced copy, if any.
    drop(staging);
    Ok(final_dir)
}

/// Checks every file of `spec` in `dir` (exact size, md5 when known) and the spec's own check.
///
/// # Errors
/// [`DataError::MissingFile`], [`DataError::Size`], [`DataError::Checksum`] naming the file,
/// or the spec check's error.
pub fn verify_dataset(spec: &DatasetSpec, dir: &Path) -> Result<()> {
    for file in &spec.files {
        let path = dir.join(&file.path);
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                DataError::MissingFile { path: path.clone(), what: format!("{} file", spec.name) }
            }
            _ => DataError::Io { path: path.clone(), source: e },
        })?;
        if !meta.is_file() || meta.len() != file.size {
            return Err(DataError::Size { path, expected: file.size, actual: meta.len() });
        }
        if let Some(expected) = &file.md5 {
            let actual = md5_file(&path)?;
            if actual != *expected {
                return Err(DataError::Checksum { path, expected: expected.clone(), actual });
            }
        }
    }
    match spec.check {
        Some(check) => check(dir),
        None => Ok(()),
    }
}

/// The md5 of a file, lowercase hex.
///
/// # Errors
/// [`DataError::Io`] naming the file.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HTTP agent: bounded connection and read waits, no limit on the body size.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// A byte progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(len, target);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Streams `url` to `dest.part`, then renames it to `dest` once complete.
///
/// # Errors
/// [`DataError::Download`] for a connection failure, an HTTP error status or a body shorter
/// than its `Content-Length`; [`DataError::Io`] for the local file. The `.part` file is
/// removed on failure.
pub fn download(url: &str, dest: &Path) -> Result<()> {
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let result = download_to(url, &part);
    match result {
        Ok(()) => std::fs::rename(&part, dest).map_err(io_err(dest)),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

fn download_to(url: &str, part: &Path) -> Result<()> {
    let fail = |reason: String| DataError::Download { url: url.to_owned(), reason };
    tracing::info!("downloading {url}");
    let response = agent().get(url).call().map_err(|e| fail(e.to_string()))?;
    let (_, body) = response.into_parts();
    let expected = body.content_length();
    let mut reader = body.into_reader();
    let mut file = File::create(part).map_err(io_err(part))?;
    let name = part.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bar = progress_bar(expected, name.trim_end_matches(".part"));
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(fail(format!("reading the body after {received} bytes: {e}")));
            }
        };
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(expected) = expected {
        if received != expected {
            return Err(fail(format!("truncated: received {received} of {expected} bytes")));
        }
    }
    file.sync_all().map_err(io_err(part))?;
    Ok(())
}

/// An entry path made relative and safe: only normal components (and `.`); `None` for the
/// archive's root itself.
fn safe_relative(path: &Path) -> std::result::Result<Option<PathBuf>, &'static str> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` would leave the target folder"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths would leave the target folder");
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Extracts a `.tar.gz` (or plain `.tar`) archive into `dest`, which must exist.
///
/// Only directories and regular files are extracted. An entry whose path has a `..` or is
/// absolute, and any symbolic or hard link, is refused with [`DataError::UnsafeEntry`]
/// before anything of it is written, so nothing lands outside `dest`.
///
/// # Errors
/// [`DataError::UnsafeEntry`], or [`DataError::Io`] naming the archive (a corrupt or
/// truncated archive) or the file being written.
pub fn extract_archive(archive: &Path, dest: &Path) -> Result<()> {
    let mut file = File::open(archive).map_err(io_err(archive))?;
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    drop(file);
    let reader = BufReader::new(File::open(archive).map_err(io_err(archive))?);
    if gzip {
        unpack(tar::Archive::new(flate2::read::GzDecoder::new(reader)), archive, dest)
    } else {
        unpack(tar::Archive::new(reader), archive, dest)
    }
}

fn unpack<R: Read>(mut tar: tar::Archive<R>, archive: &Path, dest: &Path) -> Result<()> {
    use tar::EntryType;
    let unsafe_entry = |entry: &str, reason| DataError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.to_owned(),
        reason,
    };
    for entry in tar.entries().map_err(io_err(archive))? {
        let mut entry = entry.map_err(io_err(archive))?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let is_file = match kind {
            EntryType::Regular | EntryType::Continuous => true,
            EntryType::Directory => false,
            EntryType::Symlink | EntryType::Link => {
                return Err(unsafe_entry(&shown, "links are not extracted"));
            }
            // Metadata entries (pax headers); long names are resolved by `tar` itself.
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName => continue,
            _ => return Err(unsafe_entry(&shown, "unsupported entry type (not a file or folder)")),
        };
        let path = entry.path().map_err(io_err(archive))?.into_owned();
        let Some(rel) = safe_relative(&path).map_err(|reason| unsafe_entry(&shown, reason))? else {
            continue;
        };
        let out = dest.join(rel);
        if is_file {
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            let mut file = File::create(&out).map_err(io_err(&out))?;
            std::io::copy(&mut entry, &mut file).map_err(io_err(archive))?;
        } else {
            std::fs::create_dir_all(&out).map_err(io_err(&out))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(safe_relative(Path::new("a/./b")), Ok(Some(PathBuf::from("a/b"))));
        assert_eq!(safe_relative(Path::new("./")), Ok(None));
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn specs() {
        let c10 = DatasetSpec::cifar10();
        assert_eq!(c10.archive_name(), "cifar-10-binary.tar.gz");
        assert_eq!(c10.files.len(), 6);
        assert!(c10.files.iter().all(|f| f.size == 30_730_000 && f.md5.is_some()));
        let c100 = DatasetSpec::cifar100();
        assert_eq!(c100.files[0].size, 153_700_000);
        assert_eq!(c100.files[1].size, 30_740_000);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
