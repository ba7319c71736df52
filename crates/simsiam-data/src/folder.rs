//! `ImageFolder`: a directory of images, read recursively, decoded lazily.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dataset::{Dataset, Sample, check_index};
use crate::error::{DataError, Result, io_err};

/// Options of [`ImageFolder::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolderOptions {
    /// Label each image by its first sub-folder (`root/dog/x.png` is class `dog`); classes are
    /// numbered in sorted name order. Images directly in `root` get no label. (`true`)
    pub labels_from_subfolders: bool,
    /// Decode every image once at [`ImageFolder::open`] (in parallel, dropping each at once)
    /// and skip the corrupt ones with a warning, instead of failing when they are read.
    /// (`false`: a corrupt image is an error naming it, when it is read.)
    pub skip_corrupt: bool,
    /// Accepted extensions, lowercase, without the dot; matched without regard to case.
    /// (Lightly's still formats, [`crate::IMAGE_EXTENSIONS`], and with the `video` feature
    /// its videos, [`crate::VIDEO_EXTENSIONS`].)
    pub extensions: Vec<String>,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        Self {
            labels_from_subfolders: true,
            skip_corrupt: false,
            extensions: crate::formats::default_extensions(),
        }
    }
}

/// A folder of images, as Lightly's `LightlyDataset(input_dir=...)`: every file with an
/// accepted extension below `root`, in sorted order of their relative paths.
///
/// Opening lists the files only; images are decoded by [`Dataset::get`], which the loaders
/// call on their worker threads, so a large folder is never held in memory. Paths stay
/// `PathBuf`s from the listing to the read, so a file name that is not UTF-8 is read like any
/// other (its [`Sample::name`] is the lossy text). Files are chosen by extension before they
/// are opened; other files (a README) and broken links are skipped, listed in
/// [`ImageFolder::skipped`] and counted in one warning.
/// With the `video` feature a video is one sample per frame, named as Lightly's `VideoDataset`
/// names frames (`clip-07-mp4.png`, [`crate::lightly_frame_name`]); opening lists its frames.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    paths: Vec<PathBuf>,
    names: Vec<String>,
    labels: Vec<Option<usize>>,
    classes: Vec<String>,
    skipped: Skipped,
    /// For each sample, the video frame it is, if any.
    #[cfg(feature = "video")]
    frames: Vec<Option<crate::video::VideoFrame>>,
}

/// The entries of a folder that [`ImageFolder::open`] passed over, relative to its root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Files without an accepted extension (notes, a README, metadata).
    pub not_images: Vec<PathBuf>,
    /// Links whose target does not exist (or cannot be reached).
    pub broken_links: Vec<PathBuf>,
}

impl Skipped {
    /// Whether nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.not_images.is_empty() && self.broken_links.is_empty()
    }
}

/// What a directory entry is, following links.
enum Kind {
    Dir,
    File,
    /// A link to nothing, or to something that cannot be reached.
    BrokenLink,
    /// A socket, a FIFO, a device.
    Other,
}

fn kind(entry: &std::fs::DirEntry, path: &Path) -> Result<Kind> {
    let file_type = entry.file_type().map_err(io_err(path))?;
    let file_type = if file_type.is_symlink() {
        match std::fs::metadata(path) {
            Ok(meta) => meta.file_type(),
            Err(_) => return Ok(Kind::BrokenLink),
        }
    } else {
        file_type
    };
    Ok(if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else {
        Kind::Other
    })
}

/// Appends the files below `dir` (relative to `root`) with an accepted extension to `files`,
/// and what it passes over to `skipped`. `ancestors` holds the canonical folders being walked,
/// so a symbolic link back to one of them is skipped instead of recursing forever.
fn walk(
    root: &Path,
    dir: &Path,
    extensions: &[String],
    files: &mut Vec<PathBuf>,
    skipped: &mut Skipped,
    ancestors: &mut Vec<PathBuf>,
) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    if ancestors.contains(&canonical) {
        tracing::warn!("{}: skipping a link back to an enclosing folder", dir.display());
        return Ok(());
    }
    ancestors.push(canonical);
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        match kind(&entry, &path)? {
            Kind::Dir => walk(root, &path, extensions, files, skipped, ancestors)?,
            Kind::BrokenLink => skipped.broken_links.push(rel),
            Kind::File if has_extension(&path, extensions) => files.push(rel),
            Kind::File | Kind::Other => skipped.not_images.push(rel),
        }
    }
    ancestors.pop();
    Ok(())
}

