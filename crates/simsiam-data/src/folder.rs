//! `ImageFolder`: a directory of images, read recursively, decoded lazily.

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
/// accepted extension below `root`, in sorted order of their relative names (`/`-separated).
///
/// Opening lists the files only; images are decoded by [`Dataset::get`], which the loaders
/// call on their worker threads, so a large folder is never held in memory. With the `video`
/// feature a video is one sample per frame, named as Lightly's `VideoDataset` names frames
/// (`clip-07-mp4.png`, [`crate::lightly_frame_name`]); opening lists its frames.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<String>,
    labels: Vec<Option<usize>>,
    classes: Vec<String>,
    /// For each sample, the video frame it is, if any.
    #[cfg(feature = "video")]
    frames: Vec<Option<crate::video::VideoFrame>>,
}

/// Appends the files below `dir` (relative to `root`, `/`-separated) with an accepted
/// extension to `out`. `ancestors` holds the canonical folders being walked, so a symbolic link
/// back to one of them is skipped instead of recursing forever.
fn walk(
    root: &Path,
    dir: &Path,
    extensions: &[String],
    out: &mut Vec<String>,
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
        // Follows symbolic links, as `Path::is_dir` does.
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            walk(root, &path, extensions, out, ancestors)?;
        } else if meta.is_file() && has_extension(&path, extensions) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name: Vec<String> =
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push(name.join("/"));
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
        let mut files = Vec::new();
        walk(&root, &root, &options.extensions, &mut files, &mut Vec::new())?;
        files.sort_unstable();
        if options.skip_corrupt {
            let ok: Vec<bool> = files
                .par_iter()
                // Videos are checked when their frames are listed, below.
                .map(|f| {
                    is_video(f)
                        || match decode(&root.join(f)) {
                            Ok(_) => true,
                            Err(e) => {
                                tracing::warn!("skipping unreadable image: {e}");
                                false
                            }
                        }
                })
                .collect();
            files = files.into_iter().zip(ok).filter_map(|(f, ok)| ok.then_some(f)).collect();
        }
        #[cfg(feature = "video")]
        let (files, frames) = crate::video::expand(&root, files, options.skip_corrupt)?;
        if files.is_empty() {
            return Err(DataError::NoImages { path: root, extensions: options.extensions.join(", ") });
        }
        let class_of = |f: &String| f.split_once('/').map(|(class, _)| class.to_owned());
        let mut classes: Vec<String> = if options.labels_from_subfolders {
            files.iter().filter_map(class_of).collect()
        } else {
            Vec::new()
        };
        classes.dedup();
        classes.sort_unstable();
        classes.dedup();
        let labels = files
            .iter()
            .map(|f| {
                let class = class_of(f).filter(|_| options.labels_from_subfolders)?;
                classes.binary_search(&class).ok()
            })
            .collect();
        Ok(Self {
            root,
            files,
            labels,
            classes,
            #[cfg(feature = "video")]
            frames,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The relative file names, in sample order (a video frame's name is Lightly's).
    pub fn file_names(&self) -> &[String] {
        &self.files
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
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.files.len())?;
        let name = &self.files[index];
        #[cfg(feature = "video")]
        if let Some(frame) = &self.frames[index] {
            return Ok(Sample { image: frame.read()?, label: self.labels[index], name: name.clone() });
        }
        let image = decode(&self.root.join(name))?;
        Ok(Sample { image, label: self.labels[index], name: name.clone() })
    }
}
