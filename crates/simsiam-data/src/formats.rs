//! The file extensions an [`crate::ImageFolder`] reads by default, and the names its video
//! frames get.
//!
//! Lightly's `LightlyDataset` reads (lightly-ai/lightly, `lightly/data/_helpers.py`, the
//! constants at the top of the file):
//!
//! ```python
//! IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp',
//!                   '.pgm', '.tif', '.tiff', '.webp')
//! VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mpg',
//!                     '.hevc', '.m4v', '.webm', '.mpeg')
//! ```

/// Still images: Lightly's `IMG_EXTENSIONS`, and the other formats the `image` crate decodes
/// here that Pillow would open too: `pbm` and `pnm` (the rest of the PNM family) and `gif`
/// (its first frame, as Pillow's `Image.open` gives).
pub const IMAGE_EXTENSIONS: &[&str] =
    &["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp", "pbm", "pnm", "gif"];

/// Videos, read frame by frame through the `ffmpeg` program with the `video` feature:
/// Lightly's `VIDEO_EXTENSIONS`, and `mkv`, which FFmpeg reads as well.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mov", "avi", "mpg", "hevc", "m4v", "webm", "mpeg", "mkv"];

/// Whether `extension` (without the dot, any case) is one of [`VIDEO_EXTENSIONS`].
pub fn is_video_extension(extension: &str) -> bool {
    VIDEO_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(extension))
}

/// Whether the file name `name` ends in one of [`VIDEO_EXTENSIONS`].
pub(crate) fn is_video_file(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, e)| is_video_extension(e))
}

/// The extensions [`crate::ImageFolderOptions::default`] accepts: the still images, and the
/// videos when the `video` feature reads them.
pub(crate) fn default_extensions() -> Vec<String> {
    let videos: &[&str] = if cfg!(feature = "video") { VIDEO_EXTENSIONS } else { &[] };
    IMAGE_EXTENSIONS.iter().chain(videos).map(|&e| e.to_owned()).collect()
}

/// Lightly's name for frame `frame` of the video `video` (its path relative to the folder),
/// which has `frames` frames: `clip-07-mp4.png` for frame 7 of 50 of `clip.mp4`, the number
/// zero-padded to the width of `frames` so the names sort in frame order.
///
/// As `VideoDataset.get_filename` (lightly-ai/lightly, `lightly/data/_video.py`):
/// `_video_name_format` splits the relative path at its last `.` into name and format, and
/// `_format_filename` writes `f"{video_name}-{frame_number:0{zero_padding}}-{video_format}.png"`
/// with `zero_padding = len(str(n_frames))`.
pub fn lightly_frame_name(video: &str, frame: usize, frames: usize) -> String {
    let (name, format) = video.rsplit_once('.').unwrap_or((video, ""));
    let width = frames.to_string().len();
    format!("{name}-{frame:0width$}-{format}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_hold_lightlys_lists() {
        let defaults = default_extensions();
        // Lightly's IMG_EXTENSIONS, all of them.
        for e in ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"] {
            assert!(defaults.iter().any(|d| d == e), "{e}");
        }
        assert_eq!(defaults.iter().any(|d| d == "mp4"), cfg!(feature = "video"));
        assert!(is_video_extension("MP4") && is_video_extension("webm") && !is_video_extension("png"));
    }

    #[test]
    fn frames_are_named_as_lightly_names_them() {
        // The example of Lightly's `get_filename` docstring: frame 153 of `my_video.mp4`.
        assert_eq!(lightly_frame_name("my_video.mp4", 153, 1000), "my_video-0153-mp4.png");
        assert_eq!(lightly_frame_name("my_video.mp4", 153, 154), "my_video-153-mp4.png");
        assert_eq!(lightly_frame_name("clips/a.b.webm", 7, 50), "clips/a.b-07-webm.png");
        assert_eq!(lightly_frame_name("x.avi", 0, 9), "x-0-avi.png");
    }
}
