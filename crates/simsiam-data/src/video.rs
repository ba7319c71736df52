//! Videos in an image folder, one sample per frame (feature `video`), decoded by FFmpeg's
//! `ffprobe` and `ffmpeg` programs so that nothing links against libav.
//!
//! As Lightly's `VideoDataset`, opening lists each video's frame timestamps (the sorted
//! presentation times of its packets, what `torchvision.io.read_video_timestamps` returns)
//! and reading a frame seeks to its timestamp and decodes one frame.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::formats::{is_video_file, lightly_frame_name};

/// One video of a folder: its path and how to find each frame.
#[derive(Debug)]
struct Video {
    path: PathBuf,
    frames: usize,
    /// Each frame's seconds after the input's start, sorted; `None` when a packet has no time
    /// (a raw `.hevc` stream), then frames are found by counting.
    timestamps: Option<Vec<f64>>,
}

/// A frame of a video: a sample of an image folder.
#[derive(Debug, Clone)]
pub(crate) struct VideoFrame {
    video: Arc<Video>,
    index: usize,
}

fn video_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Video { path: path.to_owned(), reason: reason.into() }
}

/// Runs `program before... path after...` and returns its stdout; a missing program or a
/// failure is an error naming the video.
fn run(program: &str, before: &[String], path: &Path, after: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(program).args(before).arg(path).args(after).output().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (videos are read by FFmpeg's `ffmpeg` and `ffprobe` programs: install FFmpeg, \
             e.g. `apt-get install ffmpeg`)"
        } else {
            ""
        };
        video_err(path, format!("cannot run `{program}`: {e}{hint}"))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(video_err(path, format!("`{program}` failed ({}): {}", out.status, stderr.trim())));
    }
    Ok(out.stdout)
}

/// Lists the frames of the first video stream of `path`.
fn probe(path: &Path) -> Result<Video> {
    let before = ["-v", "error", "-select_streams", "v:0"].map(String::from);
    let after = ["-show_entries", "packet=pts_time:format=start_time", "-of", "flat"];
    let text = String::from_utf8_lossy(&run("ffprobe", &before, path, &after)?).into_owned();
    // Lines as `packets.packet.12.pts_time="0.480000"` and `format.start_time="0.000000"`;
    // a time FFmpeg does not know reads `"N/A"`.
    let value =
        |line: &str| line.split_once('=').map(|(_, v)| v.trim().trim_matches('"').parse::<f64>().ok());
    let start =
        text.lines().find(|l| l.starts_with("format.start_time")).and_then(value).flatten().unwrap_or(0.0);
    let times: Vec<Option<f64>> =
        text.lines().filter(|l| l.starts_with("packets.packet.")).filter_map(value).collect();
    if times.is_empty() {
        return Err(video_err(path, "no video frames"));
    }
    let timestamps = times.iter().copied().collect::<Option<Vec<f64>>>().map(|mut t| {
        t.sort_by(f64::total_cmp);
        t.iter().map(|t| t - start).collect()
    });
    Ok(Video { path: path.to_owned(), frames: times.len(), timestamps })
}

impl VideoFrame {
    /// Decodes the frame to RGB.
    pub(crate) fn read(&self) -> Result<image::RgbImage> {
        let (video, k) = (&self.video, self.index);
        let mut before = ["-v", "error", "-nostdin"].map(String::from).to_vec();
        let select = format!("select=eq(n\\,{k})");
        let mut after = vec!["-map", "0:v:0"];
        match &video.timestamps {
            // Seek halfway between the previous frame and this one: FFmpeg decodes from the
            // keyframe before and drops the frames before that time, so the rounding of the
            // printed times cannot land on a neighbour.
            Some(t) if k > 0 => before.extend(["-ss".into(), format!("{:.6}", 0.5 * (t[k - 1] + t[k]))]),
            Some(_) => {}
            // No times to seek to: decode from the start and keep frame `k`.
            None => after.extend(["-vf", select.as_str()]),
        }
        before.push("-i".into());
        // One frame, as a PPM image on stdout.
        after.extend(["-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-"]);
        let bytes = run("ffmpeg", &before, &video.path, &after)?;
        if bytes.is_empty() {
            return Err(video_err(
                &video.path,
                format!("frame {k} of {} could not be decoded", video.frames),
            ));
        }
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Pnm)
            .map_err(|source| DataError::Image { path: video.path.clone(), source })?;
        Ok(img.into_rgb8())
    }
}

