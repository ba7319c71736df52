//! Image folders in every still format Lightly's `LightlyDataset` reads, and (feature `video`)
//! a video among them, through the real binary: `simsiam pretrain`, `embed` and `neighbors`.

use std::path::Path;

mod common;
use common::{simsiam, stderr};

/// One image of each still format, each with its own pattern; returns the file names.
fn write_still_images(dir: &Path) -> Vec<&'static str> {
    use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
    use image::{ExtendedColorType, ImageEncoder};

    std::fs::create_dir_all(dir).expect("mkdir");
    let rgb = |seed: u32| {
        image::RgbImage::from_fn(40, 36, |x, y| {
            image::Rgb([(x * 6 + seed * 20) as u8, (y * 7) as u8, ((x + y) * 3 + seed * 40) as u8])
        })
    };
    let gray =
        |seed: u32| image::GrayImage::from_fn(40, 36, |x, y| image::Luma([((x ^ y) * 6 + seed) as u8]));
    let files = ["a.png", "b.jpg", "c.jpeg", "d.bmp", "e.ppm", "f.tif", "g.tiff", "h.webp", "i.gif"];
    for (seed, name) in files.iter().enumerate() {
        rgb(seed as u32).save(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Grey and black-and-white members of the PNM family, as their own subtypes.
    gray(9).save(dir.join("j.pgm")).expect("pgm");
    let bits = gray(10);
    let bits = image::GrayImage::from_fn(40, 36, |x, y| image::Luma([u8::from(bits[(x, y)].0[0] > 128)]));
    let mut pbm = Vec::new();
    PnmEncoder::new(&mut pbm)
        .with_subtype(PnmSubtype::Bitmap(SampleEncoding::Binary))
        .write_image(bits.as_raw(), 40, 36, ExtendedColorType::L8)
        .expect("pbm");
    std::fs::write(dir.join("k.pbm"), pbm).expect("write pbm");
    let mut all = files.to_vec();
    all.extend(["j.pgm", "k.pbm"]);
    all
}

fn tiny_folder_run(data: &Path, out: &Path, batch_size: usize) -> Vec<String> {
    let sets = [
        "data.dataset=folder".to_owned(),
        format!("data.path={}", data.display()),
        format!("train.output_dir={}", out.display()),
        "augment.input_size=32".into(),
        "model.width=4".into(),
        "model.proj_hidden_dim=32".into(),
        "model.proj_output_dim=16".into(),
        "model.pred_hidden_dim=8".into(),
        format!("train.batch_size={batch_size}"),
        "train.epochs=1".into(),
    ];
    let mut args = vec!["pretrain".to_owned()];
    for set in sets {
        args.extend(["--set".to_owned(), set]);
    }
    args
}

/// Pretrains on `data`, embeds it and draws the neighbours of `query`; returns the names of
/// embeddings.csv's rows.
fn pretrain_embed_and_draw(data: &Path, tmp: &Path, batch_size: usize, query: &str) -> Vec<String> {
    let out = tmp.join("run");
    let args = tiny_folder_run(data, &out, batch_size);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = simsiam(&args);
    assert!(run.status.success(), "pretrain failed: {}", stderr(&run));
    let checkpoint = std::fs::read_dir(out.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint");
    let ck = checkpoint.display().to_string();

    let csv = tmp.join("embeddings.csv");
    let embed = simsiam(&["embed", "--checkpoint", &ck, "--out", &csv.display().to_string()]);
    assert!(embed.status.success(), "embed failed: {}", stderr(&embed));
    let text = std::fs::read_to_string(&csv).expect("csv");
    let names: Vec<String> =
        text.lines().skip(1).map(|l| l.split(',').next().unwrap_or_default().to_owned()).collect();

    if cfg!(feature = "figures") {
        let png = tmp.join("nn.png");
        let args =
            ["neighbors", "--checkpoint", &ck, "--embeddings", &csv.display().to_string(), "--query", query];
        let mut args = args.to_vec();
        let png_s = png.display().to_string();
        args.extend(["--out", &png_s]);
        let nn = simsiam(&args);
        assert!(nn.status.success(), "neighbors failed: {}", stderr(&nn));
        assert!(png.is_file(), "no neighbours figure");
    }
    names
}

#[test]
fn a_folder_of_every_still_format_trains_embeds_and_draws_neighbours() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("images");
    let mut files = write_still_images(&data);
    let names = pretrain_embed_and_draw(&data, tmp.path(), 4, "h.webp");
    files.sort_unstable();
    assert_eq!(names, files, "every image is a sample, in sorted order");
}

/// Two seconds of FFmpeg's `testsrc` at 25 frames per second: 50 frames.
#[cfg(feature = "video")]
fn write_test_video(path: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=duration=2:size=48x32:rate=25"])
        .args(["-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .expect("the `video` feature's tests need FFmpeg's `ffmpeg` program (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg could not write {}", path.display());
}

#[cfg(feature = "video")]
#[test]
fn a_folder_of_images_and_a_video_trains_embeds_and_draws_neighbours_with_lightlys_frame_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("media");
    let files = write_still_images(&data);
    std::fs::create_dir_all(data.join("videos")).expect("mkdir");
    write_test_video(&data.join("videos/clip.mp4"));
    let names = pretrain_embed_and_draw(&data, tmp.path(), 16, "videos/clip-17-mp4.png");

    // Lightly's VideoDataset.get_filename: f"{video_name}-{frame:0{len(str(n_frames))}}-{format}.png"
    // (lightly/data/_video.py), the video's path relative to the folder.
    let frames: Vec<String> = (0..50).map(|k| format!("videos/clip-{k:02}-mp4.png")).collect();
    let mut expected: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    expected.extend(frames);
    expected.sort_unstable();
    assert_eq!(names, expected);
}
