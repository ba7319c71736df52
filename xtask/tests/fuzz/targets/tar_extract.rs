//! Dataset archives: `download::extract_archive` on a `.tar` or `.tar.gz` (`--from` takes any
//! file a user names).
//!
//! Input: the archive file. Besides no panic: nothing is written outside the destination, and
//! no link is ever created.

use std::io::Write;
use std::path::Path;

use simsiam::data::download::extract_archive;

use super::{Outcome, Target, refused};

pub const TARGET: Target = Target {
    name: "tar",
    seeds,
    run,
    tokens: &[
        b"ustar\x0000",
        b"ustar  \x00",
        b"../",
        b"/etc/",
        b"././@LongLink",
        b"\x1f\x8b\x08",
        b"0000644\x00",
        b"00000000012\x00",
    ],
};

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let archive = dir.join("archive.tar.gz");
    let dest = dir.join("dest");
    std::fs::write(&archive, data).expect("the archive");
    std::fs::create_dir(&dest).expect("the destination");
    let result = extract_archive(&archive, &dest);
    let mut around: Vec<_> = std::fs::read_dir(dir)
        .expect("the scratch folder")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    around.sort();
    assert_eq!(around, ["archive.tar.gz", "dest"], "something was written outside the destination");
    assert_no_links(&dest);
    match result {
        Ok(()) => Outcome::Accepted,
        // The archive, or the file it could not write (below the destination).
        Err(e) if format!("{e:#}").contains(&dest.display().to_string()) => Outcome::Refused,
        Err(e) => refused(&e, &archive),
    }
}

fn assert_no_links(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("an extracted folder") {
        let entry = entry.expect("an entry");
        let kind = entry.file_type().expect("its type");
        assert!(!kind.is_symlink(), "a link was extracted: {}", entry.path().display());
        if kind.is_dir() {
            assert_no_links(&entry.path());
        }
    }
}

/// A tar of `entries`: `(path, kind, content)`; the path is written raw into the header, so
/// unsafe ones can be built.
fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, content) in entries {
        let mut header = tar::Header::new_gnu();
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        if kind.is_symlink() || kind.is_hard_link() {
            header.set_link_name("target").expect("a link name");
        }
        header.set_cksum();
        builder.append(&header, *content).expect("an entry");
    }
    builder.into_inner().expect("the tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    use tar::EntryType::{Directory, Regular, Symlink};
    let good = tar_of(&[
        ("cifar-10-batches-bin/", Directory, b""),
        ("cifar-10-batches-bin/readme.html", Regular, b"<p>hello</p>"),
        ("./cifar-10-batches-bin/test_batch.bin", Regular, &[7u8; 300]),
    ]);
    vec![
        ("ok-tar".into(), good.clone()),
        ("ok-tar-gz".into(), gzip(&good)),
        ("err-parent".into(), tar_of(&[("../escape.txt", Regular, b"x")])),
        ("err-absolute".into(), gzip(&tar_of(&[("/tmp/escape.txt", Regular, b"x")]))),
        ("err-symlink".into(), tar_of(&[("link", Symlink, b"")])),
        ("err-truncated".into(), good[..700].to_vec()),
        ("err-truncated-gz".into(), gzip(&good)[..40].to_vec()),
    ]
}