/// A sample's name (a video frame's is Lightly's) and the relative path of its file.
pub(crate) type Named = (String, PathBuf);

/// Replaces every video among `files` (names and relative paths, in order) by its frames,
/// named as Lightly names them (each keeping the video's path); returns them and, for each,
/// its frame when it is one. A video that cannot be probed is an error, or skipped with a
/// warning when `skip_corrupt`.
pub(crate) fn expand(
    root: &Path,
    files: Vec<Named>,
    skip_corrupt: bool,
) -> Result<(Vec<Named>, Vec<Option<VideoFrame>>)> {
    let probed: Vec<Option<Result<Video>>> =
        files.par_iter().map(|(name, path)| is_video_file(name).then(|| probe(&root.join(path)))).collect();
    let (mut named, mut frames) = (Vec::with_capacity(files.len()), Vec::with_capacity(files.len()));
    for ((name, path), probe) in files.into_iter().zip(probed) {
        match probe {
            None => {
                named.push((name, path));
                frames.push(None);
            }
            Some(Ok(video)) => {
                let video = Arc::new(video);
                for index in 0..video.frames {
                    named.push((lightly_frame_name(&name, index, video.frames), path.clone()));
                    frames.push(Some(VideoFrame { video: video.clone(), index }));
                }
            }
            Some(Err(e)) if skip_corrupt => tracing::warn!("skipping unreadable video: {e}"),
            Some(Err(e)) => return Err(e),
        }
    }
    Ok((named, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two seconds of FFmpeg's `testsrc` pattern at 25 frames per second, 64x48, in H.264
    /// with B-frames (so decode order differs from frame order).
    fn test_video(dir: &Path) -> PathBuf {
        let path = dir.join("clip.mp4");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=25"])
            .args(["-pix_fmt", "yuv420p"])
            .arg(&path)
            .status()
            .expect("the `video` feature's tests need FFmpeg's `ffmpeg` program");
        assert!(status.success(), "ffmpeg could not write the test video");
        path
    }

    #[test]
    fn every_frame_is_listed_and_a_seek_reads_the_same_frame_as_counting() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| DataError::Io { path: "tempdir".into(), source: e })?;
        let path = test_video(dir.path());
        let video = Arc::new(probe(&path)?);
        assert_eq!(video.frames, 50);
        let times = video.timestamps.clone().expect("an mp4 has packet times");
        assert!(
            (times[1] - times[0] - 0.04).abs() < 1e-6 && times.windows(2).all(|w| w[0] < w[1]),
            "{times:?}"
        );

        let counting = Arc::new(Video { path: path.clone(), frames: 50, timestamps: None });
        let mut previous: Option<image::RgbImage> = None;
        for index in [0, 1, 2, 17, 48, 49] {
            let seeked = VideoFrame { video: video.clone(), index }.read()?;
            let counted = VideoFrame { video: counting.clone(), index }.read()?;
            assert_eq!(seeked.dimensions(), (64, 48));
            assert!(seeked == counted, "frame {index}: the seek landed on another frame");
            // testsrc changes every frame, so a seek one frame off would show.
            assert!(previous.as_ref() != Some(&seeked), "frame {index} repeats the one before");
            previous = Some(seeked);
        }
        Ok(())
    }

    #[test]
    fn a_broken_video_is_an_error_naming_it_or_skipped() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| DataError::Io { path: "tempdir".into(), source: e })?;
        test_video(dir.path());
        std::fs::write(dir.path().join("broken.avi"), b"not a video")
            .map_err(|e| DataError::Io { path: "broken.avi".into(), source: e })?;
        let files: Vec<(String, PathBuf)> =
            ["broken.avi", "clip.mp4", "x.png"].iter().map(|f| (f.to_string(), PathBuf::from(f))).collect();
        let err = expand(dir.path(), files.clone(), false).expect_err("a broken video");
        assert!(err.to_string().contains("broken.avi"), "{err}");
        let (names, frames) = expand(dir.path(), files, true)?;
        assert_eq!(names.len(), 51);
        assert_eq!(
            (names[0].0.as_str(), names[49].0.as_str(), names[50].0.as_str()),
            ("clip-00-mp4.png", "clip-49-mp4.png", "x.png")
        );
        assert_eq!(names[49].1, PathBuf::from("clip.mp4"), "a frame reads its video");
        assert!(frames[..50].iter().all(Option::is_some) && frames[50].is_none());
        Ok(())
    }
}
