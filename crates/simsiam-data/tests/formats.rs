//! `ImageFolder` decodes every still format Lightly's `LightlyDataset` reads (and gif, pbm),
//! pixel for pixel where the format is lossless.

use std::path::Path;

use image::codecs::gif::GifEncoder;
use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
use image::{ExtendedColorType, Frame, GrayImage, ImageEncoder, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use simsiam_data::{Dataset, IMAGE_EXTENSIONS, ImageFolder, ImageFolderOptions};

/// A `w x h` image whose pixel (x, y) is `(x * 10 + seed, y * 10, seed)`.
fn pattern(seed: u8) -> RgbImage {
    RgbImage::from_fn(12, 9, |x, y| Rgb([(x * 10) as u8 + seed, (y * 10) as u8, seed]))
}

/// Lossless files: the name and the pixels it must decode to.
fn write_lossless(dir: &Path) -> Vec<(&'static str, RgbImage)> {
    let mut expected = Vec::new();
    for (seed, name) in ["a.png", "b.bmp", "c.ppm", "d.tif", "e.tiff", "f.webp"].into_iter().enumerate() {
        let image = pattern(seed as u8);
        image.save(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        expected.push((name, image));
    }
    let grey = GrayImage::from_fn(12, 9, |x, y| Luma([(x * 20 + y) as u8]));
    grey.save(dir.join("g.pgm")).expect("pgm");
    expected.push(("g.pgm", RgbImage::from_fn(12, 9, |x, y| Rgb([grey.get_pixel(x, y).0[0]; 3]))));
    // A bitmap: the encoder takes luma 0 as black and 1 as white (and writes PBM's bits, where
    // 1 is black); the decoder gives black 0 and white 255.
    let bits = GrayImage::from_fn(12, 9, |x, y| Luma([u8::from((x + y) % 3 == 0)]));
    let mut pbm = Vec::new();
    PnmEncoder::new(&mut pbm)
        .with_subtype(PnmSubtype::Bitmap(SampleEncoding::Binary))
        .write_image(bits.as_raw(), 12, 9, ExtendedColorType::L8)
        .expect("pbm");
    std::fs::write(dir.join("h.pbm"), pbm).expect("write pbm");
    let ink = |x: u32, y: u32| if (x + y) % 3 == 0 { Rgb([255, 255, 255]) } else { Rgb([0, 0, 0]) };
    expected.push(("h.pbm", RgbImage::from_fn(12, 9, ink)));
    expected
}

#[test]
fn every_still_format_decodes_and_a_gif_gives_its_first_frame() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expected = write_lossless(tmp.path());
    pattern(7).save(tmp.path().join("i.jpg")).expect("jpg");
    pattern(8).save(tmp.path().join("j.jpeg")).expect("jpeg");
    // An animated GIF, red then blue: the first frame is the sample, as Pillow's open gives.
    let solid = |c: [u8; 4]| Frame::new(RgbaImage::from_pixel(12, 9, Rgba(c)));
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif).encode_frames([solid([255, 0, 0, 255]), solid([0, 0, 255, 255])]).expect("gif");
    std::fs::write(tmp.path().join("k.gif"), gif).expect("write gif");

    let folder = ImageFolder::open(tmp.path(), ImageFolderOptions::default()).expect("open");
    let names: Vec<&str> = folder.file_names().iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "a.png", "b.bmp", "c.ppm", "d.tif", "e.tiff", "f.webp", "g.pgm", "h.pbm", "i.jpg", "j.jpeg",
            "k.gif"
        ]
    );
    expected.sort_by_key(|(name, _)| *name);
    for (i, (name, pixels)) in expected.iter().enumerate() {
        let sample = folder.get(i).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sample.name, *name);
        assert!(sample.image == *pixels, "{name} decodes to other pixels");
    }
    for (i, name) in [(8, "i.jpg"), (9, "j.jpeg")] {
        assert_eq!(folder.get(i).expect(name).image.dimensions(), (12, 9), "{name}");
    }
    let first = folder.get(10).expect("gif").image;
    assert!(
        first.pixels().all(|p| p.0[0] > 200 && p.0[2] < 50),
        "not the red first frame: {:?}",
        first.get_pixel(0, 0)
    );
    // Every extension listed is one this build decodes (jpg/jpeg/tif/tiff/pnm share decoders).
    assert!(
        IMAGE_EXTENSIONS
            .iter()
            .all(|e| image::ImageFormat::from_extension(e).is_some_and(|f| f.reading_enabled()))
    );
}
