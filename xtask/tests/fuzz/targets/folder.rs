//! Image folders: `ImageFolder::open` (the listing) and `Dataset::get` (the decoding wrapper)
//! on a small tree of files, folders and symbolic links built from the input.
//!
//! Input: `[options, entry..]`, each entry `[kind, name_len, name.., len_lo, len_hi, content..]`:
//! kind 0 a file, 1 a folder, 2 a symbolic link to the path in `content` (kept inside the
//! tree); names may hold `/` and any byte but NUL. Options bit 0: labels from sub-folders,
//! bit 1: `skip_corrupt`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use simsiam::data::{Dataset, ImageFolder, ImageFolderOptions};

use super::{Outcome, Target, refused};

pub const TARGET: Target = Target {
    name: "folder",
    seeds,
    run,
    tokens: &[
        b".png",
        b".jpg",
        b".JPEG",
        b"/",
        b"\x89PNG\r\n\x1a\n",
        b"IHDR",
        b"IDAT",
        b"IEND",
        b"\xff\xd8\xff",
    ],
};

/// A relative path inside the tree: normal components only, NUL bytes dropped.
fn inside(bytes: &[u8]) -> PathBuf {
    let clean: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    Path::new(OsStr::from_bytes(&clean))
        .components()
        .filter_map(|c| match c {
            Component::Normal(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The next `n` bytes (or what is left) and the rest.
fn take(data: &[u8], n: usize) -> (&[u8], &[u8]) {
    data.split_at(n.min(data.len()))
}

fn build(root: &Path, mut data: &[u8]) {
    for _ in 0..16 {
        let Some((&kind, rest)) = data.split_first() else { break };
        let (len, rest) = take(rest, 1);
        let (name, rest) = take(rest, len.first().map_or(0, |&n| usize::from(n)));
        let (size, rest) = take(rest, 2);
        let size = size.iter().rev().fold(0, |acc, &b| acc << 8 | usize::from(b));
        let (content, rest) = take(rest, size);
        data = rest;
        let name = inside(name);
        if name.as_os_str().is_empty() {
            continue;
        }
        let path = root.join(&name);
        if let Some(parent) = path.parent() {
            // A file may already sit where a folder is wanted: then the entry is skipped.
            if std::fs::create_dir_all(parent).is_err() {
                continue;
            }
        }
        // Entries that clash with earlier ones are skipped: the tree is what could be built.
        let _ = match kind % 3 {
            0 => std::fs::write(&path, content),
            1 => std::fs::create_dir_all(&path),
            _ => {
                // Up to the root, then down the cleaned target: a link never leaves the tree
                // (it may dangle, or point at a folder above itself).
                let up = name.components().count() - 1;
                let target: PathBuf = std::iter::repeat_n(Path::new(".."), up).collect();
                std::os::unix::fs::symlink(target.join(inside(content)), &path)
            }
        };
    }
}

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let (options, entries) = data.split_first().map_or((0, &[][..]), |(o, r)| (*o, r));
    let root = dir.join("images");
    std::fs::create_dir(&root).expect("the image folder");
    build(&root, entries);
    let options = ImageFolderOptions {
        labels_from_subfolders: options & 1 == 1,
        skip_corrupt: options & 2 != 0,
        ..ImageFolderOptions::default()
    };
    let folder = match ImageFolder::open(&root, options) {
        Ok(folder) => folder,
        Err(e) => return refused(&e, &root),
    };
    assert!(!folder.is_empty(), "an empty folder was accepted");
    assert_eq!(folder.labels().len(), folder.len());
    let mut all_decoded = true;
    for i in 0..folder.len() {
        match folder.get(i) {
            Ok(sample) => {
                assert!(sample.label.is_none_or(|l| l < folder.class_names().len()), "label out of range");
            }
            Err(e) => {
                refused(&e, &root);
                all_decoded = false;
            }
        }
    }
    if all_decoded { Outcome::Accepted } else { Outcome::Refused }
}

fn entry(kind: u8, name: &str, content: &[u8]) -> Vec<u8> {
    let mut v = vec![kind, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&(content.len() as u16).to_le_bytes());
    v.extend_from_slice(content);
    v
}

fn encoded(format: image::ImageFormat, side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding a seed image");
    out.into_inner()
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let png = encoded(image::ImageFormat::Png, 4);
    let jpg = encoded(image::ImageFormat::Jpeg, 8);
    // `é.png` in Latin-1: a name that is not UTF-8.
    let latin1 =
        [&[0u8, 5, 0xe9][..], &b".png"[..], &(png.len() as u16).to_le_bytes()[..], &png[..]].concat();
    let tree = |options: u8, entries: &[Vec<u8>]| [vec![options], entries.concat()].concat();
    vec![
        ("ok-flat".into(), tree(0, &[entry(0, "a.png", &png), entry(0, "b.jpg", &jpg)])),
        (
            "ok-classes".into(),
            tree(
                1,
                &[entry(0, "cat/1.png", &png), entry(0, "dog/2.JPG", &jpg), entry(0, "dog/notes.txt", b"hi")],
            ),
        ),
        ("ok-link".into(), tree(1, &[entry(0, "cat/1.png", &png), entry(2, "dog/1.png", b"cat/1.png")])),
        ("ok-link-loop".into(), tree(0, &[entry(0, "a/1.png", &png), entry(2, "a/b/up", b"a")])),
        ("ok-skip-corrupt".into(), tree(3, &[entry(0, "a/1.png", &png), entry(0, "a/2.png", &png[..20])])),
        ("err-corrupt".into(), tree(0, &[entry(0, "1.png", &png[..30])])),
        ("err-empty".into(), tree(0, &[entry(1, "nothing", b"")])),
        // Whether these list or fail is the folder's policy (issue #16 changes it): no
        // expectation, only no panic and errors naming the folder.
        ("any-dangling".into(), tree(0, &[entry(0, "1.png", &png), entry(2, "2.png", b"missing.png")])),
        ("any-latin1".into(), tree(0, &[latin1])),
    ]
}