fn has_extension(path: &Path, extensions: &[String]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// `a/b.png`: the relative path's components joined by `/`, lossy where not UTF-8.
fn display_name(rel: &Path) -> String {
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.join("/")
}

/// One warning for everything skipped, with the first few names.
fn warn_skipped(root: &Path, skipped: &Skipped, extensions: &[String]) {
    const SHOWN: usize = 5;
    let list = |paths: &[PathBuf]| {
        let names: Vec<String> = paths.iter().take(SHOWN).map(|p| display_name(p)).collect();
        let more = paths.len().saturating_sub(SHOWN);
        if more > 0 { format!("{} and {more} more", names.join(", ")) } else { names.join(", ") }
    };
    let mut parts = Vec::new();
    if !skipped.not_images.is_empty() {
        parts.push(format!(
            "{} file(s) without an image extension ({}): {}",
            skipped.not_images.len(),
            extensions.join(", "),
            list(&skipped.not_images)
        ));
    }
    if !skipped.broken_links.is_empty() {
        parts.push(format!("{} broken link(s): {}", skipped.broken_links.len(), list(&skipped.broken_links)));
    }
    tracing::warn!("{}: skipped {}", root.display(), parts.join("; "));
}

/// Whether `file` is a video that the `video` feature reads frame by frame.
fn is_video(file: &str) -> bool {
    cfg!(feature = "video") && crate::formats::is_video_file(file)
}

/// Decodes an image file to RGB.
fn decode(path: &Path) -> Result<image::RgbImage> {
    let reader =
        image::ImageReader::open(path).map_err(io_err(path))?.with_guessed_format().map_err(io_err(path))?;
    let img = reader.decode().map_err(|source| DataError::Image { path: path.to_path_buf(), source })?;
    Ok(img.into_rgb8())
}

impl ImageFolder {
    /// Lists the images below `root`.
    ///
    /// # Errors
    /// [`DataError::Io`] when a directory cannot be read, [`DataError::NoImages`] when none is
    /// found (or none survives `skip_corrupt`).
    pub fn open(root: impl AsRef<Path>, options: ImageFolderOptions) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(DataError::MissingFile { path: root, what: "image folder".into() });
        }
        let (mut paths, mut skipped) = (Vec::new(), Skipped::default());
        walk(&root, &root, &options.extensions, &mut paths, &mut skipped, &mut Vec::new())?;
        if !skipped.is_empty() {
            skipped.not_images.sort_unstable();
            skipped.broken_links.sort_unstable();
            warn_skipped(&root, &skipped, &options.extensions);
        }
        // Sorted by the `/`-separated names, as before paths were kept whole.
        let mut named: Vec<(String, PathBuf)> = paths.into_iter().map(|p| (display_name(&p), p)).collect();
        named.sort_unstable();
        if options.skip_corrupt {
            let ok: Vec<bool> = named
                .par_iter()
                // Videos are checked when their frames are listed, below.
                .map(|(name, p)| {
                    is_video(name)
                        || match decode(&root.join(p)) {
                            Ok(_) => true,
                            Err(e) => {
                                tracing::warn!("skipping unreadable image: {e}");
                                false
                            }
                        }
                })
                .collect();
            named = named.into_iter().zip(ok).filter_map(|(f, ok)| ok.then_some(f)).collect();
        }
        #[cfg(feature = "video")]
        let (named, frames) = crate::video::expand(&root, named, options.skip_corrupt)?;
        if named.is_empty() {
            return Err(DataError::NoImages { path: root, extensions: options.extensions.join(", ") });
        }
        let (names, paths): (Vec<String>, Vec<PathBuf>) = named.into_iter().unzip();
        // The class is the first folder below the root, compared as the OS spells it.
        let class_of = |p: &PathBuf| {
            let mut parts = p.components();
            let first = parts.next()?;
            parts.next().map(|_| first.as_os_str().to_os_string())
        };
        let mut classes: Vec<OsString> = if options.labels_from_subfolders {
            paths.iter().filter_map(class_of).collect()
        } else {
            Vec::new()
        };
        classes.sort_unstable();
        classes.dedup();
        let labels = paths
            .iter()
            .map(|p| {
                let class = class_of(p).filter(|_| options.labels_from_subfolders)?;
                classes.binary_search(&class).ok()
            })
            .collect();
        let classes = classes.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        Ok(Self {
            root,
            paths,
            names,
            labels,
            classes,
            skipped,
            #[cfg(feature = "video")]
            frames,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The relative file names, `/`-separated (lossy where a name is not UTF-8), in sample
    /// order; a video frame's name is Lightly's.
    pub fn file_names(&self) -> &[String] {
        &self.names
    }

    /// The relative paths as the file system has them, in sample order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The class names (first sub-folders holding images), in label order; empty without
    /// labels.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    /// The label of every sample.
    pub fn labels(&self) -> &[Option<usize>] {
        &self.labels
    }

    /// What the listing passed over: files without an accepted extension and broken links.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Checks that every image sits in a class sub-folder (`root/<class>/...`), as kNN and
    /// linear evaluation need.
    ///
    /// # Errors
    /// [`DataError::InvalidFile`] naming the folder and its first image without a class.
    pub fn require_labels(&self) -> Result<()> {
        match self.labels.iter().position(Option::is_none) {
            None => Ok(()),
            Some(i) => Err(DataError::InvalidFile {
                path: self.root.clone(),
                reason: format!(
                    "`{}` has no class: evaluation needs every image in a class sub-folder (<folder>/<class>/<image>)",
                    self.names[i]
                ),
            }),
        }
    }

    /// Checks that `other` (a test folder) has exactly this folder's class sub-folders, so
    /// that a class id (the rank of its sorted name) means the same class in both.
    ///
    /// # Errors
    /// [`DataError::InvalidFile`] naming `other`'s folder, this one, and the classes only one
    /// of them has.
    pub fn require_same_classes(&self, other: &ImageFolder) -> Result<()> {
        if self.classes == other.classes {
            return Ok(());
        }
        let only = |a: &[String], b: &[String]| -> String {
            a.iter().filter(|c| !b.contains(c)).map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        };
        Err(DataError::InvalidFile {
            path: other.root.clone(),
            reason: format!(
                "its class sub-folders differ from those of {}: missing [{}], extra [{}]",
                self.root.display(),
                only(&self.classes, &other.classes),
                only(&other.classes, &self.classes)
            ),
        })
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.paths.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.paths.len())?;
        #[cfg(feature = "video")]
        if let Some(frame) = &self.frames[index] {
            return Ok(Sample {
                image: frame.read()?,
                label: self.labels[index],
                name: self.names[index].clone(),
            });
        }
        let image = decode(&self.root.join(&self.paths[index]))?;
        Ok(Sample { image, label: self.labels[index], name: self.names[index].clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README and the broken link are listed in `skipped`, apart, and the images read.
    #[cfg(unix)]
    #[test]
    fn skipped_entries_are_kept_apart() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let root = tmp.path();
        std::fs::create_dir_all(root.join("cats")).map_err(io_err(root))?;
        image::RgbImage::new(2, 2)
            .save(root.join("cats/a.png"))
            .map_err(|source| DataError::Image { path: root.join("cats/a.png"), source })?;
        std::fs::write(root.join("README.txt"), b"about").map_err(io_err(root))?;
        std::os::unix::fs::symlink(root.join("nowhere.png"), root.join("cats/b.png"))
            .map_err(io_err(root))?;
        let ds = ImageFolder::open(root, ImageFolderOptions::default())?;
        assert_eq!(ds.file_names(), ["cats/a.png"]);
        assert_eq!(ds.paths(), [PathBuf::from("cats/a.png")]);
        assert_eq!(
            ds.skipped(),
            &Skipped { not_images: vec!["README.txt".into()], broken_links: vec!["cats/b.png".into()] }
        );
        Ok(())
    }

    fn class_folder(root: &Path, files: &[&str]) -> Result<ImageFolder> {
        for f in files {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io_err(root))?;
            image::RgbImage::new(2, 2).save(&path).map_err(|source| DataError::Image { path, source })?;
        }
        ImageFolder::open(root, ImageFolderOptions::default())
    }

    #[test]
    fn class_sub_folders_must_label_every_image_and_agree() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let train = class_folder(&tmp.path().join("train"), &["dog/1.png", "cat/1.png", "cat/2.png"])?;
        let test = class_folder(&tmp.path().join("test"), &["cat/9.png", "dog/9.png"])?;
        train.require_labels()?;
        train.require_same_classes(&test)?;
        assert_eq!(train.class_names(), ["cat", "dog"]);
        assert_eq!(test.labels(), [Some(0), Some(1)]);

        let other = class_folder(&tmp.path().join("other"), &["cat/1.png", "cow/1.png"])?;
        let e = train.require_same_classes(&other).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("other") && e.contains("missing [`dog`]") && e.contains("extra [`cow`]"), "{e}");
        let loose = class_folder(&tmp.path().join("loose"), &["cat/1.png", "stray.png"])?;
        let e = loose.require_labels().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("loose") && e.contains("`stray.png` has no class"), "{e}");
        Ok(())
    }
}
